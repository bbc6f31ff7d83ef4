"""The DRBD emulator on its own: formats, exit codes, state machine, real block device."""

import json
import os
import re
import subprocess
import threading
import time

import pytest

from rigs.drbd import EMU_BIN
from rigs.drbd_emulator import SAMPLES


def keys(text):
    """The field names of a status/events2 text, in order (values and counters ignored)."""
    return [t.split(":", 1)[0] if ":" in t else "<name>" for t in text.split()]


def json_shape(text):
    def shape(v):
        if isinstance(v, dict):
            return [(k, shape(x)) for k, x in v.items()]
        if isinstance(v, list):
            return [shape(x) for x in v]
        return type(v).__name__
    return shape(json.loads(text))


def wait_for(pred, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


@pytest.fixture
def pair(emu):
    """r0 on node0/peer1 (the names of the reference samples), both up and connected."""
    emu.init("r0", nodes="node0,peer1", minor=1, size="16M")
    for n in ("node0", "peer1"):
        assert emu.run(n, "drbdadm", "up", "r0").returncode == 0
    return emu


# ------------------------------------------------------------------- formats

def test_status_text_matches_drbd_utils_922_sample_byte_for_byte(pair):
    assert pair.run("node0", "drbdadm", "primary", "r0").returncode == 0
    out = pair.run("node0", "drbdsetup", "status", "r0").stdout
    assert out == (SAMPLES / "v9_status_primary.txt").read_text()


def test_status_json_matches_sample_shape_and_literal_space(pair):
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    out = pair.run("node0", "drbdsetup", "status", "r0", "--json").stdout
    sample = (SAMPLES / "v9_status_json_primary.json").read_text()
    assert json_shape(out) == json_shape(sample)
    assert '"connection-state": "Connected", \n' in out
    assert '"percent-in-sync": 100.00\n' in out
    mine, ref = json.loads(out)[0], json.loads(sample)[0]
    for k in ("name", "node-id", "role"):
        assert mine[k] == ref[k]
    assert mine["connections"][0]["peer_devices"][0]["peer-disk-state"] == "UpToDate"


def test_status_json_during_resync_has_sync_details_like_sample(pair):
    pair.admin("set", "r0", "resync_seconds=30")
    pair.run("peer1", "drbdadm", "down", "r0", check=True)
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.write("node0")                                           # new generation
    pair.run("peer1", "drbdadm", "up", "r0", check=True)
    out = pair.run("node0", "drbdsetup", "status", "r0", "--json").stdout
    sample = (SAMPLES / "head_primary_syncsource_status.json").read_text()
    strip = lambda s: [kv for kv in json_shape(s)[0] if kv[0] != "devices"]
    # same structure as the reference, minus the post-9.22 "tls" field
    ref = json.loads(sample)[0]
    del ref["connections"][0]["tls"]
    assert json_shape(out)[0][-1] == json_shape(json.dumps([ref]))[0][-1]
    pd = json.loads(out)[0]["connections"][0]["peer_devices"][0]
    assert pd["replication-state"] == "SyncSource" and pd["has-sync-details"] is True
    assert 0 <= pd["percent-resync-done"] < 100


@pytest.mark.parametrize("sample,setup", [
    ("head_secondary", "peer_primary"),
    ("head_primary_connecting", "primary_connecting"),
])
def test_status_and_verbose_follow_reference_fields(emu, sample, setup):
    emu.init("r0", nodes="node0,peer1", minor=1)
    emu.run("node0", "drbdadm", "up", "r0", check=True)
    if setup == "peer_primary":
        emu.run("peer1", "drbdadm", "up", "r0", check=True)
        emu.run("peer1", "drbdadm", "primary", "r0", check=True)
    else:
        emu.run("node0", "drbdadm", "primary", "r0", check=True)
    drop = lambda s: s.replace(" open:no", "").replace(" tls:no", "")
    ref = drop((SAMPLES / (sample + "_status.txt")).read_text())
    ref = ref.replace("some-resource", "r0").replace("some-peer", "peer1")
    assert emu.run("node0", "drbdsetup", "status", "r0").stdout == ref
    verbose = emu.run("node0", "drbdsetup", "status", "r0", "--verbose", "--statistics").stdout
    ref_v = drop((SAMPLES / (sample + "_status_verbose.txt")).read_text())
    assert keys(verbose) == keys(ref_v)
    assert [len(l) - len(l.lstrip()) for l in verbose.splitlines()][:2] == [0, 4]


def test_events2_now_has_922_fields_in_order(pair):
    out = pair.run("node0", "drbdsetup", "events2", "--now", "r0").stdout.splitlines()
    assert [l.split()[1] for l in out] == ["resource", "connection", "device", "peer-device", "-"]
    assert keys(out[0]) == ["<name>", "<name>", "name", "role", "suspended", "force-io-failures",
                            "may_promote", "promotion_score"]
    assert keys(out[1])[2:] == ["name", "peer-node-id", "conn-name", "connection", "role"]
    assert keys(out[2])[2:] == ["name", "volume", "minor", "backing_dev", "disk", "client",
                                "quorum"]
    assert keys(out[3])[2:] == ["name", "peer-node-id", "conn-name", "volume", "replication",
                                "peer-disk", "peer-client", "resync-suspended"]
    assert "promotion_score:10102" in out[0]
    stats = pair.run("node0", "drbdsetup", "events2", "--now", "--statistics", "r0").stdout
    old = (SAMPLES / "v9_events2_statistics_old.txt").read_text().splitlines()
    for mine, ref in zip(stats.splitlines(), old):
        # every field of the older real capture is present, in the same relative order
        k = keys(mine)
        assert [x for x in k if x in keys(ref)] == [x for x in keys(ref) if x in k]


def test_events2_unknown_resource_prints_only_terminator(emu):
    emu.init("r0")
    p = emu.run("node1", "drbdsetup", "events2", "--now", "r0")
    assert (p.returncode, p.stdout) == (0, "exists -\n")


def test_84_sh_status_and_drbdadm_state_words(emu):
    emu.init("r0", mode="8.4")
    for n in ("node1", "node2"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    emu.run("node1", "drbdadm", "primary", "r0", check=True)
    out = emu.run("node1", "drbdsetup", "sh-status", "r0").stdout
    assert out == (SAMPLES / "84_sh_status.txt").read_text()
    assert emu.run("node1", "drbdadm", "role", "r0").stdout == "Primary/Secondary\n"
    assert emu.run("node1", "drbdadm", "cstate", "r0").stdout == "Connected\n"
    assert emu.run("node1", "drbdadm", "dstate", "r0").stdout == "UpToDate/UpToDate\n"
    proc = open(os.path.join(emu.state, "proc", "node1", "drbd")).read().splitlines()
    ref = (SAMPLES / "84_proc_drbd.txt").read_text().splitlines()
    assert proc[0] == ref[0]
    assert proc[2] == ref[2]
    assert keys(proc[3]) == keys(ref[3])
    emu.admin("cut", "r0")
    assert emu.run("node1", "drbdadm", "cstate", "r0").stdout == "WFConnection\n"
    assert emu.run("node1", "drbdadm", "dstate", "r0").stdout == "UpToDate/DUnknown\n"
    assert emu.run("node1", "drbdadm", "role", "r0").stdout == "Primary/Unknown\n"
    emu.run("node2", "drbdadm", "down", "r0", check=True)
    assert "_known=Unconfigured" in emu.run("node2", "drbdsetup", "sh-status", "r0").stdout
    assert emu.run("node2", "drbdadm", "role", "r0").stdout == "Unconfigured\n"
    assert emu.run("node1", "drbdsetup", "events2", "--now", "r0").returncode == 20


def test_84_proc_drbd_resync_lines(emu):
    emu.init("r0", mode="8.4", resync_seconds=60)
    emu.run("node1", "drbdadm", "up", "r0", check=True)
    emu.run("node1", "drbdadm", "primary", "r0", check=True)
    emu.write("node1")
    emu.run("node2", "drbdadm", "up", "r0", check=True)
    proc = open(os.path.join(emu.state, "proc", "node1", "drbd")).read()
    assert re.search(r"^ 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----$",
                     proc, re.M)
    assert re.search(r"^\t\[[=>.]{20}\] sync'ed: +\d+\.\d% \(\d+/16384\)K$", proc, re.M)
    assert re.search(r"^\tfinish: \d+:\d\d:\d\d speed: ", proc, re.M)
    assert "_resynced_percent=" in emu.run("node2", "drbdsetup", "sh-status", "r0").stdout


def test_version_and_sh_dev(emu):
    emu.init("r0", minor=7, device="/dev/drbd7")
    out = emu.run("node1", "drbdadm", "--version").stdout
    assert "DRBD_KERNEL_VERSION_CODE=0x090111\n" in out and "DRBDADM_VERSION=9.22.0\n" in out
    assert emu.run("node1", "drbdadm", "sh-dev", "r0").stdout == "/dev/drbd7\n"
    assert emu.run("node1", "drbdadm", "sh-minor", "r0").stdout == "7\n"


# ------------------------------------------------------------------- exit codes

def test_exit_codes_and_messages(pair):
    p = pair.run("node0", "drbdadm", "up", "nosuch")
    assert p.returncode == 10 and "'nosuch' not defined in your config (for this host)." in p.stderr
    pair.run("peer1", "drbdadm", "down", "r0", check=True)
    p = pair.run("peer1", "drbdsetup", "role", "r0")
    assert (p.returncode, p.stderr) == (10, "r0: Unknown resource\n")
    p = pair.run("peer1", "drbdadm", "primary", "r0")
    assert p.returncode == 10 and "Failure: (158) Unknown resource" in p.stderr
    assert pair.run("peer1", "drbdadm", "down", "r0").returncode == 0     # already down: fine
    pair.run("peer1", "drbdadm", "outdate", "r0", check=True)               # offline outdate
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "up", "r0", check=True)
    assert "disk:Outdated" in pair.run("peer1", "drbdsetup", "status", "r0").stdout
    p = pair.run("peer1", "drbdadm", "primary", "r0")
    assert p.returncode == 17
    assert p.stderr == ("r0: State change failed: (-2) Need access to UpToDate data\n"
                        "Command 'drbdsetup primary r0' terminated with exit code 17\n")
    pair.admin("heal", "r0")
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    p = pair.run("peer1", "drbdadm", "primary", "r0")
    assert p.returncode == 11 and "(-1) Multiple primaries not allowed by config" in p.stderr


def test_allow_two_primaries(emu):
    dev = emu.init("r0", allow_two_primaries=True)
    for n in ("node1", "node2"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
        emu.run(n, "drbdadm", "primary", "r0", check=True)
    assert "node2 role:Primary" in emu.run("node1", "drbdsetup", "status", "r0").stdout


# ------------------------------------------------------------------- state machine

def test_peer_loss_then_reconnect_resyncs_from_the_node_that_kept_writing(pair):
    pair.admin("set", "r0", "resync_seconds=0.5")
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.admin("cut", "r0")
    assert "peer1 connection:Connecting" in pair.run("node0", "drbdsetup", "status", "r0").stdout
    pair.write("node0")
    pair.admin("heal", "r0")
    st = pair.run("peer1", "drbdsetup", "status", "r0").stdout
    assert "disk:Inconsistent" in st and "replication:SyncTarget peer-disk:UpToDate done:" in st
    assert wait_for(lambda: "disk:UpToDate" in pair.run("peer1", "drbdsetup", "status",
                                                        "r0").stdout)


def test_split_brain_when_both_primaries_wrote_while_disconnected(pair):
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "primary", "r0", check=True)
    pair.write("node0")
    pair.write("peer1")
    pair.admin("heal", "r0")
    for me, peer in (("node0", "peer1"), ("peer1", "node0")):
        assert "%s connection:StandAlone" % peer in pair.run(me, "drbdsetup", "status",
                                                            "r0").stdout
    st = pair.state_of("r0")
    assert any("helper:split-brain" in e["line"] for e in st["events"])
    assert pair.image("r0", "node0") != pair.image("r0", "peer1")      # both copies kept


def test_discard_my_data_resolves_split_brain_towards_the_survivor(pair):
    pair.admin("set", "r0", "resync_seconds=0")
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "primary", "r0", check=True)
    pair.write("node0")
    pair.write("peer1")
    pair.admin("heal", "r0")
    pair.run("peer1", "drbdadm", "secondary", "r0", check=True)
    pair.run("peer1", "drbdadm", "connect", "--discard-my-data", "r0", check=True)
    assert "connection:StandAlone" in pair.run("node0", "drbdsetup", "status", "r0").stdout
    pair.run("node0", "drbdadm", "connect", "r0", check=True)
    st = pair.run("peer1", "drbdsetup", "status", "r0").stdout
    assert st == "r0 role:Secondary\n  disk:UpToDate\n  node0 role:Primary\n    peer-disk:UpToDate\n\n"
    assert pair.image("r0", "node0") == pair.image("r0", "peer1")


