"""ocf:pyha:drbd - a DRBD resource as a promotable clone (DRBD 9 and 8.4).

Talks only to the real drbdadm and drbdsetup found on PATH. Each action reads the
resource's state once (DRBD 9: ``drbdsetup events2 --now``; 8.4: ``drbdsetup sh-status``)
into a ``DrbdState`` and decides from that. The promotion score follows the linbit agent's
rules and is written with crm_attribute only when it changes: the last value written is kept
in the agent's state directory, so a steady-state monitor is one drbdsetup call and no CIB
write.

Split brain is reported loudly (ocf-exit-reason, a crit log line, the node attribute
``drbd-<resource>-split-brain``) on evidence, not on a StandAlone connection alone
(drbdsplitbrain.py). Data is discarded only with split_brain_recovery=discard-secondary.
The resource itself (drbdadm, drbdsetup, the device) is drbdresource.py; the pure state
decoders and LINBIT's score rules are drbdstate.py.
"""

import os
import time

from ocf_agents.drbdresource import Drbd, holders_text
from ocf_agents.drbdsplitbrain import (
    clear_split_brain, recover_split_brain, report_split_brain, split_brain_evidence,
    split_brain_handler,
)
from ocf_agents.drbdstate import UNCHANGED, compute_score, decode_kernel_version
from ocf_agents.ocf import (
    ERR_CONFIGURED, ERR_GENERIC, ERR_INSTALLED, FAILED_PROMOTED, NOT_RUNNING, RUNNING_PROMOTED,
    SUCCESS, DEGRADED, DEGRADED_PROMOTED, Action, Agent, OCFError, Parameter, have_binary,
    shown,
)

PROC_DRBD = "/proc/drbd"


# --- parameter checks -----------------------------------------------------------
def parse_resource_name(value):
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
    if not value or value.startswith("-") or not set(value) <= allowed or value == "all":
        raise ValueError(f"{value!r} is not a DRBD resource name")
    return value


def parse_scores(value):
    try:
        scores = [int(v) for v in value.split()]
    except ValueError:
        scores = []
    if len(scores) != 4 or scores != sorted(scores):
        raise ValueError(f"{value!r} must be four non-decreasing integers "
                         "(Consistent, remote UpToDate, local UpToDate with peer unknown, "
                         "local and peers UpToDate)")
    return scores


def parse_version(value):
    value = value.strip()
    if value in ("", "none"):
        return None
    parts = value.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{value!r} is not a version x.y.z")
    return tuple(int(p) for p in parts)


def parse_peer_primary_policy(value):
    value = value.strip().lower()
    if value in ("true", "yes", "1"):
        return "true"
    if value in ("false", "no", "0", ""):
        return "false"
    if value == "unexpected":
        return value
    raise ValueError(f"{value!r} must be true, false or unexpected")


def parse_absolute_path(value):
    """A file path handed to a DRBD tool or read by the agent: absolute, so never an option."""
    if not value.startswith("/") or any(c in value for c in "\n\r\t"):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


UNFENCE_EXTRA_ARGS = "--quiet --flock-required --flock-timeout 0 --unfence-only-if-owner-match"
_UNFENCE_ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=_.:/-")


def parse_unfence_extra_args(value):
    # The handler splits them unquoted (and would expand wildcards): plain words only,
    # the first an option.
    words = value.split()
    if words and not words[0].startswith("--"):
        raise ValueError(f"{shown(words[0])} is not an option (they start with --)")
    for word in words:
        if not set(word) <= _UNFENCE_ALLOWED:
            raise ValueError(f"{shown(word)} is not a plain option or value "
                             "(letters, digits, = _ . : / -)")
    return words


def parse_report_degraded(value):
    value = value.strip().lower()
    aliases = {"true": "disconnected", "yes": "disconnected", "1": "disconnected",
               "false": "never", "no": "never", "0": "never"}
    value = aliases.get(value, value)
    if value not in ("standalone", "disconnected", "never"):
        raise ValueError(f"{shown(value)} must be standalone, disconnected or never")
    return value


