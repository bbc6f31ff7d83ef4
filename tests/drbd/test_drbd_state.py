"""ocf_agents.drbdstate: the decoders on real-format samples (drbd-utils 9.22 and 8.4
captures) and LINBIT's promotion-score rules."""

import pytest

from ocf_agents import drbdstate
from rigs.drbd_emulator import SAMPLES


# ------------------------------------------------------------------- parsing

def test_decode_events2_real_capture():
    st = drbdstate.decode_events2((SAMPLES / "v9_events2_statistics_old.txt").read_text(), "r0")
    assert (st.role, st.disks, st.client, st.quorum) == ("Primary", ["UpToDate"], False, True)
    peer = st.peers["0"]
    assert (peer.name, peer.connection, peer.role, peer.disks) == \
        ("peer", "Connected", "Secondary", ["UpToDate"])


def test_decode_events2_other_resource_and_empty():
    text = (SAMPLES / "v9_events2_statistics_old.txt").read_text()
    assert not drbdstate.decode_events2(text, "r1").configured
    assert not drbdstate.decode_events2("exists -\n", "r0").configured


def test_decode_events2_922_fields_sync_and_quorum():
    text = ("exists resource name:r0 role:Secondary suspended:no force-io-failures:no "
            "may_promote:no promotion_score:10001\n"
            "exists connection name:r0 peer-node-id:1 conn-name:b connection:Connected role:Primary\n"
            "exists device name:r0 volume:0 minor:0 backing_dev:/dev/sdb disk:Inconsistent "
            "client:no quorum:no\n"
            "exists peer-device name:r0 peer-node-id:1 conn-name:b volume:0 replication:SyncTarget "
            "peer-disk:UpToDate peer-client:no resync-suspended:no done:37.50\n"
            "exists path name:r0 peer-node-id:1 conn-name:b local:ipv4:1.2.3.4:7789 "
            "peer:ipv4:5.6.7.8:7790 established:yes\nexists -\n")
    st = drbdstate.decode_events2(text, "r0")
    assert st.disks == ["Inconsistent"] and not st.quorum
    assert st.peers["1"].replication == ["SyncTarget"] and st.peers["1"].done == 37.5


def test_decode_sh_status_84():
    st = drbdstate.decode_sh_status((SAMPLES / "84_sh_status.txt").read_text())
    assert (st.role, st.disks) == ("Primary", ["UpToDate"])
    peer = st.peers["peer"]
    assert (peer.connection, peer.role, peer.disks) == ("Connected", "Secondary", ["UpToDate"])
    unconf = "_minor=0\n_res_name=r0\n_volume=0\n_known=Unconfigured\n\n_sh_status_process\n\n\n"
    assert not drbdstate.decode_sh_status(unconf).configured
    wfc = (SAMPLES / "84_sh_status.txt").read_text().replace("_cstate=Connected",
                                                             "_cstate=WFConnection")
    wfc = wfc.replace("_pdsk=UpToDate", "_pdsk=DUnknown").replace("_peer=Secondary", "_peer=Unknown")
    peer = drbdstate.decode_sh_status(wfc).peers["peer"]
    assert (peer.connection, peer.any_unknown) == ("Connecting", True)


def test_decode_drbdadm_84_words():
    st = drbdstate.decode_drbdadm_84("Primary/Secondary\n", "SyncSource\n", "UpToDate/Inconsistent\n")
    assert st.primary and st.peers["peer"].connection == "Connected"
    assert st.peers["peer"].replication == ["SyncSource"]
    assert not drbdstate.decode_drbdadm_84("Unconfigured\n", "Unconfigured\n", "Unconfigured\n").configured
    st = drbdstate.decode_drbdadm_84("Secondary/Unknown", "StandAlone", "Outdated/DUnknown")
    assert st.standalone_peers and st.disks == ["Outdated"]


def test_decode_proc_drbd_84():
    version, minors = drbdstate.decode_proc_drbd((SAMPLES / "84_proc_drbd.txt").read_text())
    assert version == (8, 4, 11)
    assert minors[0] == ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", None)
    assert minors[1][0] == "Unconfigured"
    _, minors = drbdstate.decode_proc_drbd((SAMPLES / "84_proc_drbd_resync.txt").read_text())
    assert minors[0][0] == "SyncSource" and minors[0][5] == 49.0


def test_decode_gi_and_divergence_rules():
    v9 = "EADD269BF6EC6081:4FE376A86CBC5DB4:0000000000000000:0000000000000000:1:1:1:0:0:0:0:0:0:0:0:1\n"
    assert drbdstate.decode_gi(v9) == ("EADD269BF6EC6081", "4FE376A86CBC5DB4", "0" * 16, "0" * 16)
    assert drbdstate.decode_gi("\n       V   V\n" + v9 + "   ^ ^ ^\n") == drbdstate.decode_gi(v9)
    assert drbdstate.decode_gi("r0: Unknown resource\n") is None
    base, a, b = "4FE376A86CBC5DB4", "EADD269BF6EC6081", "C18F1D7192028B14"
    zero = "0" * 16
    assert drbdstate.uuids_diverged((a, base, zero, zero), (b, base, zero, zero))   # both moved on
    assert not drbdstate.uuids_diverged((a, base, zero, zero), (base, zero, zero, zero))  # behind
    assert not drbdstate.uuids_diverged((a, zero, zero, zero), ("EADD269BF6EC6080", zero, zero, zero))
    assert not drbdstate.uuids_diverged((a, zero, base, zero), (base, zero, zero, zero))