GI_V9 = re.compile(r"^([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):"
                   r"[01](:[01]){11}$")
GI_84 = re.compile(r"^([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):([0-9A-F]{16}):"
                   r"[01](:[01]){6}$")


def gi(emu, node, *argv):
    return emu.run(node, "drbdsetup", *argv, check=True).stdout


def test_get_gi_and_show_gi_print_drbd_utils_922_formats(pair):
    line = gi(pair, "node0", "get-gi", "r0", "1", "0")
    m = GI_V9.match(line.rstrip("\n"))
    assert m and m.group(2) == "0" * 16                  # connected: no bitmap UUID
    show = gi(pair, "node0", "show-gi", "r0", "1", "0").splitlines()
    assert show[0] == "" and show[1].startswith("       +--<  Current data generation UUID")
    assert show[6] == line.rstrip("\n") and show[7].endswith("^ ^ ^ ^ ^ ^ ^ ^ ^ ^ ^ ^")
    assert "backing device attached >--+" in show[-2] and show[-1] == ""
    assert pair.run("node0", "drbdadm", "get-gi", "r0").stdout == line
    bad = pair.run("node0", "drbdsetup", "get-gi", "r0", "7", "0")
    assert bad.returncode == 10


def test_84_get_gi_by_minor_in_both_syntaxes(emu):
    emu.init("r0", nodes="a,b", minor=3, mode="8.4")
    for n in ("a", "b"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    line = gi(emu, "a", "get-gi", "3")
    assert GI_84.match(line.rstrip("\n")) and gi(emu, "a", "3", "get-gi") == line
    assert gi(emu, "a", "show-gi", "3").splitlines()[-2].endswith("has not seen its peer since   >--+")


def test_generation_uuids_diverge_in_a_split_brain_but_not_after_a_disconnect(pair):
    pair.admin("set", "r0", "resync_seconds=0")
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    base = GI_V9.match(gi(pair, "node0", "get-gi", "r0", "1", "0").strip()).group(1)
    pair.run("peer1", "drbdadm", "disconnect", "r0", check=True)
    pair.write("node0")
    p0 = GI_V9.match(gi(pair, "node0", "get-gi", "r0", "1", "0").strip()).groups()
    p1 = GI_V9.match(gi(pair, "peer1", "get-gi", "r0", "0", "0").strip()).groups()
    assert p0[0] != base and p0[1] == base and p1[0] == base   # primary moved on; peer behind
    pair.run("peer1", "drbdadm", "connect", "r0", check=True)
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "primary", "r0", check=True)
    pair.write("node0")
    pair.write("peer1")
    p0 = GI_V9.match(gi(pair, "node0", "get-gi", "r0", "1", "0").strip()).groups()
    p1 = GI_V9.match(gi(pair, "peer1", "get-gi", "r0", "0", "0").strip()).groups()
    assert p0[0] != p1[0] and p0[0] not in p1[1:3] and p1[0] not in p0[1:3]
    assert p0[1] == p1[1]                                 # common ancestor: split brain


