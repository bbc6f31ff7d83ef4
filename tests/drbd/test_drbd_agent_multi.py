"""ocf:pyha:drbd run as a program on DRBD 9 states with several volumes and with three
nodes (issue 12 item 8h), as the emulator models them.  What is compared with LINBIT's
ocf:linbit:drbd (drbd-utils scripts/drbd.ocf, rules in /work/shared/reference/drbd.md
section 1): the master score (the worst volume counts, a DUnknown peer on any volume makes
UpToDate data 1000, quorum:no on any volume deletes it), monitor's exit code and whether a
promote succeeds."""

import os

from rigs.drbd import start_pair

SCORE = "master-p_drbd_r0"
THREE = ("node1", "node2", "node3")
META3 = {"clone_max": "3"}


def start_three(lab, params=None, **init):
    """r0 on node1..node3 (a DRBD 9 full mesh), the agent started on each (clone-max 3)."""
    lab.init("r0", nodes=",".join(THREE), **init)
    for n in THREE:
        p = lab.agent(n, "start", params, META3)
        assert p.returncode == 0, p.stderr
    return lab


def agent3(lab, node, action, **kw):
    return lab.agent(node, action, meta=dict(META3, **kw.pop("meta", {})), **kw)


def disks(lab, node):
    return lab.run(node, "drbdadm", "dstate", "r0").stdout.split()


# --- several volumes ----------------------------------------------------------------

def test_two_volumes_both_uptodate_score_like_one(lab):
    start_pair(lab, volumes=2)
    for n in ("node1", "node2"):
        assert lab.agent(n, "monitor").returncode == 0
        assert lab.attribute(n, SCORE) == "10000"
    assert disks(lab, "node1") == ["UpToDate/UpToDate", "UpToDate/UpToDate"]


def test_the_worst_volume_counts_one_of_two_inconsistent_scores_as_remote_data(lab):
    """LINBIT: not every local volume UpToDate, a peer with all disks UpToDate -> 10."""
    start_pair(lab, volumes=2, resync_seconds=60)
    assert lab.run("node2", "drbdadm", "invalidate", "r0/1").returncode == 0
    assert disks(lab, "node2") == ["UpToDate/UpToDate", "Inconsistent/UpToDate"]
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10"
    assert lab.agent("node1", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "10000"     # its own disks all UpToDate


def test_a_node_whose_peer_is_resyncing_one_volume_only_is_fully_promotable(lab):
    start_pair(lab, volumes=2, resync_seconds=60)
    assert lab.run("node2", "drbdadm", "invalidate", "r0/1").returncode == 0
    p = lab.agent("node1", "promote")
    assert p.returncode == 0, p.stderr
    assert lab.agent("node1", "monitor").returncode == 8


def test_promotion_is_allowed_when_the_inconsistent_volume_has_a_connected_uptodate_peer(lab):
    """DRBD 9 promotes a SyncTarget: every volume reaches UpToDate data (here or on the
    connected peer)."""
    start_pair(lab, volumes=2, resync_seconds=60)
    assert lab.run("node2", "drbdadm", "invalidate", "r0/1").returncode == 0
    p = lab.agent("node2", "promote")
    assert p.returncode == 0, p.stderr
    assert lab.agent("node2", "monitor").returncode == 8
    assert lab.attribute("node2", SCORE) == "10"


def test_promotion_is_refused_when_one_volume_has_no_uptodate_data_anywhere(lab):
    start_pair(lab, volumes=2, resync_seconds=60)
    assert lab.run("node2", "drbdadm", "invalidate", "r0/1").returncode == 0
    lab.admin("cut", "r0")
    assert disks(lab, "node2") == ["UpToDate/DUnknown", "Inconsistent/DUnknown"]
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) is None        # Inconsistent, no peer with data
    p = lab.agent("node2", "promote")
    assert p.returncode == 1 and "no access to UpToDate data" in p.stderr
    assert lab.run("node2", "drbdsetup", "role", "r0").stdout == "Secondary\n"


def test_a_primary_whose_second_volume_lost_its_disk_is_a_failed_master(lab):
    """Our agent reports 9 (documented: Primary without its local disk, on any volume);
    LINBIT's monitor says 8 for every Primary.  The score follows LINBIT: 10, the peer
    has all the data."""
    start_pair(lab, volumes=2)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("fail-disk", "r0", "node1", "1")
    assert disks(lab, "node1") == ["UpToDate/UpToDate", "Diskless/UpToDate"]
    p = lab.agent("node1", "monitor")
    assert p.returncode == 9, p.stderr
    assert lab.attribute("node1", SCORE) == "10"
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10000"


