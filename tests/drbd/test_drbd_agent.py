"""ocf:pyha:drbd: the installed agent driving the DRBD emulator through every transition
(the state decoders and score rules: test_drbd_state.py)."""

import os
import subprocess
import time

import pytest

from rigs.agents import exit_reason
from rigs.drbd import EMU_BIN, start_pair


# ------------------------------------------------------------------- agent x emulator

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
    lab.write("node1")                  # the Primary goes on writing: a new data generation
    p = lab.agent("node1", "monitor", params={"report_degraded": "disconnected"})
    assert p.returncode == 191 and "peer not connected" in p.stderr
    assert lab.agent("node2", "monitor", params={"report_degraded": "true"}).returncode == 190
    assert lab.attribute("node2", "master-p_drbd_r0") == "1000"
    assert lab.agent("node1", "monitor", params={"report_degraded": "false"}).returncode == 8
    lab.admin("heal", "r0")
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", "master-p_drbd_r0") == "10"        # SyncTarget
    time.sleep(1.1)
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node2", "master-p_drbd_r0") == "10000"


def test_a_peer_that_is_away_leaves_no_failed_action_but_a_node_attribute(lab):
    """Issue 12.6: Pacemaker 2.1 keeps every 190/191 as a failed action until a cleanup
    (and a cleanup of the Promoted instance restarts the filesystem on it: measured in the
    lab). A peer that is only away heals by itself: monitor says 8/0 and the node
    attribute drbd-r0-degraded names it, written once and deleted when it is back."""
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 8
    lab.admin("cut", "r0")
    p = lab.agent("node1", "monitor")
    assert p.returncode == 8 and "not connected to" in p.stderr, p.stderr
    assert node_attribute(lab, "node1", "drbd-r0-degraded") == "node2 Connecting"
    assert lab.agent("node2", "monitor").returncode == 0
    assert node_attribute(lab, "node2", "drbd-r0-degraded") == "node1 Connecting"
    calls = len(lab.crm_calls())
    assert lab.agent("node1", "monitor").returncode == 8
    assert len(lab.crm_calls()) == calls                   # unchanged: no CIB write
    lab.admin("heal", "r0")
    p = lab.agent("node1", "monitor")
    assert p.returncode == 8 and "every peer is connected again" in p.stderr
    assert node_attribute(lab, "node1", "drbd-r0-degraded") is None