def parse_recovery(value):
    if value not in ("none", "discard-secondary"):
        raise ValueError(f"{value!r} must be none or discard-secondary")
    return value


def update_score(res, drbd, st, force=False):
    """Write master-<resource> only when it differs from what we wrote last."""
    promoted_elsewhere = None
    if res.params.remove_master_score_if_peer_primary == "unexpected":
        promoted_elsewhere = lambda: pacemaker_promoted_elsewhere(res)  # noqa: E731
    score = compute_score(st, res.params, promoted_elsewhere)
    # Before the early returns: a Primary's score stays the same while its peer resyncs,
    # and that is exactly when the constraint crm-fence-peer placed must go.
    maybe_unfence(res, drbd, st)
    if score is UNCHANGED:
        return
    wanted = "none" if score is None or score <= 0 else str(score)
    if not force and drbd.memory.get("score") == wanted:
        return
    ok = res.set_promotion_score(None if wanted == "none" else int(wanted))
    if ok or wanted == "none":
        drbd.remember(score=wanted)
    if ok:
        res.log.info(f"promotion score {'deleted' if wanted == 'none' else wanted} "
                     f"({st.describe()})")


def maybe_unfence(res, drbd, st):
    if not res.params.unfence_if_all_uptodate:
        return
    if st.primary and st.all_uptodate and st.peers and \
            all(p.all_uptodate for p in st.peers.values()):
        if drbd.memory.get("unfenced") != "1":
            # drbd-utils' crm-unfence-peer reads its extra options from this variable
            # (LINBIT's agent passes it the same way).
            env = dict(os.environ, OCF_RESKEY_unfence_extra_args=" ".join(
                res.params.unfence_extra_args))
            result = drbd.adm("unfence-peer", timeout=30, quiet=True, env=env)
            res.log.info(f"every disk is UpToDate: ran drbdadm unfence-peer (rc {result.rc})")
            drbd.remember(unfenced=1)
    elif drbd.memory.get("unfenced"):
        drbd.remember(unfenced=None)


def pacemaker_promoted_elsewhere(res):
    """Whether Pacemaker knows of a promoted instance on another node."""
    clone = res.meta("clone_name") or res.instance_without_clone_suffix
    result = res.run(["crm_resource", "--resource", clone, "--locate"], timeout=10, quiet=True)
    me = res.node_name
    for line in result.out.splitlines():
        if ("Master" in line or "Promoted" in line) and me not in line.split():
            return True
    return False


# --- actions --------------------------------------------------------------------
def open_drbd(res, need_module=True):
    drbd = Drbd(res)
    version = drbd.kernel_version()
    if version is None and need_module:
        raise OCFError(NOT_RUNNING, "DRBD kernel module is not loaded")
    return drbd, version


def start(res):
    drbd = Drbd(res)
    version = drbd.kernel_version()
    if version is None:
        res.run(["modprobe", "-s", "drbd"], timeout=30, quiet=True, missing_ok=True)
        version = drbd.kernel_version()
    if version is None:
        raise OCFError(ERR_INSTALLED, "DRBD kernel module is not loaded and cannot be loaded")
    check_module_version(res, version)
    check_resource_defined(res, drbd)
    result = drbd.adm("adjust")
    if result.rc != 0:
        detail = " ".join(result.err.split()) or result.out.strip()
        raise OCFError(ERR_GENERIC, f"drbdadm adjust {drbd.name} failed (rc {result.rc}): "
                                    f"{detail}")
    st = drbd.state(version)
    if not st.configured:
        raise OCFError(ERR_GENERIC, f"{drbd.name} is still unconfigured after drbdadm adjust")
    if st.primary:
        drbd.adm("secondary", quiet=True)
    wait = min(res.params.wfc_timeout, max(0, res.time_left() - 5))
    deadline = time.monotonic() + wait
    while st.disconnected_peers and not st.standalone_peers and time.monotonic() < deadline:
        time.sleep(0.5)
        st = drbd.state(version)
    if st.disconnected_peers:
        res.log.info(f"started without a connected peer ({st.describe()})")
    if st.standalone_peers:
        why, _ = split_brain_evidence(res, drbd, st, version)
        if why:
            report_split_brain(res, drbd, st, why)
    update_score(res, drbd, st, force=True)
    return SUCCESS


