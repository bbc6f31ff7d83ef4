"""ocf:pyha:drbd run as a program on DRBD 9 states the emulator models since issue 12.8:
Primaries that did (not) write while apart, Outdated meeting Outdated, fence-peer before a
promote, suspended I/O.  What the agent reports: monitor's exit code and the master score
(LINBIT's rules, /work/shared/reference/drbd.md section 1)."""

import os
import time

from rigs.drbd import start_pair

SCORE = "master-p_drbd_r0"


def test_two_primaries_that_did_not_write_while_apart_reconnect_healthy(lab):
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    assert lab.agent("node2", "promote").returncode == 0
    assert lab.agent("node2", "demote").returncode == 0
    lab.admin("heal", "r0")
    p = lab.agent("node1", "monitor")
    assert p.returncode == 8 and "SPLIT BRAIN" not in p.stderr, p.stderr
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10000"
    for node in ("node1", "node2"):
        assert lab.attribute(node, "drbd-r0-split-brain") is None


def test_a_primary_that_wrote_alone_is_followed_by_a_resync_not_a_split_brain(lab):
    start_pair(lab, resync_seconds=30)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    lab.write("node1")
    lab.admin("heal", "r0")
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10"            # SyncTarget: some peer UpToDate
    assert lab.attribute("node2", "drbd-r0-split-brain") is None


def test_two_outdated_disks_connected_to_each_other_are_not_promotable(lab):
    start_pair(lab)
    lab.admin("cut", "r0")
    for n in ("node1", "node2"):
        assert lab.run(n, "drbdadm", "outdate", "r0").returncode == 0
    lab.admin("heal", "r0")
    for n in ("node1", "node2"):
        assert lab.agent(n, "monitor").returncode == 0
        assert lab.attribute(n, SCORE) is None              # Outdated, no UpToDate peer
    p = lab.agent("node1", "promote")
    assert p.returncode == 1 and "no access to UpToDate data" in p.stderr


def fencing_pair(lab, exit_code):
    return start_pair(lab, fencing="resource-only",
                      fence_peer_handler="echo $DRBD_PEER_NODE_ID >> %s/fenced; exit %d" % (
                          lab.base, exit_code))


def test_promote_with_an_unreachable_peer_succeeds_when_fence_peer_outdated_it(lab):
    fencing_pair(lab, 4)
    lab.admin("cut", "r0")
    assert lab.agent("node1", "monitor").returncode in (0, 190)
    assert lab.attribute("node1", SCORE) == "1000"          # UpToDate, peer DUnknown
    p = lab.agent("node1", "promote")
    assert p.returncode == 0, p.stderr
    assert open(os.path.join(lab.base, "fenced")).read() == "1\n"
    assert lab.agent("node1", "monitor").returncode in (8, 191)
    assert lab.attribute("node1", SCORE) == "10000"


def test_promote_with_an_unreachable_peer_fails_when_fence_peer_fails(lab):
    fencing_pair(lab, 1)
    lab.admin("cut", "r0")
    t = time.time()
    p = lab.agent("node1", "promote", meta={"timeout": "4000"})
    assert p.returncode == 1
    assert "Refusing to be Primary while peer is not outdated" in p.stderr
    assert time.time() - t < 8
    assert lab.run("node1", "drbdsetup", "role", "r0").stdout == "Secondary\n"


def test_a_primary_with_io_suspended_by_fencing_keeps_its_score(lab):
    """LINBIT's score rules ignore suspension: a frozen Primary with UpToDate data stays the
    best place to be Primary (moving away would need the peer's unknown data)."""
    start_pair(lab, fencing="resource-and-stonith", fence_peer_handler="exit 1")
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    ev = lab.run("node1", "drbdsetup", "events2", "--now", "r0").stdout
    assert "suspended:fencing" in ev
    assert lab.agent("node1", "monitor").returncode in (8, 191)
    assert lab.attribute("node1", SCORE) == "10000"


def test_a_primary_with_io_suspended_by_the_user_is_a_healthy_master(lab):
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.run("node1", "drbdadm", "suspend-io", "r0").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.attribute("node1", SCORE) == "10000"