def test_a_module_that_is_not_loaded_is_not_taken_for_any_version():
    """Issue 12.2: with the module not loaded, drbdadm --version says
    DRBD_KERNEL_VERSION=0; that is "not loaded", not a module older than 8.0."""
    assert drbdstate.decode_kernel_version("DRBDADM_VERSION=9.22.0\nDRBD_KERNEL_VERSION=0\n") is None
    assert drbdstate.decode_kernel_version("DRBD_KERNEL_VERSION=8.4.11\n") == (8, 4, 11)
    assert drbdstate.decode_kernel_version("DRBD_KERNEL_VERSION=9.2.12-rc.1\n") == (9, 2, 12)
    assert drbdstate.decode_kernel_version("") is None


# ------------------------------------------------------------------- score rules

class P:
    adjust_master_score = [0, 10, 1000, 10000]
    remove_master_score_if_peer_primary = "false"


def state(role, disk, conn="Connected", peer_role="Secondary", pdisk="UpToDate", client=False):
    st = drbdstate.DrbdState()
    st.role, st.disks, st.client = role, [disk], client
    peer = drbdstate.Peer("b")
    peer.connection, peer.role, peer.disks = conn, peer_role, [pdisk]
    st.peers["1"] = peer
    return st


@pytest.mark.parametrize("st,score", [
    (state("Primary", "UpToDate"), 10000),
    (state("Secondary", "UpToDate"), 10000),
    (state("Secondary", "UpToDate", "Connecting", "Unknown", "DUnknown"), 1000),
    (state("Primary", "UpToDate", "Connecting", "Unknown", "DUnknown"), 10000),
    (state("Secondary", "Inconsistent", peer_role="Primary"), 10),
    (state("Secondary", "Outdated", "Connecting", "Unknown", "DUnknown"), None),
    (state("Secondary", "Consistent", "Connecting", "Unknown", "DUnknown"), None),
    (state("Secondary", "Inconsistent", "Connecting", "Unknown", "DUnknown"), None),
    (state("Secondary", "Attaching", "Connecting", "Unknown", "DUnknown"), drbdstate.UNCHANGED),
    (state("Secondary", "Diskless", client=True), 9999),      # good - 1
])
def test_promotion_score_rules(st, score):
    assert drbdstate.compute_score(st, P) == score


def test_a_diskless_client_never_outranks_a_node_with_the_data():
    """Issue 12.1: the client's scores come from adjust_master_score, one below a
    diskful node's (LINBIT: good - 1, local_peer_unknown - 1), not a fixed 9999/999."""
    class Low(P):
        adjust_master_score = [0, 10, 100, 200]
    client = state("Secondary", "Diskless", client=True)
    diskful = state("Secondary", "UpToDate")
    assert drbdstate.compute_score(client, Low) == 199 < drbdstate.compute_score(diskful, Low) == 200
    # one diskful peer UpToDate, another not: local_peer_unknown - 1
    other = drbdstate.Peer("c")
    other.connection, other.role, other.disks = "Connecting", "Unknown", ["DUnknown"]
    client.peers["2"] = other
    assert drbdstate.compute_score(client, Low) == 99
    # a diskless peer has nothing to be UpToDate with: it does not count
    other.client_volumes = [True]
    assert drbdstate.compute_score(client, Low) == 199


def test_a_peer_is_a_client_only_when_every_volume_says_so():
    events = ("exists resource name:r0 role:Secondary suspended:no\n"
              "exists connection name:r0 peer-node-id:1 conn-name:b connection:Connected "
              "role:Secondary\n"
              "exists device name:r0 volume:0 minor:0 disk:UpToDate client:no quorum:yes\n"
              "exists device name:r0 volume:1 minor:1 disk:UpToDate client:no quorum:yes\n"
              "exists peer-device name:r0 peer-node-id:1 conn-name:b volume:0 "
              "replication:Established peer-disk:Diskless peer-client:yes\n"
              "exists peer-device name:r0 peer-node-id:1 conn-name:b volume:1 "
              "replication:Established peer-disk:UpToDate peer-client:no\n"
              "exists -\n")
    st = drbdstate.decode_events2(events, "r0")
    assert not st.peers["1"].client
    st = drbdstate.decode_events2(events.replace("peer-client:no", "peer-client:yes"), "r0")
    assert st.peers["1"].client


def test_score_removed_when_peer_primary_if_configured():
    class Q(P):
        remove_master_score_if_peer_primary = "true"
    assert drbdstate.compute_score(state("Secondary", "UpToDate", peer_role="Primary"), Q) is None
    assert drbdstate.compute_score(state("Secondary", "UpToDate", peer_role="Primary"), P) == 10000
    st = state("Secondary", "UpToDate")
    st.quorum = False
    assert drbdstate.compute_score(st, P) is None


@pytest.mark.parametrize("disk,failed", [("Detaching", False), ("Failed", True),
                                         ("Diskless", True), ("UpToDate", False)])
def test_a_detaching_disk_is_not_a_failed_one_yet(disk, failed):
    """Issue 12.7: Detaching is the transient step of a detach; a Primary in it is still
    promoted (8), not failed (9): only Failed or Diskless (without client:yes) are."""
    text = ("exists resource name:r0 role:Primary suspended:no\n"
            f"exists device name:r0 volume:0 minor:0 disk:{disk} client:no quorum:yes\n"
            "exists -\n")
    assert drbdstate.decode_events2(text, "r0").disk_failed is failed