def stop(res):
    if not have_binary("drbdsetup") or not have_binary("drbdadm"):
        return SUCCESS
    drbd = Drbd(res)
    version = drbd.kernel_version()
    if version is None:
        res.set_promotion_score(None)
        drbd.forget()
        return SUCCESS
    peer_was_primary = False
    while True:
        st = drbd.state(version)
        if not st.configured:
            break
        peer_was_primary |= any(p.connected and p.role == "Primary" for p in st.peers.values())
        if st.primary:
            result = drbd.adm("secondary", quiet=True)
            if result.rc != 0:
                res.log.warning(f"drbdadm secondary: {result.err.strip()} "
                                f"{holders_text(res, drbd)}")
        else:
            result = drbd.adm("down", quiet=True)
            if result.rc == 0:
                continue
            res.log.warning(f"drbdadm down: {result.err.strip()}")
        if result.rc != 0:
            # drbdadm works from drbd.conf; a resource removed from it (or a broken
            # file) is still up in the kernel, and a stop that fails gets the node
            # fenced. drbdsetup talks to the kernel alone: down demotes, disconnects
            # and detaches, and refuses only what drbdadm would (a device in use).
            fallback = res.run(["drbdsetup", "down", drbd.name], timeout=30, quiet=True)
            if fallback.rc == 0:
                res.log.warning(f"took {drbd.name} down with drbdsetup down (drbdadm "
                                "failed: see above)")
                continue
            result = fallback
        if res.time_left() < 3:
            raise OCFError(ERR_GENERIC, f"cannot stop {drbd.name}: {result.err.strip()} "
                                        f"{holders_text(res, drbd)}")
        time.sleep(1)
    if res.params.stop_outdates_secondary and (peer_was_primary or promoted_elsewhere_notify(res)):
        result = drbd.adm("outdate", quiet=True)
        res.log.info(f"outdated own disk on stop (rc {result.rc})")
    res.set_promotion_score(None)
    clear_split_brain(res, drbd)
    if drbd.memory.get("degraded"):
        res.node_attribute(f"drbd-{drbd.name}-degraded", delete=True)
    drbd.forget()
    return SUCCESS


def promoted_elsewhere_notify(res):
    me = res.meta("on_node") or os.uname().nodename
    # A Primary that this transition stops (fenced after a power loss, put in standby) is
    # no longer Primary: Pacemaker's promoted list is stale then (LINBIT's agent ignores
    # it too). Outdating ourselves for it would leave nobody promotable.
    leaving = set(res.notify_unames("stop"))
    return any(n != me and n not in leaving
               for n in res.notify_unames("promoted") + res.notify_unames("promote"))


def promote(res):
    drbd, version = open_drbd(res)
    st = drbd.state(version)
    if not st.configured:
        raise OCFError(NOT_RUNNING, f"{drbd.name} is not started")
    last = ""
    while not st.primary:
        result = drbd.adm("primary", quiet=True)
        if result.rc == 17:
            update_score(res, drbd, st)
            raise OCFError(ERR_GENERIC, f"refusing to promote {drbd.name}: no access to "
                                        f"UpToDate data ({st.describe()})")
        st = drbd.state(version)
        if st.primary:
            break
        last = result.err.strip().splitlines()[0] if result.err.strip() else f"rc {result.rc}"
        if res.params.fail_promote_early_if_peer_primary and \
                any(p.role == "Primary" for p in st.peers.values()):
            res.set_promotion_score(None)
            drbd.remember(score="none")
            raise OCFError(ERR_GENERIC, f"a DRBD peer of {drbd.name} is already Primary")
        if res.time_left() < 3:
            raise OCFError(ERR_GENERIC, f"promote of {drbd.name} timed out: {last}")
        res.log.info(f"drbdadm primary refused ({last}); retrying")
        time.sleep(1)
    update_score(res, drbd, st)
    return SUCCESS