def test_split_brain_runs_the_configured_handler_with_drbd_environment(pair):
    out = os.path.join(pair.base, "handler-$DRBDEMU_NODE.env")
    pair.admin("set", "r0", "split_brain_handler=env > " + out)
    assert "split-brain" in pair.run("node0", "drbdadm", "dump", "r0").stdout
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "primary", "r0", check=True)
    pair.write("node0")
    pair.write("peer1")
    pair.admin("heal", "r0")
    for node, me, peer in (("node0", "0", "1"), ("peer1", "1", "0")):
        with open(os.path.join(pair.base, "handler-%s.env" % node)) as f:
            env = dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)
        assert (env["DRBD_RESOURCE"], env["DRBD_MY_NODE_ID"], env["DRBD_PEER_NODE_ID"]) == \
            ("r0", me, peer)
        assert (env["DRBD_NODE_ID_0"], env["DRBD_NODE_ID_1"]) == ("node0", "peer1")
    lines = [e["line"] for e in pair.state_of("r0")["events"]]
    assert sum(l.startswith("response helper") and "status:0" in l for l in lines) == 2


def test_outdate_and_force_primary(pair):
    pair.admin("cut", "r0")
    p = pair.run("peer1", "drbdadm", "outdate", "r0")
    assert p.returncode == 0
    assert "disk:Outdated" in pair.run("peer1", "drbdsetup", "status", "r0").stdout
    assert pair.run("peer1", "drbdadm", "primary", "r0").returncode == 17
    pair.run("peer1", "drbdadm", "primary", "--force", "r0", check=True)
    assert "disk:UpToDate" in pair.run("peer1", "drbdsetup", "status", "r0").stdout
    pair.admin("heal", "r0")
    p = pair.run("node0", "drbdadm", "outdate", "r0")
    assert p.returncode in (11, 17)


