"""ocf:pyha:drbd: state parsing on real-format samples, score rules, and the installed agent
driving the DRBD emulator through every transition."""

import os
import subprocess
import time

import pytest

from ocf_agents import drbd
from rigs.drbd import EMU_BIN
from rigs.drbd_emulator import SAMPLES


# ------------------------------------------------------------------- parsing

def test_parse_events2_real_capture():
    st = drbd.parse_events2((SAMPLES / "v9_events2_statistics_old.txt").read_text(), "r0")
    assert (st.role, st.disks, st.client, st.quorum) == ("Primary", ["UpToDate"], False, True)
    peer = st.peers["0"]
    assert (peer.name, peer.connection, peer.role, peer.disks) == \
        ("peer", "Connected", "Secondary", ["UpToDate"])


def test_parse_events2_other_resource_and_empty():
    text = (SAMPLES / "v9_events2_statistics_old.txt").read_text()
    assert not drbd.parse_events2(text, "r1").configured
    assert not drbd.parse_events2("exists -\n", "r0").configured


def test_parse_events2_922_fields_sync_and_quorum():
    text = ("exists resource name:r0 role:Secondary suspended:no force-io-failures:no "
            "may_promote:no promotion_score:10001\n"
            "exists connection name:r0 peer-node-id:1 conn-name:b connection:Connected role:Primary\n"
            "exists device name:r0 volume:0 minor:0 backing_dev:/dev/sdb disk:Inconsistent "
            "client:no quorum:no\n"
            "exists peer-device name:r0 peer-node-id:1 conn-name:b volume:0 replication:SyncTarget "
            "peer-disk:UpToDate peer-client:no resync-suspended:no done:37.50\n"
            "exists path name:r0 peer-node-id:1 conn-name:b local:ipv4:1.2.3.4:7789 "
            "peer:ipv4:5.6.7.8:7790 established:yes\nexists -\n")
    st = drbd.parse_events2(text, "r0")
    assert st.disks == ["Inconsistent"] and not st.quorum
    assert st.peers["1"].replication == ["SyncTarget"] and st.peers["1"].done == 37.5


@pytest.mark.parametrize("sample,role,conn,peer_role,pdisk,done", [
    ("v9_status_json_primary.json", "Primary", "Connected", "Secondary", "UpToDate", None),
    ("head_secondary_status.json", "Secondary", "Connected", "Primary", "UpToDate", None),
    ("head_primary_connecting_status.json", "Primary", "Connecting", "Unknown", "DUnknown", None),
    ("head_primary_syncsource_status.json", "Primary", "Connected", "Secondary", "Inconsistent",
     37.5),
])
def test_parse_status_json_samples(sample, role, conn, peer_role, pdisk, done):
    text = (SAMPLES / sample).read_text()
    name = "r0" if sample.startswith("v9") else "some-resource"
    st = drbd.parse_status_json(text, name)
    (peer,) = st.peers.values()
    assert (st.role, st.disks) == (role, ["UpToDate"])
    assert (peer.connection, peer.role, peer.disks, peer.done) == (conn, peer_role, [pdisk], done)


def test_parse_sh_status_84():
    st = drbd.parse_sh_status((SAMPLES / "84_sh_status.txt").read_text())
    assert (st.role, st.disks) == ("Primary", ["UpToDate"])
    peer = st.peers["peer"]
    assert (peer.connection, peer.role, peer.disks) == ("Connected", "Secondary", ["UpToDate"])
    unconf = "_minor=0\n_res_name=r0\n_volume=0\n_known=Unconfigured\n\n_sh_status_process\n\n\n"
    assert not drbd.parse_sh_status(unconf).configured
    wfc = (SAMPLES / "84_sh_status.txt").read_text().replace("_cstate=Connected",
                                                             "_cstate=WFConnection")
    wfc = wfc.replace("_pdsk=UpToDate", "_pdsk=DUnknown").replace("_peer=Secondary", "_peer=Unknown")
    peer = drbd.parse_sh_status(wfc).peers["peer"]
    assert (peer.connection, peer.any_unknown) == ("Connecting", True)


def test_parse_drbdadm_84_words():
    st = drbd.parse_drbdadm_84("Primary/Secondary\n", "SyncSource\n", "UpToDate/Inconsistent\n")
    assert st.primary and st.peers["peer"].connection == "Connected"
    assert st.peers["peer"].replication == ["SyncSource"]
    assert not drbd.parse_drbdadm_84("Unconfigured\n", "Unconfigured\n", "Unconfigured\n").configured
    st = drbd.parse_drbdadm_84("Secondary/Unknown", "StandAlone", "Outdated/DUnknown")
    assert st.standalone_peers and st.disks == ["Outdated"]