def demote(res):
    drbd, version = open_drbd(res)
    st = drbd.state(version)
    if not st.configured:
        raise OCFError(NOT_RUNNING, f"{drbd.name} is not started")
    while st.primary:
        result = drbd.adm("secondary", quiet=True)
        st = drbd.state(version)
        if not st.primary:
            break
        holders = holders_text(res, drbd)
        if res.time_left() < 3:
            raise OCFError(ERR_GENERIC, f"cannot demote {drbd.name}: "
                                        f"{result.err.strip().splitlines()[:1]} {holders}")
        res.log.warning(f"drbdadm secondary refused (rc {result.rc}) {holders}; retrying")
        time.sleep(1)
    update_score(res, drbd, st)
    return SUCCESS


def monitor(res):
    if not have_binary("drbdsetup") or not have_binary("drbdadm"):
        if res.is_probe:
            return NOT_RUNNING
        raise OCFError(ERR_INSTALLED, "drbdadm/drbdsetup not found on PATH")
    drbd = Drbd(res)
    version = drbd.kernel_version()
    if version is None:
        return NOT_RUNNING
    st = drbd.state(version)
    if not st.configured:
        if not res.is_probe and drbd.memory.get("score", "none") != "none":
            res.set_promotion_score(None)
            drbd.remember(score="none")
        return NOT_RUNNING
    update_score(res, drbd, st, force=res.is_probe)
    reason = None
    if st.disconnected_peers:
        why, note = split_brain_evidence(res, drbd, st, version)
        if why:
            reason = report_split_brain(res, drbd, st, why)
            if st.standalone_peers:
                recover_split_brain(res, drbd, st)
        elif st.standalone_peers:
            names = ", ".join(p.name for p in st.standalone_peers)
            reason = (f"{drbd.name} degraded: connection to {names} is StandAlone ({note}) "
                      f"({st.describe()})")
    else:
        clear_split_brain(res, drbd)
    if st.primary and st.disk_failed:
        raise OCFError(FAILED_PROMOTED, f"{drbd.name} is Primary without its local disk "
                                        f"({st.describe()})")
    publish_disconnection(res, drbd, st)
    # Pacemaker 2.1 keeps a 190/191 as a failed action until someone runs a cleanup, and
    # a cleanup of the Promoted instance restarts what depends on it (measured in the lab:
    # the filesystem was stopped and started again). So by default only a StandAlone
    # connection (a split brain, or an administrator's disconnect) is reported that way:
    # it needs an administrator anyway. A peer that is merely away (down, fenced,
    # rejoining: Connecting) heals by itself and shows as the node attribute
    # drbd-<resource>-degraded instead, gone when it is back.
    policy = res.params.report_degraded
    degraded = policy != "never" and (
        bool(st.standalone_peers) or reason is not None if policy == "standalone"
        else bool(st.disconnected_peers))
    if degraded:
        res.exit_reason(reason or f"{drbd.name} degraded: peer not connected ({st.describe()})",
                        level="warning")
    if st.primary:
        return DEGRADED_PROMOTED if degraded else RUNNING_PROMOTED
    return DEGRADED if degraded else SUCCESS