def test_connected_outdate_refused(pair):
    p = pair.run("peer1", "drbdadm", "outdate", "r0")
    assert p.returncode == 11 and "(-15)" in p.stderr


def test_fencing_makes_a_lonely_restart_consistent_not_uptodate(emu):
    emu.init("r0", fencing="resource-only")
    emu.run("node1", "drbdadm", "up", "r0", check=True)
    assert "disk:Consistent" in emu.run("node1", "drbdsetup", "status", "r0").stdout
    emu.run("node2", "drbdadm", "up", "r0", check=True)
    assert "disk:UpToDate" in emu.run("node1", "drbdsetup", "status", "r0").stdout


def test_fail_disk_leaves_primary_diskless(pair):
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.admin("fail-disk", "r0", "node0")
    ev = pair.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "disk:Diskless client:no" in ev and "role:Primary" in ev
    assert pair.run("node0", "drbdadm", "adjust", "r0").returncode == 10


def test_inconsistent_start_needs_force(emu):
    emu.init("r0", inconsistent=True, resync_seconds=0)
    for n in ("node1", "node2"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    assert emu.run("node1", "drbdadm", "primary", "r0").returncode == 17
    emu.run("node1", "drbdadm", "primary", "--force", "r0", check=True)
    assert "peer-disk:UpToDate" in emu.run("node1", "drbdsetup", "status", "r0").stdout


def test_wait_connect_times_out_then_succeeds(emu):
    emu.init("r0")
    emu.run("node1", "drbdadm", "up", "r0", check=True)
    t = time.time()
    p = emu.run("node1", "drbdsetup", "wait-connect-resource", "r0", "--wfc-timeout=1")
    assert p.returncode == 5 and 0.9 < time.time() - t < 5
    threading.Timer(0.3, lambda: emu.run("node2", "drbdadm", "up", "r0")).start()
    assert emu.run("node1", "drbdsetup", "wait-connect-resource", "r0",
                   "--wfc-timeout=10").returncode == 0


def test_concurrent_commands_from_both_nodes_keep_state_consistent(emu):
    emu.init("r0")
    def churn(node):
        for _ in range(4):
            emu.run(node, "drbdadm", "up", "r0")
            emu.run(node, "drbdsetup", "status", "r0")
            emu.run(node, "drbdadm", "down", "r0")
    ts = [threading.Thread(target=churn, args=(n,)) for n in ("node1", "node2")]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for n in ("node1", "node2"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    assert "node2 role:Secondary" in emu.run("node1", "drbdsetup", "status", "r0").stdout


def test_launchers_work_symlinked_and_ignore_python_env(emu, tmp_path):
    emu.init("r0")
    for tool in ("drbdadm", "drbdsetup", "drbdemu"):
        os.symlink(EMU_BIN / tool, tmp_path / tool)
    env = dict(emu.node_env("node1"), PATH="%s:/usr/sbin:/usr/bin" % tmp_path,
               PYTHONPATH="/nonexistent")
    p = subprocess.run(["drbdadm", "up", "r0"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["drbdsetup", "role", "r0"], env=env, capture_output=True, text=True)
    assert p.stdout == "Secondary\n"


def test_hostname_is_the_default_node(emu):
    node = os.uname().nodename
    emu.init("r0", nodes="%s,other" % node)
    assert emu.run(None, "drbdadm", "up", "r0").returncode == 0
    assert "other connection:Connecting" in emu.run(None, "drbdsetup", "status", "r0").stdout


# ------------------------------------------------------------------- real block device

def test_filesystem_written_on_node1_is_there_on_node2_after_failover(emu):
    dev = emu.init("r0", size="32M")
    for n in ("node1", "node2"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    emu.run("node1", "drbdadm", "primary", "r0", check=True)
    assert os.path.exists(dev) and os.stat(dev).st_rdev
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mnt = emu.mount(dev, "mnt1")
    with open(os.path.join(mnt, "hello"), "w") as f:
        f.write("from node1\n")
    p = emu.run("node1", "drbdadm", "secondary", "r0")
    assert p.returncode == 11 and "held open" in p.stderr            # mounted: refused
    subprocess.run(["umount", mnt], check=True)
    emu.run("node1", "drbdadm", "secondary", "r0", check=True)
    emu.run("node2", "drbdadm", "primary", "r0", check=True)
    mnt2 = emu.mount(dev, "mnt2")
    assert open(os.path.join(mnt2, "hello")).read() == "from node1\n"
    subprocess.run(["umount", mnt2], check=True)


def test_crash_of_primary_keeps_synced_data_and_rejoin_resyncs(emu):
    dev = emu.init("r0", size="32M", resync_seconds=0)
    for n in ("node1", "node2"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    emu.run("node1", "drbdadm", "primary", "r0", check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mnt = emu.mount(dev, "mnt1")
    with open(os.path.join(mnt, "before-crash"), "w") as f:
        f.write("1\n")
        f.flush()
        os.fsync(f.fileno())
    subprocess.run(["sync", "-f", mnt], check=True)
    emu.admin("crash", "node1")
    assert "node1 connection:Connecting" in emu.run("node2", "drbdsetup", "status", "r0").stdout
    emu.run("node2", "drbdadm", "primary", "r0", check=True)
    mnt2 = emu.mount(dev, "mnt2")
    assert open(os.path.join(mnt2, "before-crash")).read() == "1\n"
    with open(os.path.join(mnt2, "after-failover"), "w") as f:
        f.write("2\n")
    subprocess.run(["umount", "-l", mnt], check=True)   # the crashed node's stale mount
    emu.run("node1", "drbdadm", "up", "r0", check=True)
    st = emu.run("node1", "drbdsetup", "status", "r0").stdout
    assert "disk:UpToDate" in st and "node2 role:Primary" in st
    assert emu.image("r0", "node1") == emu.image("r0", "node2")
    subprocess.run(["umount", mnt2], check=True)


def test_split_brain_keeps_both_copies_until_discard(emu):
    dev = emu.init("r0", size="32M", resync_seconds=0)
    for n in ("node1", "node2"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    emu.run("node1", "drbdadm", "primary", "r0", check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    emu.run("node1", "drbdadm", "secondary", "r0", check=True)
    emu.admin("cut", "r0")
    for n, name in (("node1", "a"), ("node2", "b")):
        emu.run(n, "drbdadm", "primary", "r0", check=True)
        m = emu.mount(dev, "m" + n)
        open(os.path.join(m, name), "w").write(n)
        subprocess.run(["umount", m], check=True)
        emu.run(n, "drbdadm", "secondary", "r0", check=True)
    emu.admin("heal", "r0")
    assert "StandAlone" in emu.run("node1", "drbdsetup", "status", "r0").stdout
    emu.run("node2", "drbdadm", "connect", "--discard-my-data", "r0", check=True)
    emu.run("node1", "drbdadm", "connect", "r0", check=True)
    emu.run("node2", "drbdadm", "primary", "r0", check=True)
    m = emu.mount(dev, "after")
    assert sorted(f for f in os.listdir(m) if f != "lost+found") == ["a"]
    subprocess.run(["umount", m], check=True)


# ------------------------------------------------------------------- new data generation

def current_and_bitmap(emu, node, peer_id):
    return GI_V9.match(gi(emu, node, "get-gi", "r0", peer_id, "0").strip()).groups()[:2]


def test_a_disconnected_primary_starts_a_new_generation_at_its_first_write_not_before(pair):
    base = current_and_bitmap(pair, "node0", "1")[0]
    pair.admin("cut", "r0")
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    assert current_and_bitmap(pair, "node0", "1") == (base, "0" * 16)
    pair.write("node0")
    current, bitmap = current_and_bitmap(pair, "node0", "1")
    assert current != base and bitmap == base
    pair.write("node0", offset=8192)                    # only the first write rotates
    assert current_and_bitmap(pair, "node0", "1") == (current, bitmap)


def test_a_primary_that_loses_its_peer_rotates_the_uuid_only_when_it_writes(pair):
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    base = current_and_bitmap(pair, "node0", "1")[0]
    pair.run("peer1", "drbdadm", "disconnect", "r0", check=True)
    assert current_and_bitmap(pair, "node0", "1")[0] == base
    pair.run("peer1", "drbdadm", "connect", "r0", check=True)     # nothing written: no resync
    st = pair.run("peer1", "drbdsetup", "status", "r0").stdout
    assert "disk:UpToDate" in st and "replication:" not in st


def test_two_primaries_that_did_not_write_reconnect_without_split_brain(pair):
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "primary", "r0", check=True)
    pair.run("peer1", "drbdadm", "secondary", "r0", check=True)
    pair.admin("heal", "r0")
    assert pair.run("peer1", "drbdsetup", "status", "r0").stdout == (
        "r0 role:Secondary\n  disk:UpToDate\n  node0 role:Primary\n    peer-disk:UpToDate\n\n")
    assert not any("split-brain" in e["line"] for e in pair.state_of("r0")["events"])


def test_two_primaries_with_the_same_data_refuse_the_connection_without_split_brain(pair):
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "primary", "r0", check=True)      # neither writes
    pair.admin("heal", "r0")
    for me, peer in (("node0", "peer1"), ("peer1", "node0")):
        assert "%s connection:StandAlone" % peer in pair.run(me, "drbdsetup", "status",
                                                            "r0").stdout
    assert not any("split-brain" in e["line"] for e in pair.state_of("r0")["events"])
    pair.run("peer1", "drbdadm", "secondary", "r0", check=True)
    for n in ("peer1", "node0"):
        pair.run(n, "drbdadm", "connect", "r0", check=True)
    st = pair.run("peer1", "drbdsetup", "status", "r0").stdout
    assert "node0 role:Primary\n    peer-disk:UpToDate\n" in st and "disk:UpToDate" in st


def test_two_outdated_disks_stay_outdated_when_they_connect(pair):
    pair.admin("cut", "r0")
    for n in ("node0", "peer1"):
        pair.run(n, "drbdadm", "outdate", "r0", check=True)
    pair.admin("heal", "r0")
    st = pair.run("node0", "drbdsetup", "status", "r0").stdout
    assert st == "r0 role:Secondary\n  disk:Outdated\n  peer1 role:Secondary\n" \
                 "    peer-disk:Outdated\n\n"
    assert pair.run("node0", "drbdadm", "primary", "r0").returncode == 17


def test_an_outdated_disk_meeting_an_uptodate_one_with_the_same_data_becomes_uptodate(pair):
    pair.admin("cut", "r0")
    pair.run("peer1", "drbdadm", "outdate", "r0", check=True)
    pair.admin("heal", "r0")
    assert "disk:UpToDate" in pair.run("peer1", "drbdsetup", "status", "r0").stdout


# ------------------------------------------------------------------- fencing

def fencing_pair(emu, fencing="resource-only", exit_code=4):
    """r0 with `fencing` and a fence-peer handler that records its environment and exits
    with exit_code; both up and connected."""
    emu.init("r0", nodes="node0,peer1", minor=1, fencing=fencing,
             addresses="node0=10.0.0.1,peer1=10.0.0.2",
             fence_peer_handler="env > %s/fence-$DRBDEMU_NODE.env; exit %d" % (emu.base,
                                                                              exit_code))
    for n in ("node0", "peer1"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    return emu


def handler_env(emu, node):
    with open(os.path.join(emu.base, "fence-%s.env" % node)) as f:
        return dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)


@pytest.mark.parametrize("exit_code,rc,peer_disk", [
    (3, 0, "Inconsistent"), (4, 0, "Outdated"), (5, 0, "Outdated"), (7, 0, "Outdated"),
    (0, 11, "DUnknown"), (1, 11, "DUnknown"), (6, 17, "DUnknown")])
def test_promote_with_an_unknown_peer_runs_fence_peer_and_obeys_its_exit_code(
        emu, exit_code, rc, peer_disk):
    fencing_pair(emu, exit_code=exit_code)
    emu.admin("cut", "r0")
    p = emu.run("node0", "drbdadm", "primary", "r0")
    assert p.returncode == rc, p.stderr
    if rc == 11:
        assert "(-7) Refusing to be Primary while peer is not outdated" in p.stderr
    if rc == 17:            # 6: "peer is primary": the handler outdated me
        assert "disk:Outdated" in emu.run("node0", "drbdsetup", "status", "r0").stdout
    ev = emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "peer-disk:%s " % peer_disk in ev
    env = handler_env(emu, "node0")
    assert (env["DRBD_RESOURCE"], env["DRBD_PEER_NODE_ID"], env["DRBD_MY_NODE_ID"]) == \
        ("r0", "1", "0")
    assert (env["DRBD_CSTATE"], env["UP_TO_DATE_NODES"], env["DRBD_MINOR"]) == \
        ("Connecting", "0x00000001", "1")
    assert (env["DRBD_PEER_ADDRESS"], env["DRBD_PEER_AF"]) == ("10.0.0.2", "ipv4")
    lines = [e["line"] for e in emu.state_of("r0")["events"]]
    assert "call helper name:r0 peer-node-id:1 conn-name:peer1 helper:fence-peer" in lines
    assert any(l.startswith("response helper") and "helper:fence-peer status:%d" % exit_code
               in l for l in lines)


def test_promote_of_a_connected_node_runs_no_fence_peer(emu):
    fencing_pair(emu, exit_code=1)
    emu.run("node0", "drbdadm", "primary", "r0", check=True)
    assert not os.path.exists(os.path.join(emu.base, "fence-node0.env"))


def test_a_consistent_disk_is_promoted_uptodate_once_fence_peer_outdated_the_peer(emu):
    fencing_pair(emu, exit_code=4)
    emu.run("peer1", "drbdadm", "down", "r0", check=True)
    emu.run("node0", "drbdadm", "down", "r0", check=True)
    emu.run("node0", "drbdadm", "up", "r0", check=True)        # lonely restart: Consistent
    assert "disk:Consistent" in emu.run("node0", "drbdsetup", "status", "r0").stdout
    emu.run("node0", "drbdadm", "primary", "r0", check=True)
    assert "disk:UpToDate" in emu.run("node0", "drbdsetup", "status", "r0").stdout


def test_a_consistent_disk_is_refused_when_fence_peer_fails(emu):
    fencing_pair(emu, exit_code=1)
    emu.run("peer1", "drbdadm", "down", "r0", check=True)
    emu.run("node0", "drbdadm", "down", "r0", check=True)
    emu.run("node0", "drbdadm", "up", "r0", check=True)
    p = emu.run("node0", "drbdadm", "primary", "r0")
    assert p.returncode == 17 and "(-2) Need access to UpToDate data" in p.stderr


# ------------------------------------------------------------------- suspended I/O

def test_resource_and_stonith_suspends_a_primary_that_lost_its_peer_while_fence_peer_runs(emu):
    emu.init("r0", nodes="node0,peer1", minor=1, fencing="resource-and-stonith",
             fence_peer_handler="drbdsetup events2 --now r0 > %s/during.txt; exit 7" % emu.base)
    for n in ("node0", "peer1"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    emu.run("node0", "drbdadm", "primary", "r0", check=True)
    base = current_and_bitmap(emu, "node0", "1")[0]
    emu.run("node0", "drbdsetup", "status", "r0", check=True)
    emu.admin("cut", "r0")
    emu.run("node0", "drbdsetup", "status", "r0", check=True)     # notices; runs the handler
    with open(os.path.join(emu.base, "during.txt")) as f:
        assert "role:Primary suspended:fencing force-io-failures:no" in f.read()
    ev = emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "suspended:no" in ev and "peer-disk:Outdated" in ev
    current, bitmap = current_and_bitmap(emu, "node0", "1")
    assert current != base and bitmap == base          # new generation once fenced


def test_a_failed_fence_peer_leaves_io_suspended_in_every_format_until_resume_io(emu):
    emu.init("r0", nodes="node0,peer1", minor=1, fencing="resource-and-stonith",
             fence_peer_handler="exit 1")
    for n in ("node0", "peer1"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    emu.run("node0", "drbdadm", "primary", "r0", check=True)
    emu.admin("cut", "r0")
    emu.run("node0", "drbdsetup", "status", "r0", check=True)
    st = emu.run("node0", "drbdsetup", "status", "r0").stdout
    assert st.startswith("r0 role:Primary suspended:fencing\n  disk:UpToDate\n")
    verbose = emu.run("node0", "drbdsetup", "status", "r0", "--verbose").stdout
    assert verbose.startswith("r0 node-id:0 role:Primary suspended:fencing force-io-failures:no")
    js = json.loads(emu.run("node0", "drbdsetup", "status", "r0", "--json").stdout)[0]
    assert (js["suspended"], js["suspended-user"], js["suspended-fencing"]) == (True, False, True)
    ev = emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "exists resource name:r0 role:Primary suspended:fencing force-io-failures:no" in ev
    emu.run("node0", "drbdadm", "resume-io", "r0", check=True)
    assert "suspended" not in emu.run("node0", "drbdsetup", "status", "r0").stdout


def test_suspend_io_by_the_user_shows_suspended_user(pair):
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    pair.run("node0", "drbdadm", "suspend-io", "r0", check=True)
    ev = pair.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert " suspended:user " in ev
    js = json.loads(pair.run("node0", "drbdsetup", "status", "r0", "--json").stdout)[0]
    assert (js["suspended"], js["suspended-user"], js["suspended-fencing"]) == (True, True, False)
    with pytest.raises(OSError):
        pair.write("node0")                             # frozen (here: refused)
    pair.run("node0", "drbdadm", "resume-io", "r0", check=True)
    assert " suspended:no " in pair.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    pair.write("node0")


# ------------------------------------------------------------------- the device node

def test_the_device_stays_from_promote_until_down_and_refuses_writes_while_secondary(pair):
    dev = os.path.join(pair.dev, "drbd1")
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    rdev = os.stat(dev).st_rdev
    pair.run("node0", "drbdadm", "secondary", "r0", check=True)
    assert os.stat(dev).st_rdev == rdev                    # kept at demote
    fd = os.open(dev, os.O_WRONLY)
    try:
        with pytest.raises(OSError):                        # a Secondary is not writable
            os.pwrite(fd, b"x" * 4096, 0)
            os.fsync(fd)
    finally:
        os.close(fd)
    pair.run("node0", "drbdadm", "primary", "r0", check=True)
    assert os.stat(dev).st_rdev == rdev
    pair.write("node0")                                    # writable again
    pair.run("node0", "drbdadm", "down", "r0", check=True)
    assert not os.path.exists(dev)
    assert pair.state_of("r0")["node"]["node0"]["loop"] is None


# ------------------------------------------------------------------- diskless clients

@pytest.fixture
def client_pair(emu):
    """r0 with node0 configured `disk none` (a diskless client) and peer1 with a disk."""
    emu.init("r0", nodes="node0,peer1", minor=1, diskless="node0")
    for n in ("node0", "peer1"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    return emu


def test_a_diskless_client_says_client_yes_and_its_peer_peer_client_yes(client_pair):
    ev = client_pair.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "backing_dev:none disk:Diskless client:yes quorum:yes" in ev
    ev = client_pair.run("peer1", "drbdsetup", "events2", "--now", "r0").stdout
    assert "peer-disk:Diskless peer-client:yes resync-suspended:no" in ev
    assert client_pair.run("node0", "drbdsetup", "status", "r0").stdout == (
        "r0 role:Secondary\n  disk:Diskless client:yes\n  peer1 role:Secondary\n"
        "    peer-disk:UpToDate\n\n")
    assert client_pair.run("peer1", "drbdsetup", "status", "r0").stdout == (
        "r0 role:Secondary\n  disk:UpToDate\n  node0 role:Secondary\n"
        "    peer-disk:Diskless peer-client:yes\n\n")
    js = json.loads(client_pair.run("node0", "drbdsetup", "status", "r0", "--json").stdout)[0]
    assert (js["devices"][0]["disk-state"], js["devices"][0]["client"]) == ("Diskless", True)
    js = json.loads(client_pair.run("peer1", "drbdsetup", "status", "r0", "--json").stdout)[0]
    assert js["connections"][0]["peer_devices"][0]["peer-client"] is True
    verbose = client_pair.run("node0", "drbdsetup", "status", "r0", "--verbose").stdout
    assert "disk:Diskless client:yes backing_dev:none" in verbose
    assert re.search(r"disk +none;", client_pair.run("node0", "drbdadm", "dump", "r0").stdout)


def test_a_diskless_client_is_primary_on_its_peers_data_and_not_without_it(client_pair):
    client_pair.run("node0", "drbdadm", "primary", "r0", check=True)
    client_pair.write("node0", data=b"from the client\n")
    with open(client_pair.image("r0", "peer1"), "rb") as f:
        assert f.read(16) == b"from the client\n"
    client_pair.run("node0", "drbdadm", "secondary", "r0", check=True)
    client_pair.admin("cut", "r0")
    p = client_pair.run("node0", "drbdadm", "primary", "r0")
    assert p.returncode == 17 and "(-2) Need access to UpToDate data" in p.stderr


def test_a_failed_disk_is_diskless_but_not_a_client(pair):
    pair.admin("fail-disk", "r0", "peer1")
    assert "  disk:Diskless client:no\n" in pair.run("peer1", "drbdsetup", "status", "r0").stdout
    assert "    peer-disk:Diskless peer-client:no\n" in pair.run("node0", "drbdsetup", "status",
                                                             "r0").stdout


# ------------------------------------------------------------------- quorum

@pytest.fixture
def quorum_pair(emu):
    emu.init("r0", nodes="node0,peer1", minor=1, quorum="majority")
    for n in ("node0", "peer1"):
        emu.run(n, "drbdadm", "up", "r0", check=True)
    emu.run("node0", "drbdadm", "primary", "r0", check=True)
    return emu


def writes_fail(emu, node):
    try:
        emu.write(node)
    except OSError:
        return True
    return False


def test_quorum_majority_is_lost_by_a_cut_and_shown_in_every_format(quorum_pair):
    emu = quorum_pair
    assert " quorum:yes" in emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    emu.admin("cut", "r0")
    ev = emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "role:Primary suspended:quorum force-io-failures:no" in ev
    assert "disk:UpToDate client:no quorum:no" in ev
    assert emu.run("node0", "drbdsetup", "status", "r0").stdout == (
        "r0 role:Primary suspended:quorum\n  disk:UpToDate quorum:no\n"
        "  peer1 connection:Connecting\n\n")
    js = json.loads(emu.run("node0", "drbdsetup", "status", "r0", "--json").stdout)[0]
    assert (js["suspended-quorum"], js["devices"][0]["quorum"]) == (True, False)
    assert "quorum:no" in emu.run("node0", "drbdsetup", "status", "r0", "--verbose").stdout
    assert writes_fail(emu, "node0")                    # frozen (here: refused)
    p = emu.run("peer1", "drbdadm", "primary", "r0")
    assert p.returncode == 11 and "(-25) No quorum" in p.stderr
    emu.admin("heal", "r0")
    ev = emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "suspended:no" in ev and "quorum:yes" in ev
    assert not writes_fail(emu, "node0")


def test_on_no_quorum_io_error_fails_writes_without_suspending(quorum_pair):
    emu = quorum_pair
    emu.admin("set", "r0", "on_no_quorum=io-error")
    emu.admin("cut", "r0")
    ev = emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "suspended:no" in ev and "quorum:no" in ev
    assert writes_fail(emu, "node0")


def test_a_secondary_that_leaves_gracefully_leaves_the_primary_its_quorum(quorum_pair):
    emu = quorum_pair
    emu.run("peer1", "drbdadm", "down", "r0", check=True)
    ev = emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
    assert "quorum:yes" in ev and "suspended:no" in ev
    assert not writes_fail(emu, "node0")
    emu.run("peer1", "drbdadm", "up", "r0", check=True)
    emu.admin("crash", "peer1")                         # not graceful: quorum lost
    assert "quorum:no" in emu.run("node0", "drbdsetup", "events2", "--now", "r0").stdout
