"""The DRBD emulator with several volumes and three nodes (issue 12 item 8h): the output
formats as drbd-utils prints several volumes and peers (user/v9/drbdsetup.c status_cmd,
device_status, peer_device_status, connection_status; kernel 9.1 get_initial_state order
for events2), per-volume operations, and quorum among three nodes.  The repository has no
real multi-volume sample, so the shapes are those of the printers' source."""

import json
import os

import pytest

NODES = ("n1", "n2", "n3")


@pytest.fixture
def mesh(emu):
    """r0 with two volumes (minors 3 and 4) on n1..n3, all up and connected."""
    emu.init("r0", nodes=",".join(NODES), minor=3, size="16M", volumes=2, resync_seconds=60,
             addresses="n1=10.0.0.1,n2=10.0.0.2,n3=10.0.0.3", quorum="majority")
    for n in NODES:
        assert emu.run(n, "drbdadm", "up", "r0").returncode == 0
    return emu


def kinds(events):
    return [tuple(w for w in line.split()[1:2] + [t for t in line.split() if
                                                    t.split(":")[0] in ("conn-name", "volume")])
            for line in events.splitlines()]


def test_events2_lists_connections_paths_devices_then_peer_devices_by_volume(mesh):
    out = mesh.run("n1", "drbdsetup", "events2", "--now", "r0").stdout
    assert kinds(out) == [
        ("resource",), ("connection", "conn-name:n2"), ("connection", "conn-name:n3"),
        ("path", "conn-name:n2"), ("path", "conn-name:n3"),
        ("device", "volume:0"), ("device", "volume:1"),
        ("peer-device", "conn-name:n2", "volume:0"), ("peer-device", "conn-name:n3", "volume:0"),
        ("peer-device", "conn-name:n2", "volume:1"), ("peer-device", "conn-name:n3", "volume:1"),
        ("-",)]
    assert "volume:1 minor:4 " in out


def test_status_names_every_volume_and_hides_peer_devices_of_a_lost_connection(mesh):
    assert mesh.run("n2", "drbdadm", "invalidate", "r0/1").returncode == 0
    mesh.admin("cut", "r0", "n3")
    out = mesh.run("n2", "drbdsetup", "status", "r0").stdout
    lines = out.splitlines()
    assert lines[:3] == ["r0 role:Secondary", "  volume:0 disk:UpToDate",
                         "  volume:1 disk:Inconsistent"]
    assert lines[3:5] == ["  n1 role:Secondary", "    volume:0 peer-disk:UpToDate"]
    assert lines[5].startswith("    volume:1 replication:SyncTarget peer-disk:UpToDate done:")
    assert lines[6:] == ["  n3 connection:Connecting", ""]
    out3 = mesh.run("n3", "drbdsetup", "status", "r0").stdout
    assert "  volume:0 disk:UpToDate quorum:no" in out3.splitlines()


def test_verbose_status_and_json_carry_every_volume_and_peer_device(mesh):
    out = mesh.run("n1", "drbdsetup", "status", "--verbose", "--statistics", "r0").stdout
    heads = ("volume:0", "volume:1", "n2", "n3")
    assert [l[:l.index(l.split()[0])] + l.split()[0] for l in out.splitlines()
            if l.split() and l.split()[0] in heads] == [
        "  volume:0", "  volume:1", "  n2", "    volume:0", "    volume:1", "  n3",
        "    volume:0", "    volume:1"]
    assert "  volume:1 minor:4 disk:UpToDate" in out
    text = mesh.run("n1", "drbdsetup", "status", "--json", "r0").stdout
    assert "    },\n    {\n      \"volume\": 1," in text      # devices joined by ","
    doc = json.loads(text)[0]
    assert [d["minor"] for d in doc["devices"]] == [3, 4]
    assert [[p["volume"] for p in c["peer_devices"]] for c in doc["connections"]] == \
        [[0, 1], [0, 1]]