def test_parse_proc_drbd_84():
    version, minors = drbd.parse_proc_drbd((SAMPLES / "84_proc_drbd.txt").read_text())
    assert version == (8, 4, 11)
    assert minors[0] == ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", None)
    assert minors[1][0] == "Unconfigured"
    _, minors = drbd.parse_proc_drbd((SAMPLES / "84_proc_drbd_resync.txt").read_text())
    assert minors[0][0] == "SyncSource" and minors[0][5] == 49.0


def test_parse_gi_and_divergence_rules():
    v9 = "EADD269BF6EC6081:4FE376A86CBC5DB4:0000000000000000:0000000000000000:1:1:1:0:0:0:0:0:0:0:0:1\n"
    assert drbd.parse_gi(v9) == ("EADD269BF6EC6081", "4FE376A86CBC5DB4", "0" * 16, "0" * 16)
    assert drbd.parse_gi("\n       V   V\n" + v9 + "   ^ ^ ^\n") == drbd.parse_gi(v9)
    assert drbd.parse_gi("r0: Unknown resource\n") is None
    base, a, b = "4FE376A86CBC5DB4", "EADD269BF6EC6081", "C18F1D7192028B14"
    zero = "0" * 16
    assert drbd.uuids_diverged((a, base, zero, zero), (b, base, zero, zero))   # both moved on
    assert not drbd.uuids_diverged((a, base, zero, zero), (base, zero, zero, zero))  # behind
    assert not drbd.uuids_diverged((a, zero, zero, zero), ("EADD269BF6EC6080", zero, zero, zero))
    assert not drbd.uuids_diverged((a, zero, base, zero), (base, zero, zero, zero))


def test_a_module_that_is_not_loaded_is_not_taken_for_any_version():
    """Issue 12.2: with the module not loaded, drbdadm --version says
    DRBD_KERNEL_VERSION=0; that is "not loaded", not a module older than 8.0."""
    assert drbd.decode_kernel_version("DRBDADM_VERSION=9.22.0\nDRBD_KERNEL_VERSION=0\n") is None
    assert drbd.decode_kernel_version("DRBD_KERNEL_VERSION=8.4.11\n") == (8, 4, 11)
    assert drbd.decode_kernel_version("DRBD_KERNEL_VERSION=9.2.12-rc.1\n") == (9, 2, 12)
    assert drbd.decode_kernel_version("") is None


# ------------------------------------------------------------------- score rules

class P:
    adjust_master_score = [0, 10, 1000, 10000]
    remove_master_score_if_peer_primary = "false"


def state(role, disk, conn="Connected", peer_role="Secondary", pdisk="UpToDate", client=False):
    st = drbd.DrbdState()
    st.role, st.disks, st.client = role, [disk], client
    peer = drbd.Peer("b")
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
    (state("Secondary", "Attaching", "Connecting", "Unknown", "DUnknown"), drbd.UNCHANGED),
    (state("Secondary", "Diskless", client=True), 9999),      # good - 1
])
def test_promotion_score_rules(st, score):
    assert drbd.compute_score(st, P) == score


def test_a_diskless_client_never_outranks_a_node_with_the_data():
    """Issue 12.1: the client's scores come from adjust_master_score, one below a
    diskful node's (LINBIT: good - 1, local_peer_unknown - 1), not a fixed 9999/999."""
    class Low(P):
        adjust_master_score = [0, 10, 100, 200]
    client = state("Secondary", "Diskless", client=True)
    diskful = state("Secondary", "UpToDate")
    assert drbd.compute_score(client, Low) == 199 < drbd.compute_score(diskful, Low) == 200
    # one diskful peer UpToDate, another not: local_peer_unknown - 1
    other = drbd.Peer("c")
    other.connection, other.role, other.disks = "Connecting", "Unknown", ["DUnknown"]
    client.peers["2"] = other
    assert drbd.compute_score(client, Low) == 99
    # a diskless peer has nothing to be UpToDate with: it does not count
    other.client_volumes = [True]
    assert drbd.compute_score(client, Low) == 199


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
    st = drbd.parse_events2(events, "r0")
    assert not st.peers["1"].client
    st = drbd.parse_events2(events.replace("peer-client:no", "peer-client:yes"), "r0")
    assert st.peers["1"].client