def node_attribute(lab, node, name):
    """The whole value the fake crm_attribute keeps (Lab.attribute: first word only)."""
    try:
        with open(os.path.join(lab.env["FAKE_CRM_DIR"], node, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def test_a_standalone_connection_needs_an_administrator_and_is_degraded(lab):
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.run("node1", "drbdadm", "disconnect", "r0").returncode == 0
    p = lab.agent("node1", "monitor")     # it will not reconnect by itself
    assert p.returncode == 191 and "StandAlone" in p.stderr, p.stderr
    assert lab.agent("node1", "monitor", params={"report_degraded": "never"}).returncode == 8
    assert lab.agent("node2", "monitor").returncode == 0     # still trying: Connecting
    assert lab.agent("node2", "stop").returncode == 0
    assert node_attribute(lab, "node2", "drbd-r0-degraded") is None


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
    """Primary node1, link cut, node2 promoted too, both write, link healed: DRBD finds
    diverged data."""
    start_pair(lab, params=params, **init)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    assert lab.agent("node2", "promote").returncode == 0
    lab.write("node1")
    lab.write("node2")
    lab.admin("heal", "r0")


def test_split_brain_detected_from_diverged_generation_uuids(lab):
    make_split_brain(lab)
    p = lab.agent("node1", "monitor")           # node2's UUIDs are not published yet
    assert p.returncode == 191 and "not known yet" in p.stderr and "CRIT" not in p.stderr
    p = lab.agent("node2", "monitor")
    assert p.returncode == 191 and "SPLIT BRAIN" in p.stderr and "CRIT" in p.stderr
    assert "generation UUIDs diverged" in p.stderr
    assert exit_reason(p) == ("r0: SPLIT BRAIN with node1; to resolve, on the node "
                                     "whose changes are to be lost: drbdadm connect "
                                     "--discard-my-data r0")
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
def test_a_lost_peer_publishes_generation_uuids_only_where_they_can_be_compared(lab, mode):
    """DRBD 9 names the peer, so each side publishes its UUIDs for the other to compare;
    8.4 does not, and publishing there would only abort Pacemaker's transition (a CIB
    write) in the middle of a failover."""
    start_pair(lab, mode=mode)
    assert lab.agent("node1", "promote").returncode == 0
    lab.admin("cut", "r0")
    p = lab.agent("node1", "monitor")
    assert p.returncode in (8, 191), p.stderr
    published = lab.attribute("node1", "drbd-r0-gi")
    assert (published is not None) if mode == "9" else (published is None), published


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
    lab.write("node1")
    lab.write("node2")
    lab.admin("heal", "r0")
    assert lab.agent("node2", "demote").returncode == 0
    assert lab.agent("node2", "monitor", params).returncode == 190      # no evidence yet
    p = lab.agent("node1", "monitor", params)                          # diverged: reconnects
    assert p.returncode == 191
    # The exit reason says what is under way, whole (not cut), and sends nobody to do by
    # hand what the agent does.
    reason = exit_reason(p)
    assert reason == ("r0: SPLIT BRAIN with node2; recovering: the Secondary discards its "
                      "changes (split_brain_recovery)"), reason
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


# A stand-in for drbd-utils 8.4's drbdadm in front of the emulator's: the real
# /usr/lib/drbd/drbdadm-84, asked about a resource with stacked-on-top-of, answers
# "'<res>' is a stacked resource, and not available in normal mode." (rc 1) to every
# command without -S (measured here); the emulator itself knows no stacking.
STACKED_DRBDADM = """#!/bin/sh
case " $* " in
    *" -S "*|*" --stacked "*|*" --version "*) ;;
    *" r0 "*|*" r0") echo "'r0' is a stacked resource, and not available in normal mode." >&2
                     exit 1 ;;
esac
exec {emu}/drbdadm "$@"
"""


def test_a_stacked_resource_is_driven_with_drbdadm_S_through_its_whole_life(lab):
    """Issue 12.7: LINBIT's agent finds a stacked resource (sh-dev answers only with -S)
    and passes -S to every drbdadm call; without it start said "not defined" (5)."""
    wrapper = os.path.join(lab.fake_bin, "drbdadm")
    with open(wrapper, "w") as f:
        f.write(STACKED_DRBDADM.format(emu=EMU_BIN))
    os.chmod(wrapper, 0o755)
    start_pair(lab, mode="8.4")
    assert lab.agent("node1", "promote").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.agent("node1", "demote").returncode == 0
    for n in ("node1", "node2"):
        p = lab.agent(n, "stop")
        assert p.returncode == 0 and "drbdsetup down" not in p.stderr, p.stderr
    assert "Unconfigured" in lab.run("node1", "drbdadm", "-S", "cstate", "r0").stdout
    assert lab.agent("node1", "validate-all").returncode == 0


def test_without_notifications_the_clone_is_refused_unless_the_user_says_so(lab):
    """Issue 12.7: ignore_missing_notifications=true accepts a clone without notify=true
    (LINBIT's knob); start then says what is not done."""
    lab.init("r0")
    meta = {"notify": "false"}
    p = lab.agent("node1", "start", meta=meta)
    assert p.returncode == 6 and "ignore_missing_notifications" in p.stderr
    params = {"ignore_missing_notifications": "true"}
    assert lab.agent("node1", "validate-all", params, meta).returncode == 0
    p = lab.agent("node1", "start", params, meta)
    assert p.returncode == 0 and "notify is off" in p.stderr, p.stderr


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
    p = lab.ocf_tester()
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


def test_a_probe_where_drbd_is_not_loaded_forks_nothing(lab):
    """Issue 12.2: no /proc/drbd = the module is not loaded: a probe answers 7 without a
    single program (drbd-utils' tools would each try modprobe; Pacemaker probes every
    node, also those without DRBD)."""
    lab.init("r0")
    log = os.path.join(lab.base, "calls.log")
    wrap = os.path.join(lab.base, "countbin")
    os.makedirs(wrap)
    for tool in ("drbdsetup", "drbdadm", "modprobe", "crm_attribute", "crm_node"):
        with open(os.path.join(wrap, tool), "w") as f:
            f.write('#!/bin/sh\necho %s >> %s\nexit 1\n' % (tool, log))
        os.chmod(os.path.join(wrap, tool), 0o755)
    lab.env["PATH"] = wrap + ":" + lab.env["PATH"]
    gone = {"proc_drbd": os.path.join(lab.base, "no-proc-drbd")}
    p = lab.agent("node1", "monitor", params=gone, meta={"interval": "0"})
    assert p.returncode == 7, p.stderr
    assert not os.path.exists(log), open(log).read()