def test_a_demoted_node_keeps_its_device_and_is_a_healthy_secondary(lab):
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.agent("node1", "demote").returncode == 0
    assert os.path.exists(os.path.join(lab.dev, "drbd0"))     # DRBD 9: the minor stays
    assert lab.agent("node1", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "10000"
    assert lab.agent("node1", "stop").returncode == 0
    assert not os.path.exists(os.path.join(lab.dev, "drbd0"))


def client_pair(lab, params=None):
    """node1 a diskless client (`disk none`), node2 with the data."""
    return start_pair(lab, params, diskless="node1")


def test_a_diskless_client_with_an_uptodate_peer_scores_just_below_a_disk(lab):
    client_pair(lab)
    assert lab.agent("node1", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "9999"           # 4th value - 1
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10000"          # a client peer is skipped
    params = {"adjust_master_score": "0 10 500 5000"}
    assert lab.agent("node1", "monitor", params).returncode == 0
    assert lab.attribute("node1", SCORE) == "4999"


def test_a_diskless_client_promoted_on_its_peers_data_is_a_master(lab):
    client_pair(lab)
    p = lab.agent("node1", "promote")
    assert p.returncode == 0, p.stderr
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.attribute("node1", SCORE) == "9999"


def test_a_diskless_client_without_peers_has_no_score_and_cannot_promote(lab):
    client_pair(lab)
    lab.admin("cut", "r0")
    assert lab.agent("node1", "monitor").returncode in (0, 190)
    assert lab.attribute("node1", SCORE) is None
    p = lab.agent("node1", "promote")
    assert p.returncode == 1


def test_a_node_without_quorum_has_no_master_score(lab):
    start_pair(lab, quorum="majority")
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10000"
    lab.admin("cut", "r0")
    assert lab.agent("node2", "monitor").returncode in (0, 190)
    assert lab.attribute("node2", SCORE) is None             # quorum:no -> deleted
    assert lab.agent("node1", "monitor").returncode in (8, 191)
    assert lab.attribute("node1", SCORE) is None
    p = lab.agent("node2", "promote", meta={"timeout": "4000"})
    assert p.returncode == 1 and "No quorum" in p.stderr
    lab.admin("heal", "r0")
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", SCORE) == "10000"


def test_a_primary_whose_secondary_left_gracefully_keeps_quorum_and_its_score(lab):
    start_pair(lab, quorum="majority")
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.agent("node2", "stop").returncode == 0
    assert lab.agent("node1", "monitor").returncode in (8, 191)
    assert lab.attribute("node1", SCORE) == "10000"


def test_split_brain_is_reported_when_both_primaries_wrote_after_their_monitors_ran(lab):
    """DRBD 9 rotates the current UUID at the first write, not at promote: a monitor that ran
    between the promote and the first write saw the old UUIDs, and events2 (what the agent
    watches) does not change when the UUID rotates."""
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    assert lab.agent("node2", "promote").returncode == 0
    for n in ("node1", "node2"):
        lab.agent(n, "monitor")                  # publishes the UUIDs: not diverged yet
    lab.write("node1")
    lab.write("node2")
    lab.admin("heal", "r0")                          # DRBD finds the split brain
    for _ in range(2):
        for n in ("node1", "node2"):
            p = lab.agent(n, "monitor")
    assert "SPLIT BRAIN" in p.stderr, p.stderr
    assert lab.attribute("node2", "drbd-r0-split-brain") == "1"


def test_the_published_generation_uuids_follow_the_first_write_of_a_disconnected_primary(lab):
    """What the peer compares after a reconnect must be current: DRBD 9 rotates the UUID at
    the first write, which events2 does not show."""
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    lab.agent("node1", "monitor")                    # publishes the UUIDs of the cut
    lab.write("node1")
    lab.agent("node1", "monitor")
    current = lab.run("node1", "drbdsetup", "get-gi", "r0", "1", "0").stdout.split(":")[0]
    assert lab.attribute("node1", "drbd-r0-gi").split(":")[0] == current