def write_volume(lab, node, v):
    """A write by node's Primary to volume v (through its loop device, flushed)."""
    st = lab.state_of("r0")["node"][node]
    loop = (st if v == 0 else st["vols"][v - 1])["loop"]
    fd = os.open(loop, os.O_WRONLY)
    try:
        os.pwrite(fd, b"written\n" * 512, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def test_a_volume_detached_while_the_primary_wrote_resyncs_alone_when_attached_again(lab):
    start_pair(lab, volumes=2, resync_seconds=60)
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.run("node2", "drbdadm", "detach", "r0/1").returncode == 0
    assert disks(lab, "node2") == ["UpToDate/UpToDate", "Diskless/UpToDate"]
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10"        # the peer has all the data
    write_volume(lab, "node1", 1)
    assert lab.run("node2", "drbdadm", "attach", "r0/1").returncode == 0
    ev = lab.run("node2", "drbdsetup", "events2", "--now", "r0").stdout
    assert "volume:0 replication:Established" in ev
    assert "volume:1 replication:SyncTarget" in ev
    assert disks(lab, "node2") == ["UpToDate/UpToDate", "Inconsistent/UpToDate"]
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10"


# --- three nodes --------------------------------------------------------------------

def test_three_nodes_all_connected_score_10000_everywhere(lab):
    start_three(lab)
    for n in THREE:
        assert agent3(lab, n, "monitor").returncode == 0
        assert lab.attribute(n, SCORE) == "10000"


def test_three_nodes_score_with_one_peer_away_and_with_both(lab):
    start_three(lab)
    lab.admin("cut", "r0", "node3")
    assert agent3(lab, "node1", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "1000"      # a peer's disk is unknown
    lab.admin("cut", "r0", "node2")
    assert agent3(lab, "node1", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "1000"
    lab.admin("heal", "r0")
    assert agent3(lab, "node1", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "10000"


def test_three_nodes_a_secondary_cut_off_loses_quorum_and_its_score(lab):
    start_three(lab, quorum="majority")
    assert agent3(lab, "node1", "promote").returncode == 0
    lab.admin("cut", "r0", "node3")
    assert agent3(lab, "node3", "monitor").returncode == 0
    assert lab.attribute("node3", SCORE) is None        # quorum:no -> deleted
    assert agent3(lab, "node1", "monitor").returncode == 8
    assert lab.attribute("node1", SCORE) == "10000"     # still sees node2: quorum
    p = agent3(lab, "node3", "promote", meta={"timeout": "4000"})
    assert p.returncode == 1


def test_three_nodes_an_isolated_primary_loses_quorum_and_the_majority_promotes(lab):
    start_three(lab, quorum="majority", on_no_quorum="suspend-io")
    assert agent3(lab, "node1", "promote").returncode == 0
    lab.admin("cut", "r0", "node1")
    ev = lab.run("node1", "drbdsetup", "events2", "--now", "r0").stdout
    assert "suspended:quorum" in ev and "quorum:no" in ev
    assert agent3(lab, "node1", "monitor").returncode == 8
    assert lab.attribute("node1", SCORE) is None
    assert agent3(lab, "node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "1000"      # UpToDate, node1 unknown
    p = agent3(lab, "node2", "promote")
    assert p.returncode == 0, p.stderr
    assert agent3(lab, "node2", "monitor").returncode == 8


def test_three_nodes_a_primary_left_by_one_secondary_gracefully_and_cut_from_the_other_loses_quorum(lab):
    start_three(lab, quorum="majority")
    assert agent3(lab, "node1", "promote").returncode == 0
    assert agent3(lab, "node3", "stop").returncode == 0
    lab.admin("cut", "r0", "node2")
    # node2 gone as well (not gracefully): node1 counts node3 outdated, node2 unknown
    assert agent3(lab, "node1", "monitor").returncode == 8
    assert lab.attribute("node1", SCORE) is None


def test_a_diskless_client_among_three_nodes(lab):
    start_three(lab, diskless="node3")
    assert agent3(lab, "node3", "monitor").returncode == 0
    assert lab.attribute("node3", SCORE) == "9999"      # every diskful peer UpToDate
    assert agent3(lab, "node1", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "10000"     # the client peer is skipped
    lab.admin("cut", "r0", "node2")
    assert agent3(lab, "node3", "monitor").returncode == 0
    assert lab.attribute("node3", SCORE) == "999"       # only some peer UpToDate
    p = agent3(lab, "node3", "promote")
    assert p.returncode == 0, p.stderr
    assert agent3(lab, "node3", "monitor").returncode == 8