def test_score_removed_when_peer_primary_if_configured():
    class Q(P):
        remove_master_score_if_peer_primary = "true"
    assert drbd.compute_score(state("Secondary", "UpToDate", peer_role="Primary"), Q) is None
    assert drbd.compute_score(state("Secondary", "UpToDate", peer_role="Primary"), P) == 10000
    st = state("Secondary", "UpToDate")
    st.quorum = False
    assert drbd.compute_score(st, P) is None


# ------------------------------------------------------------------- agent x emulator

def start_pair(lab, params=None, **init):
    lab.init("r0", **init)
    for n in ("node1", "node2"):
        p = lab.agent(n, "start", params)
        assert p.returncode == 0, p.stderr
    return lab


@pytest.mark.parametrize("mode", ["9", "8.4"])
def test_lifecycle_start_promote_demote_stop(lab, mode):
    start_pair(lab, mode=mode)
    assert lab.attribute("node1", "master-p_drbd_r0") == "1000"     # peer not there yet
    assert lab.attribute("node2", "master-p_drbd_r0") == "10000"
    assert [lab.agent(n, "monitor").returncode for n in ("node1", "node2")] == [0, 0]
    assert lab.attribute("node1", "master-p_drbd_r0") == "10000"
    calls = len(lab.crm_calls())
    assert lab.agent("node1", "monitor").returncode == 0
    assert len(lab.crm_calls()) == calls          # unchanged score: no CIB write
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.agent("node1", "promote").returncode == 0     # idempotent
    assert lab.agent("node1", "demote").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 0
    for n in ("node1", "node2"):
        assert lab.agent(n, "stop").returncode == 0
        assert lab.agent(n, "monitor").returncode == 7
        assert lab.agent(n, "stop").returncode == 0          # idempotent
    assert lab.attribute("node1", "master-p_drbd_r0") is None
    assert lab.agent("node1", "demote").returncode == 7


def test_probe_rewrites_the_score_and_detects_running_resource(lab):
    start_pair(lab)
    calls = len(lab.crm_calls())
    p = lab.agent("node1", "monitor", meta={"interval": "0"})
    assert p.returncode == 0
    assert len(lab.crm_calls()) == calls + 1


def test_peer_loss_is_degraded_then_resync_restores(lab):
    start_pair(lab, resync_seconds=1)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    p = lab.agent("node1", "monitor")
    assert p.returncode == 191 and "peer not connected" in p.stderr
    assert lab.agent("node2", "monitor").returncode == 190
    assert lab.attribute("node2", "master-p_drbd_r0") == "1000"
    assert lab.agent("node1", "monitor", params={"report_degraded": "false"}).returncode == 8
    lab.admin("heal", "r0")
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", "master-p_drbd_r0") == "10"        # SyncTarget
    time.sleep(1.1)
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", "master-p_drbd_r0") == "10000"


def test_outdated_data_is_not_promoted(lab):
    start_pair(lab, params={"stop_outdates_secondary": "true"})
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.agent("node2", "stop", {"stop_outdates_secondary": "true"}).returncode == 0
    lab.admin("crash", "node1")
    assert lab.agent("node2", "start").returncode == 0
    assert lab.attribute("node2", "master-p_drbd_r0") is None
    t = time.time()
    p = lab.agent("node2", "promote")
    assert p.returncode == 1 and "no access to UpToDate data" in p.stderr
    assert time.time() - t < 5


def test_promote_retries_while_peer_is_primary_then_fails_at_timeout(lab):
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    t = time.time()
    p = lab.agent("node2", "promote", meta={"timeout": "4000"})
    assert p.returncode == 1 and "Multiple primaries" in p.stderr
    assert 0.9 < time.time() - t < 6
    p = lab.agent("node2", "promote", params={"fail_promote_early_if_peer_primary": "true"})
    assert p.returncode == 1 and "already Primary" in p.stderr


def make_split_brain(lab, params=None, **init):
    """Primary node1, link cut, node2 promoted too, link healed: DRBD finds diverged data."""
    start_pair(lab, params=params, **init)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    assert lab.agent("node2", "promote").returncode == 0
    lab.admin("heal", "r0")