def test_dstate_get_gi_and_dump_per_volume(mesh):
    assert mesh.run("n1", "drbdadm", "dstate", "r0").stdout == \
        "UpToDate/UpToDate/UpToDate\nUpToDate/UpToDate/UpToDate\n"
    assert mesh.run("n1", "drbdsetup", "dstate", "4").stdout == "UpToDate/UpToDate/UpToDate\n"
    gi = mesh.run("n1", "drbdsetup", "get-gi", "r0", "2", "1")
    assert gi.returncode == 0 and len(gi.stdout.split(":")[0]) == 16
    assert mesh.run("n1", "drbdsetup", "get-gi", "r0", "2", "2").returncode == 10
    dump = mesh.run("n1", "drbdadm", "dump", "r0").stdout
    assert dump.count("volume 1 {") == 3 and "minor 4;" in dump


def test_detach_one_volume_leaves_the_other_attached(mesh):
    assert mesh.run("n1", "drbdsetup", "detach", "4").returncode == 0
    assert mesh.run("n1", "drbdadm", "dstate", "r0").stdout.split() == \
        ["UpToDate/UpToDate/UpToDate", "Diskless/UpToDate/UpToDate"]
    ev = mesh.run("n2", "drbdsetup", "events2", "--now", "r0").stdout
    assert "conn-name:n1 volume:1 replication:Established peer-disk:Diskless" in ev
    assert mesh.run("n1", "drbdadm", "attach", "r0/1").returncode == 0
    assert mesh.run("n1", "drbdadm", "dstate", "r0").stdout.split()[1] == \
        "UpToDate/UpToDate/UpToDate"


def test_a_second_resync_source_waits_for_the_first(mesh):
    assert mesh.run("n3", "drbdadm", "invalidate", "r0/0").returncode == 0
    ev = mesh.run("n3", "drbdsetup", "events2", "--now", "r0").stdout
    assert "conn-name:n1 volume:0 replication:SyncTarget" in ev
    assert ("conn-name:n2 volume:0 replication:PausedSyncT peer-disk:UpToDate peer-client:no "
            "resync-suspended:dependency") in ev
    assert "conn-name:n1 volume:1 replication:Established" in ev


def test_quorum_majority_of_three_one_node_cut_off(mesh):
    assert mesh.run("n1", "drbdadm", "primary", "r0").returncode == 0
    mesh.admin("cut", "r0", "n1")
    ev = mesh.run("n1", "drbdsetup", "events2", "--now", "r0").stdout
    assert "suspended:quorum" in ev and ev.count("quorum:no") == 2
    ev2 = mesh.run("n2", "drbdsetup", "events2", "--now", "r0").stdout
    assert "quorum:no" not in ev2
    p = mesh.run("n2", "drbdadm", "primary", "r0")
    assert p.returncode == 0, p.stderr
    p = mesh.run("n3", "drbdadm", "primary", "r0")
    assert p.returncode == 11 and "(-1)" in p.stderr          # n2 is Primary: one only
    mesh.admin("heal", "r0")
    # n1 (Primary without quorum, no writes) meets the new Primary: both Primary refuse
    assert "connection:StandAlone" in mesh.run("n1", "drbdsetup", "events2", "--now",
                                               "r0").stdout


def test_a_write_while_a_peer_is_away_makes_it_resync_from_whoever_it_meets(mesh):
    mesh.admin("cut", "r0", "n3")
    assert mesh.run("n1", "drbdadm", "primary", "r0").returncode == 0
    st = mesh.state_of("r0")["node"]["n1"]
    fd = os.open(st["loop"], os.O_WRONLY)
    os.pwrite(fd, b"x" * 4096, 0)
    os.fsync(fd)
    os.close(fd)
    mesh.run("n2", "drbdadm", "dstate", "r0")       # reconcile: the new UUID reaches n2
    gi1 = mesh.run("n1", "drbdsetup", "get-gi", "r0", "1", "0").stdout.split(":")[0]
    gi2 = mesh.run("n2", "drbdsetup", "get-gi", "r0", "0", "0").stdout.split(":")[0]
    assert gi1 == gi2
    mesh.admin("heal", "r0", "n3")
    ev = mesh.run("n3", "drbdsetup", "events2", "--now", "r0").stdout
    assert "volume:0 replication:SyncTarget" in ev
    assert "split-brain" not in ev