def publish_disconnection(res, drbd, st):
    """drbd-<resource>-degraded = the peers that are not connected (crm_mon -A, pcs status
    --full), written when that changes, deleted when every peer is connected again."""
    value = ", ".join(f"{p.name} {p.connection}" for p in st.disconnected_peers)
    if drbd.memory.get("degraded", "") == value:
        return
    name = f"drbd-{drbd.name}-degraded"
    ok = res.node_attribute(name, value=value) if value else res.node_attribute(name, delete=True)
    if not ok:
        return      # tried again at the next monitor
    drbd.remember(degraded=value or None)
    if value:
        res.log.warning(f"{drbd.name} degraded: not connected to {value} ({st.describe()})")
    else:
        res.log.notice(f"{drbd.name}: every peer is connected again")


def notify(res):
    kind, op = res.notify_type, res.notify_operation
    drbd = Drbd(res)
    version = drbd.kernel_version()
    if version is None:
        return SUCCESS
    if op == "start" and kind in ("pre", "post"):
        st = drbd.state(version)
        if st.configured:
            drbd.adm("-v", "adjust", quiet=True)
        return SUCCESS
    if kind != "post" or op not in ("promote", "demote", "stop"):
        return SUCCESS
    st = drbd.state(version)
    if not st.configured:
        return SUCCESS
    update_score(res, drbd, st)
    if any(p.any_unknown for p in st.peers.values()) and promoted_elsewhere_notify(res):
        if st.primary:
            res.log.crit(f"{drbd.name}: Pacemaker promoted another node while this one is "
                         "Primary and disconnected: resource internal SPLIT BRAIN")
        elif res.params.stop_outdates_secondary:
            result = drbd.adm("outdate", quiet=True)
            if result.rc == 0:
                res.set_promotion_score(None)
                drbd.remember(score="none")
    return SUCCESS


def reload(res):
    """Apply a changed drbd.conf (drbdadm adjust) and refresh the score."""
    drbd, version = open_drbd(res)
    st = drbd.state(version)
    if not st.configured:
        raise OCFError(NOT_RUNNING, f"{drbd.name} is not started")
    result = drbd.adm("adjust")
    if result.rc != 0:
        raise OCFError(ERR_GENERIC, f"drbdadm adjust {drbd.name} failed (rc {result.rc}): "
                                    f"{' '.join(result.err.split())}")
    update_score(res, drbd, drbd.state(version))
    return SUCCESS


def validate_all(res):
    drbd = Drbd(res)
    version = drbd.kernel_version()
    if version is None:
        # Not loaded is not a fault (start loads it): check the module that start
        # would load instead.
        result = res.run(["modinfo", "-F", "version", "drbd"], timeout=10, quiet=True,
                         missing_ok=True)
        version = decode_kernel_version(f"DRBD_KERNEL_VERSION={result.out.strip()}") \
            if result.rc == 0 else None
        if version is None:
            raise OCFError(ERR_INSTALLED, "the DRBD kernel module is neither loaded nor "
                                          f"installed for kernel {os.uname().release}")
    check_module_version(res, version)
    check_resource_defined(res, drbd)
    return SUCCESS