def test_split_brain_detected_from_diverged_generation_uuids(lab):
    make_split_brain(lab)
    p = lab.agent("node1", "monitor")           # node2's UUIDs are not published yet
    assert p.returncode == 191 and "not known yet" in p.stderr and "CRIT" not in p.stderr
    p = lab.agent("node2", "monitor")
    assert p.returncode == 191 and "SPLIT BRAIN" in p.stderr and "CRIT" in p.stderr
    assert "generation UUIDs diverged" in p.stderr
    p = lab.agent("node1", "monitor")
    assert p.returncode == 191 and "generation UUIDs diverged" in p.stderr
    assert "WARNING" in p.stderr and "ERROR" not in p.stderr      # degraded, not failed
    for node in ("node1", "node2"):
        assert lab.attribute(node, "drbd-r0-split-brain") == "1"
    assert lab.image("r0", "node1") != lab.image("r0", "node2")      # nothing discarded
    calls = len(lab.crm_calls())
    assert lab.agent("node1", "monitor").returncode == 191
    assert len(lab.crm_calls()) == calls                               # reported once


def test_administrative_disconnect_is_degraded_not_split_brain(lab):
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    for node in ("node2", "node1"):
        assert lab.run(node, "drbdadm", "disconnect", "r0").returncode == 0
    for node, rc in (("node1", 191), ("node2", 190), ("node1", 191)):
        p = lab.agent(node, "monitor")
        assert p.returncode == rc and "SPLIT BRAIN" not in p.stderr and "CRIT" not in p.stderr
    assert "disconnected by an administrator" in p.stderr
    assert lab.attribute("node1", "drbd-r0-split-brain") is None
    for node in ("node1", "node2"):
        assert lab.run(node, "drbdadm", "connect", "r0").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.attribute("node1", "drbd-r0-gi") is None                # unpublished again


@pytest.mark.parametrize("mode", ["9", "8.4"])
def test_split_brain_handler_run_by_drbd_records_it_at_once(lab, mode):
    handler = "HA_RSCTMP=%s/rsc-$DRBDEMU_NODE %s split-brain-handler" % (lab.base,
                                                                          lab.agent_path)
    make_split_brain(lab, mode=mode, split_brain_handler=handler)
    if mode == "9":     # DRBD 9 names the nodes (DRBD_NODE_ID_*): both attributes at once
        for node in ("node1", "node2"):
            assert lab.attribute(node, "drbd-r0-split-brain") == "1"
    for node in ("node1", "node2"):
        assert os.path.exists(os.path.join(lab.base, "rsc-" + node, "drbd", "r0.split-brain"))
    p = lab.agent("node1", "monitor")
    assert p.returncode == 191 and "split-brain handler" in p.stderr and "CRIT" in p.stderr
    events = lab.state_of("r0")["events"]
    assert any(e["line"].startswith("response helper") and "status:0" in e["line"]
               for e in events)


def test_handler_rejects_a_missing_resource_name(agent_path):
    env = {"PATH": "/usr/bin:/bin", "DRBD_RESOURCE": "-x"}
    p = subprocess.run([agent_path, "split-brain-handler"], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 2 and "DRBD_RESOURCE" in p.stderr


def test_manual_recovery_with_discard_my_data_clears_the_split_brain(lab):
    handler = "HA_RSCTMP=%s/rsc-$DRBDEMU_NODE %s split-brain-handler" % (lab.base,
                                                                          lab.agent_path)
    make_split_brain(lab, resync_seconds=0, split_brain_handler=handler)
    assert lab.agent("node2", "monitor").returncode == 191
    assert lab.agent("node2", "demote").returncode == 0
    assert lab.run("node2", "drbdadm", "connect", "--discard-my-data", "r0").returncode == 0
    assert lab.run("node1", "drbdadm", "connect", "r0").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.agent("node2", "monitor").returncode == 0
    for node in ("node1", "node2"):
        assert lab.attribute(node, "drbd-r0-split-brain") is None
        assert lab.attribute(node, "drbd-r0-gi") is None
        assert not os.path.exists(os.path.join(lab.base, "rsc-" + node, "drbd",
                                               "r0.split-brain"))
    assert lab.image("r0", "node1") == lab.image("r0", "node2")


def test_discard_my_data_recovery_when_configured(lab):
    params = {"split_brain_recovery": "discard-secondary"}
    start_pair(lab, params=params, resync_seconds=0)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    assert lab.agent("node2", "promote").returncode == 0
    lab.admin("heal", "r0")
    assert lab.agent("node2", "demote").returncode == 0
    assert lab.agent("node2", "monitor", params).returncode == 190      # no evidence yet
    assert lab.agent("node1", "monitor", params).returncode == 191      # diverged: reconnects
    assert lab.agent("node2", "monitor", params).returncode == 190      # reconnects, discarding
    assert lab.agent("node1", "monitor", params).returncode == 8
    assert lab.agent("node2", "monitor", params).returncode == 0
    assert lab.attribute("node1", "drbd-r0-split-brain") is None
    assert lab.image("r0", "node1") == lab.image("r0", "node2")


def test_demote_of_mounted_device_names_the_holder(lab):
    dev = start_pair(lab) and os.path.join(lab.dev, "drbd0")
    assert lab.agent("node1", "promote").returncode == 0
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mnt = lab.mount(dev, "mnt")
    p = lab.agent("node1", "demote", meta={"timeout": "3000"})
    assert p.returncode == 1 and "held open by: mount %s" % mnt in p.stderr
    subprocess.run(["umount", mnt], check=True)
    assert lab.agent("node1", "demote").returncode == 0


@pytest.mark.parametrize("mode", ["9", "8.4"])
@pytest.mark.parametrize("promoted", [False, True])
def test_stop_of_a_resource_gone_from_drbd_conf_takes_it_down_anyway(lab, mode, promoted):
    """Issue 12.4: drbdadm refuses a resource no longer in drbd.conf, but the kernel
    still has it up; stop falls back to drbdsetup down instead of failing (a failed stop
    gets the node fenced)."""
    start_pair(lab, mode=mode)
    if promoted:
        assert lab.agent("node1", "promote").returncode == 0
    lab.admin("unconfigure", "r0", "node1")
    p = lab.agent("node1", "stop")
    assert p.returncode == 0, p.stderr
    assert "drbdsetup down" in p.stderr
    assert lab.state_of("r0")["node"]["node1"]["up"] is False


def test_unfence_runs_once_all_disks_are_uptodate_though_the_score_is_unchanged(lab,
                                                                              tmp_path):
    """Issue 12.3: a Primary's score does not change while its peer resyncs, and the
    unfence call must not depend on it; the handler gets unfence_extra_args (LINBIT's
    default) through OCF_RESKEY_unfence_extra_args."""
    calls = tmp_path / "unfence-calls"
    wrapper = tmp_path / "bin" / "drbdadm"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\n"
                       'case " $* " in *" unfence-peer "*)\n'
                       f'  echo "$* | $OCF_RESKEY_unfence_extra_args" >> "{calls}";;\nesac\n'
                       f'exec "{EMU_BIN / "drbdadm"}" "$@"\n')
    wrapper.chmod(0o755)
    params = {"unfence_if_all_uptodate": "true"}
    start_pair(lab, params)
    assert lab.agent("node1", "monitor", params).returncode == 0     # score 10000
    env = lab.agent_env("node1", params)
    env["PATH"] = f"{wrapper.parent}:{env['PATH']}"
    for action in ("promote", "monitor", "monitor"):
        p = subprocess.run([lab.agent_path, action], env=env, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode in (0, 8), p.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 1, lines                       # once, not at every monitor
    assert lines[0].endswith("| --quiet --flock-required --flock-timeout 0 "
                             "--unfence-only-if-owner-match")
    assert lab.attribute("node1", "master-p_drbd_r0") == "10000"


def test_primary_with_failed_disk_is_failed_promoted(lab):
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("fail-disk", "r0", "node1")
    p = lab.agent("node1", "monitor")
    assert p.returncode == 9 and "without its local disk" in p.stderr


def test_a_resource_not_defined_here_is_missing_on_this_node_not_misconfigured(lab):
    """Issue 12.5: 5 (this node lacks it) keeps the clone off this node only; 6 would
    ban it from every node."""
    lab.init("r0")
    p = lab.agent("node1", "start", params={"drbd_resource": "r9"})
    assert p.returncode == 5 and "not defined" in p.stderr
    p = lab.agent("node1", "start", params={"drbdconf": "/nonexistent/drbd.conf"})
    assert p.returncode == 5 and "does not exist on this node" in p.stderr


@pytest.mark.parametrize("meta,params,reason", [
    ({"clone_node_max": "2"}, {}, "clone-node-max"),
    ({"promoted_max": "3"}, {}, "promoted-max"),
    ({"promoted_max": "2"}, {}, "allow-two-primaries"),
    ({"notify": "false"}, {}, "notify=true"),
    ({}, {"adjust_master_score": "1 2 3"}, "adjust_master_score"),
    ({}, {"drbd_resource": "-x; rm"}, "drbd_resource"),
    ({}, {"require_drbd_module_version_lt": "9.0.0"}, "not older than"),
])
def test_validate_all_rejects_bad_configuration(lab, meta, params, reason):
    lab.init("r0")
    p = lab.agent("node1", "validate-all", params=params, meta=meta)
    assert p.returncode in (5, 6) and reason in p.stderr, p.stderr


def test_validate_all_accepts_dual_primary_with_allow_two_primaries(lab):
    lab.init("r0", allow_two_primaries=True)
    assert lab.agent("node1", "validate-all", meta={"promoted_max": "2"}).returncode == 0
    assert lab.agent("node1", "validate-all").returncode == 0


def test_notify_post_promote_outdates_disconnected_secondary(lab):
    params = {"stop_outdates_secondary": "true"}
    start_pair(lab, params=params)
    lab.admin("cut", "r0")
    meta = {"notify_type": "post", "notify_operation": "promote",
            "notify_promote_uname": "node1", "notify_master_uname": "node1"}
    assert lab.agent("node2", "notify", params, meta).returncode == 0
    assert "disk:Outdated" in lab.run("node2", "drbdsetup", "status", "r0").stdout
    assert lab.attribute("node2", "master-p_drbd_r0") is None
    for kind in ("pre", "post"):
        for op in ("start", "stop", "promote", "demote"):
            m = {"notify_type": kind, "notify_operation": op}
            assert lab.agent("node1", "notify", meta=m).returncode == 0


def test_notify_naming_a_primary_that_is_being_stopped_does_not_outdate_the_survivor(lab):
    # After a power loss Pacemaker fences the Primary and notifies the survivor of the dead
    # instance's demote/stop with the promoted list still naming it (VM lab, DRBD 8.4):
    # outdating there left nobody promotable.
    params = {"stop_outdates_secondary": "true"}
    start_pair(lab, params=params)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("crash", "node1")
    meta = {"notify_type": "post", "notify_operation": "demote",
            "notify_demote_uname": "node1", "notify_stop_uname": "node1",
            "notify_master_uname": "node1"}
    assert lab.agent("node2", "notify", params, meta).returncode == 0
    assert "disk:UpToDate" in lab.run("node2", "drbdsetup", "status", "r0").stdout
    assert lab.agent("node2", "promote", params).returncode == 0


def test_failover_keeps_files_written_on_the_primary(lab):
    start_pair(lab, size="32M")
    dev = os.path.join(lab.dev, "drbd0")
    assert lab.agent("node1", "promote").returncode == 0
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mnt = lab.mount(dev, "m1")
    with open(os.path.join(mnt, "data"), "w") as f:
        f.write("payload\n")
    subprocess.run(["umount", mnt], check=True)
    assert lab.agent("node1", "demote").returncode == 0
    assert lab.agent("node2", "promote").returncode == 0
    mnt = lab.mount(dev, "m2")
    assert open(os.path.join(mnt, "data")).read() == "payload\n"
    subprocess.run(["umount", mnt], check=True)


# ------------------------------------------------------------------- ocf-tester

def test_ocf_tester_passes_under_the_emulator(lab):
    lab.init("r0", nodes=os.uname().nodename)      # single node: nothing is degraded
    env = lab.agent_env(os.uname().nodename)
    for k in list(env):
        if k.startswith("OCF_RESKEY") or k in ("OCF_RESOURCE_INSTANCE",):
            del env[k]
    env.pop("DRBDEMU_NODE", None)
    p = subprocess.run(["ocf-tester", "-n", "p_drbd_r0", "-o", "drbd_resource=r0",
                        "-o", "wfc_timeout=0", "-o",
                        "proc_drbd=" + os.path.join(lab.base, "no-proc-drbd"), lab.agent_path],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "passed all tests" in p.stdout


def test_steady_state_monitor_is_one_drbdsetup_call_and_no_cib_write(lab):
    start_pair(lab)
    lab.agent("node1", "monitor")
    log = os.path.join(lab.base, "calls.log")
    wrap = os.path.join(lab.base, "countbin")
    os.makedirs(wrap)
    for tool in ("drbdsetup", "drbdadm"):
        with open(os.path.join(wrap, tool), "w") as f:
            f.write('#!/bin/sh\necho %s >> %s\nexec %s/%s "$@"\n'
                    % (tool, log, EMU_BIN, tool))
        os.chmod(os.path.join(wrap, tool), 0o755)
    lab.env["PATH"] = wrap + ":" + lab.env["PATH"]
    calls = len(lab.crm_calls())
    assert lab.agent("node1", "monitor").returncode == 0
    assert open(log).read().split() == ["drbdsetup"]
    assert len(lab.crm_calls()) == calls