# --- checks ---------------------------------------------------------------------
def _meta_int(res, *names):
    for name in names:
        value = res.meta(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise OCFError(ERR_CONFIGURED, f"meta attribute {name}={value!r} is not a "
                                               "number") from None
    return None


def check_environment(res):
    """Runs before every action but stop: cheap (no forks) except in start/validate-all."""
    if not have_binary("drbdadm") or not have_binary("drbdsetup"):
        if res.action == "monitor" or res.action == "notify":
            return      # the handlers report "not running" / nothing to do
        raise OCFError(ERR_INSTALLED, "drbdadm/drbdsetup not found on PATH (install drbd-utils)")
    if not (res.is_clone or res.is_promotable):
        return      # e.g. crm_resource --force-* or ocf-tester on a bare primitive
    clone_node_max = _meta_int(res, "clone_node_max")
    if clone_node_max not in (None, 1):
        raise OCFError(ERR_CONFIGURED, "clone-node-max must be 1 for DRBD")
    promoted_node_max = _meta_int(res, "promoted_node_max", "master_node_max")
    if promoted_node_max not in (None, 1):
        raise OCFError(ERR_CONFIGURED, "promoted-node-max must be 1 for DRBD")
    promoted_max = _meta_int(res, "promoted_max", "master_max")
    if promoted_max is not None and promoted_max > 2:
        raise OCFError(ERR_CONFIGURED, "promoted-max must be 1 or 2 for DRBD")
    if res.action in ("monitor",):
        return
    notify_on = (res.meta("notify") or "").lower() in ("true", "yes", "1", "on")
    if not notify_on and not res.params.ignore_missing_notifications:
        raise OCFError(ERR_CONFIGURED, "the clone must have notify=true for DRBD (the agent "
                                       "acts on its peers' promotions and stops); set "
                                       "ignore_missing_notifications=true if this setup "
                                       "does without them")
    if not notify_on and res.action == "start":
        res.log.warning("notify is off (ignore_missing_notifications=true): no drbdadm adjust "
                        "when a peer starts, and stop_outdates_secondary acts only at stop")
    if promoted_max == 2 and res.action in ("start", "validate-all"):
        result = res.run(["drbdadm", "-c", res.params.drbdconf, "dump",
                          res.params.drbd_resource], timeout=15, quiet=True)
        allowed = any(line.split()[:1] == ["allow-two-primaries"] and "no;" not in line
                      for line in result.out.splitlines())
        if not allowed:
            raise OCFError(ERR_CONFIGURED, "promoted-max=2 needs allow-two-primaries yes in the "
                                           f"net section of {res.params.drbd_resource}")


def check_module_version(res, version):
    ge, lt = res.params.require_drbd_module_version_ge, res.params.require_drbd_module_version_lt
    shown = ".".join(map(str, version))
    if ge and version < ge:
        raise OCFError(ERR_INSTALLED, f"DRBD module {shown} is older than the required "
                                      f"{'.'.join(map(str, ge))}")
    if lt and version >= lt:
        raise OCFError(ERR_INSTALLED, f"DRBD module {shown} is not older than "
                                      f"{'.'.join(map(str, lt))}")


def check_resource_defined(res, drbd):
    # Both are facts of this node (another node may have the file and the resource):
    # 5 keeps the resource off this node only, where 6 would ban it from every node
    # (LINBIT's agent and ocft answer 5 too).
    if not os.path.exists(res.params.drbdconf):
        raise OCFError(ERR_INSTALLED, f"{res.params.drbdconf} does not exist on this node: "
                                      "install the DRBD configuration here, or keep the "
                                      "clone off this node")
    argv = ["drbdadm", "-c", res.params.drbdconf, "sh-dev", res.params.drbd_resource]
    result = res.run(argv, timeout=15, quiet=True)
    if result.rc != 0:
        # A stacked resource (8.4's stacked-on-top-of) is known to drbdadm only with -S;
        # every later drbdadm call then carries it (remembered until stop).
        stacked = res.run(argv[:3] + ["-S"] + argv[3:], timeout=15, quiet=True)
        if stacked.rc == 0:
            if not drbd.stacked:
                res.log.info(f"{drbd.name} is a stacked resource: drbdadm runs with -S")
            drbd.remember(stacked=1)
            return
    else:
        drbd.remember(stacked=None)
    if result.rc != 0:
        raise OCFError(ERR_INSTALLED, f"DRBD resource {res.params.drbd_resource} is not "
                                      f"defined for this host in {res.params.drbdconf}: "
                                      f"{result.err.strip()}")


AGENT = Agent(
    name="drbd",
    shortdesc="DRBD replicated block device as a promotable clone",
    longdesc="""
Manages one DRBD resource (DRBD 9 or 8.4, detected from the kernel module) as a
promotable clone: start brings the resource up (drbdadm adjust) and waits up to
wfc_timeout for the peer; promote makes it Primary (never with --force); demote and
stop make it Secondary, stop also takes it down.

The promotion score (node attribute master-<resource>) follows the DRBD disk states:
UpToDate data is promotable, Consistent, Outdated or Inconsistent data is not (unless
the peer's UpToDate data is reachable). It is written only when it changes.

Monitor returns 8 when Primary, 0 when Secondary, 9 when Primary without its local
disk (Failed or Diskless; Detaching is still 8), and 191/190 (degraded) for a
StandAlone connection or a split brain (report_degraded). A peer that is not connected
is shown by the node attribute drbd-<resource>-degraded (crm_mon -A, pcs status --full),
written when that changes and deleted when every peer is connected again: pcs status is
clean once the cluster is healthy, with no cleanup needed.

A stacked DRBD 8.4 resource (stacked-on-top-of) is recognised at start and driven with
drbdadm -S.

Split brain is reported (exit reason, a crit log line once, the node attribute
drbd-<resource>-split-brain=1) on any of three signals: DRBD ran its split-brain
handler, or the generation UUIDs of the two sides diverged (drbdsetup get-gi, compared
through the node attribute drbd-<resource>-gi while a peer is not connected; DRBD 9).
A StandAlone connection without these (drbdadm disconnect) is only degraded. Install
the handler in drbd.conf so the split brain is recorded the moment DRBD detects it:
  handlers { split-brain "/usr/lib/ocf/resource.d/pyha/drbd split-brain-handler"; }
(or "python3 -m ocf_agents.drbd split-brain-handler"). The marks are cleared when the
peer is connected again.

Configure as: promotable clone, clone-node-max=1, promoted-node-max=1, promoted-max=1
(2 only with allow-two-primaries), notify=true.
""",
    parameters=[
        Parameter("drbd_resource", required=True, unique=True, check=parse_resource_name,
                  shortdesc="DRBD resource name",
                  longdesc="The name of the DRBD resource from the DRBD configuration."),
        Parameter("drbdconf", default="/etc/drbd.conf", check=parse_absolute_path,
                  shortdesc="DRBD configuration file",
                  longdesc="Full path of the drbd.conf file passed to drbdadm -c."),
        Parameter("adjust_master_score", default="0 10 1000 10000", check=parse_scores,
                  shortdesc="Promotion scores by data state",
                  longdesc="Four non-decreasing integers: the score for Consistent data with "
                           "the peer unknown (0 = not promotable), for local data that is not "
                           "UpToDate while a connected peer has UpToDate data, for UpToDate data "
                           "with the peer's disk unknown, and for UpToDate data with every peer "
                           "known (or when Primary)."),
        Parameter("stop_outdates_secondary", type="boolean", default=False,
                  shortdesc="Outdate this node's data when it stops while the peer is Primary",
                  longdesc="When stopping (or told after a promote/demote/stop that another "
                           "node is Primary while the peer's disk is unknown), mark the local "
                           "data Outdated with drbdadm outdate so it can never be promoted with "
                           "stale data. Use only with working fencing."),
        Parameter("ignore_missing_notifications", type="boolean", default=False,
                  shortdesc="Run without notify=true on the clone",
                  longdesc="By default every action but monitor and stop refuses (6) a clone "
                           "without notify=true: the agent re-adjusts when a peer starts and "
                           "outdates itself after a peer's promotion (stop_outdates_secondary) "
                           "through notifications. true: accept the clone without them (e.g. "
                           "DRBD 9 with quorum, where nothing depends on them); start logs "
                           "what is then not done."),
        Parameter("wfc_timeout", type="time", default=5,
                  shortdesc="Seconds start waits for the peer",
                  longdesc="How long start waits for the connection to the peer (0: do not "
                           "wait). Start succeeds anyway after the wait; the promotion score "
                           "then reflects the unknown peer."),
        Parameter("require_drbd_module_version_ge", default="8.0.0", check=parse_version,
                  shortdesc="Minimum DRBD kernel module version",
                  longdesc="x.y.z; start and validate-all fail (5) with an older module. "
                           "none skips the check."),
        Parameter("require_drbd_module_version_lt", default="10.0.0", check=parse_version,
                  shortdesc="DRBD kernel module version must be below",
                  longdesc="x.y.z; start and validate-all fail (5) with this version or newer. "
                           "none skips the check."),
        Parameter("remove_master_score_if_peer_primary", default="false",
                  check=parse_peer_primary_policy,
                  shortdesc="Drop this node's score while a DRBD peer is Primary",
                  longdesc="true: no promotion score while a connected peer is Primary with "
                           "UpToDate data. unexpected: only when Pacemaker does not know of a "
                           "promoted instance elsewhere (a Primary made outside the cluster). "
                           "false: keep the score."),
        Parameter("fail_promote_early_if_peer_primary", type="boolean", default=False,
                  shortdesc="Fail promote at once when a peer is Primary",
                  longdesc="When drbdadm primary is refused because a DRBD peer is Primary, "
                           "fail the promote right away (and drop the score) instead of "
                           "retrying until the timeout."),
        Parameter("unfence_extra_args", default=UNFENCE_EXTRA_ARGS,
                  check=parse_unfence_extra_args,
                  shortdesc="Options for the unfence handler",
                  longdesc="Options drbd-utils' crm-unfence-peer handler receives (through "
                           "OCF_RESKEY_unfence_extra_args) when unfence_if_all_uptodate "
                           "runs it: long options and their values only."),
        Parameter("unfence_if_all_uptodate", type="boolean", default=False,
                  shortdesc="Run drbdadm unfence-peer when every disk is UpToDate",
                  longdesc="When this node is Primary and every local and peer disk is "
                           "UpToDate, run drbdadm unfence-peer once (removes a constraint left "
                           "by crm-fence-peer if the unfence handler did not run)."),
        Parameter("report_degraded", default="standalone", check=parse_report_degraded,
                  shortdesc="When monitor returns 190/191 (degraded)",
                  longdesc="standalone: OCF_DEGRADED (190) / OCF_DEGRADED_PROMOTED (191) only "
                           "for a StandAlone connection or a split brain, which need an "
                           "administrator; a peer that is only away (Connecting) shows as the "
                           "node attribute drbd-<resource>-degraded, deleted when it is back. "
                           "Pacemaker keeps every 190/191 as a failed action until a cleanup, "
                           "and a cleanup of the Promoted instance restarts what depends on "
                           "it. disconnected (or true): 190/191 whenever a peer is not "
                           "connected. never (or false; Pacemaker before 2.1): always 0/8."),
        Parameter("split_brain_recovery", default="none", check=parse_recovery,
                  shortdesc="Automatic split-brain recovery (discards data!)",
                  longdesc="none: only report a split brain. discard-secondary: on a split "
                           "brain the Secondary reconnects with --discard-my-data (its changes "
                           "since the split are lost) and the Primary reconnects."),
        Parameter("proc_drbd", default=PROC_DRBD, check=parse_absolute_path,
                  shortdesc="Path of /proc/drbd",
                  longdesc="Where to read the kernel module version (for containers and tests; "
                           "when missing, drbdadm --version is asked)."),
    ],
    actions=[
        Action("start", timeout=240, handler=start),
        Action("stop", timeout=100, handler=stop),
        Action("promote", timeout=90, handler=promote),
        Action("demote", timeout=90, handler=demote),
        Action("notify", timeout=90, handler=notify),
        Action("reload", timeout=30, handler=reload),
        Action("monitor", timeout=20, interval=20, role="Unpromoted", handler=monitor),
        Action("monitor", timeout=20, interval=10, role="Promoted", handler=monitor),
        Action("validate-all", timeout=30, handler=validate_all),
        Action("meta-data", timeout=5),
    ],
    validate=check_environment,
    commands={"split-brain-handler": split_brain_handler},
)


if __name__ == "__main__":
    AGENT.main()
