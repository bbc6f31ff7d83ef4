"""ocf:pyha:drbd - a DRBD resource as a promotable clone (DRBD 9 and 8.4).

Talks only to the real drbdadm and drbdsetup found on PATH. Each action reads the
resource's state once (DRBD 9: ``drbdsetup events2 --now``; 8.4: ``drbdsetup sh-status``)
into a ``DrbdState`` and decides from that. The promotion score follows the linbit agent's
rules and is written with crm_attribute only when it changes: the last value written is kept
in the agent's state directory, so a steady-state monitor is one drbdsetup call and no CIB
write.

Split brain is reported loudly (ocf-exit-reason, a crit log line, the node attribute
``drbd-<resource>-split-brain``) on evidence, not on a StandAlone connection alone: DRBD's
split-brain handler ran (``drbd split-brain-handler``, below, leaves a flag file), or the
generation UUIDs diverged (``drbdsetup get-gi``, exchanged through a node attribute; only
while a peer is not connected). Data is discarded only with
split_brain_recovery=discard-secondary.
"""

import os
import sys
import time

from ocf_agents.ocf import (
    ERR_ARGS, ERR_CONFIGURED, ERR_GENERIC, ERR_INSTALLED, FAILED_PROMOTED, NOT_RUNNING, RUNNING_PROMOTED,
    SUCCESS, DEGRADED, DEGRADED_PROMOTED, Action, Agent, OCFError, Parameter, have_binary,
    read_file, read_head, shown, write_file_atomically,
)

UNCHANGED = object()      # promotion score: leave as it is (transitional disk state)
CONNECTED_84 = ("Connected", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT",
                "WFSyncUUID", "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT",
                "VerifyS", "VerifyT", "Ahead", "Behind")


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


def parse_recovery(value):
    if value not in ("none", "discard-secondary"):
        raise ValueError(f"{value!r} must be none or discard-secondary")
    return value


# --- state --------------------------------------------------------------------
PROC_DRBD = "/proc/drbd"


class Peer:
    def __init__(self, name):
        self.name = name
        self.connection = "StandAlone"   # Connected, Connecting, StandAlone, ...
        self.role = "Unknown"
        self.disks = []                  # peer-disk per volume
        self.replication = []            # replication state per volume
        self.done = None                 # resync progress in percent, when syncing
        self.client_volumes = []         # peer-client per volume

    @property
    def client(self):
        """A diskless client peer: peer-client on every volume, not just the last one."""
        return bool(self.client_volumes) and all(self.client_volumes)

    @property
    def connected(self):
        return self.connection == "Connected"

    @property
    def all_uptodate(self):
        return bool(self.disks) and all(d == "UpToDate" for d in self.disks)

    @property
    def any_unknown(self):
        return not self.disks or any(d == "DUnknown" for d in self.disks)


class DrbdState:
    """One resource as seen from this node."""

    def __init__(self):
        self.role = "Unconfigured"
        self.disks = []          # local disk state per volume
        self.client = False      # diskless client on every volume (intentionally)
        self.quorum = True
        self.volumes = []        # volume number per device (DRBD 9)
        self.minors = []         # minor per device
        self.peers = {}          # peer id -> Peer

    @property
    def configured(self):
        return self.role != "Unconfigured"

    @property
    def primary(self):
        return self.role == "Primary"

    @property
    def all_uptodate(self):
        return bool(self.disks) and all(d == "UpToDate" for d in self.disks)

    @property
    def disk_failed(self):
        """Lost the local disk (not a diskless client by configuration)."""
        return not self.client and any(d in ("Diskless", "Failed", "Detaching")
                                       for d in self.disks)

    @property
    def standalone_peers(self):
        return [p for p in self.peers.values() if p.connection == "StandAlone"]

    @property
    def disconnected_peers(self):
        return [p for p in self.peers.values() if not p.connected]

    def describe(self):
        peers = ", ".join(f"{p.name} {p.connection} {p.role} {'/'.join(p.disks) or '-'}"
                          for p in self.peers.values())
        return f"{self.role} {'/'.join(self.disks) or '-'}" + (f"; peer {peers}" if peers else "")


def _fields(tokens):
    out = {}
    for token in tokens:
        key, sep, value = token.partition(":")
        if sep:
            out[key] = value
    return out


def parse_events2(text, resource):
    """State from ``drbdsetup events2 --now <resource>`` (DRBD 9)."""
    st = DrbdState()
    volumes = 0
    clients = 0
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "exists":
            continue
        if words[1] == "-":
            break
        kind, f = words[1], _fields(words[2:])
        if f.get("name") != resource:
            continue
        if kind == "resource":
            st.role = f.get("role", "Unknown")
        elif kind == "connection":
            peer = st.peers.setdefault(f.get("peer-node-id"), Peer(f.get("conn-name", "peer")))
            peer.connection = f.get("connection", "StandAlone")
            peer.role = f.get("role", "Unknown")
        elif kind == "device":
            volumes += 1
            st.volumes.append(f.get("volume", "0"))
            st.minors.append(f.get("minor", ""))
            disk = f.get("disk", "Diskless")
            st.disks.append(disk)
            if disk == "Diskless" and f.get("client") == "yes":
                clients += 1
            if f.get("quorum") == "no":
                st.quorum = False
        elif kind == "peer-device":
            peer = st.peers.setdefault(f.get("peer-node-id"), Peer(f.get("conn-name", "peer")))
            peer.disks.append(f.get("peer-disk", "DUnknown"))
            peer.replication.append(f.get("replication", "Off"))
            peer.client_volumes.append(f.get("peer-client") == "yes")
            if "done" in f:
                try:
                    peer.done = float(f["done"])
                except ValueError:
                    pass
    st.client = volumes > 0 and clients == volumes
    return st


def parse_status_json(text, resource):
    """State from ``drbdsetup status <resource> --json`` (DRBD 9, alternative source)."""
    import json
    st = DrbdState()
    for res in json.loads(text or "[]"):
        if res.get("name") != resource:
            continue
        st.role = res.get("role", "Unknown")
        devices = res.get("devices", [])
        for dev in devices:
            st.disks.append(dev.get("disk-state", "Diskless"))
            if dev.get("quorum") is False:
                st.quorum = False
        st.client = bool(devices) and all(d.get("client") for d in devices)
        for conn in res.get("connections", []):
            peer = st.peers.setdefault(str(conn.get("peer-node-id")), Peer(conn.get("name")))
            peer.connection = conn.get("connection-state", "StandAlone")
            peer.role = conn.get("peer-role", "Unknown")
            for pd in conn.get("peer_devices", []):
                peer.disks.append(pd.get("peer-disk-state", "DUnknown"))
                peer.replication.append(pd.get("replication-state", "Off"))
                peer.client_volumes.append(bool(pd.get("peer-client")))
                if pd.get("has-sync-details"):
                    peer.done = pd.get("percent-resync-done")
    return st


def _apply_84(st, role, peer_role, disk, pdisk, cstate):
    """One 8.4 volume (role/peer, disk/pdisk, cstate) into a DrbdState."""
    if not role or role == "Unconfigured" or cstate == "Unconfigured":
        return
    st.role = role
    st.disks.append(disk or "Diskless")
    peer = st.peers.setdefault("peer", Peer("peer"))
    if cstate in CONNECTED_84:
        peer.connection = "Connected"
        peer.replication.append("Established" if cstate == "Connected" else cstate)
    elif cstate == "StandAlone":
        peer.connection = "StandAlone"
        peer.replication.append("Off")
    else:   # WFConnection, Unconnected, WFReportParams, Disconnecting, ...
        peer.connection = "Connecting"
        peer.replication.append("Off")
    peer.role = peer_role or "Unknown"
    peer.disks.append(pdisk or "DUnknown")


def parse_sh_status(text):
    """State from ``drbdsetup sh-status <resource>`` (DRBD 8.4): one block per volume."""
    st = DrbdState()
    block = {}
    for line in text.splitlines() + ["_minor=end"]:
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        if key == "_minor" and block:
            _apply_84(st, block.get("_role"), block.get("_peer"), block.get("_disk"),
                      block.get("_pdsk"), block.get("_cstate"))
            if len(st.minors) < len(st.disks):
                st.minors.append(block.get("_minor", ""))
            done = block.get("_resynced_percent")
            if done and st.peers:
                try:
                    st.peers["peer"].done = float(done)
                except ValueError:
                    pass
            block = {}
        block[key] = value
    return st


def parse_drbdadm_84(role, cstate, dstate):
    """State from ``drbdadm role``/``cstate``/``dstate`` output (DRBD 8.4)."""
    st = DrbdState()
    roles, disks = role.split(), dstate.split()
    for i, cs in enumerate(cstate.split()):
        r = (roles[i] if i < len(roles) else "Unconfigured").split("/")
        d = (disks[i] if i < len(disks) else "").split("/")
        _apply_84(st, r[0], r[1] if len(r) > 1 else None, d[0], d[1] if len(d) > 1 else None,
                  cs)
    return st


def parse_proc_drbd(text):
    """(kernel version tuple, {minor: (cstate, role, peer_role, disk, pdisk, done)})."""
    version, minors = None, {}
    last = None
    for line in text.splitlines():
        if line.startswith("version:"):
            try:
                version = tuple(int(x) for x in line.split()[1].split("-")[0].split(".")[:3])
            except ValueError:
                version = None
            continue
        words = line.split()
        if words and words[0].endswith(":") and words[0][:-1].isdigit():
            f = _fields(words[1:])
            ro = f.get("ro", "/").split("/")
            ds = f.get("ds", "/").split("/")
            last = int(words[0][:-1])
            minors[last] = [f.get("cs", "Unconfigured"), ro[0], ro[-1], ds[0], ds[-1], None]
        elif "sync'ed:" in line and last is not None:
            try:
                minors[last][5] = float(line.split("sync'ed:")[1].split("%")[0])
            except ValueError:
                pass
    return version, {m: tuple(v) for m, v in minors.items()}


# --- talking to DRBD ----------------------------------------------------------
class Drbd:
    """drbdadm/drbdsetup for one resource, plus the agent's small persistent memory."""

    def __init__(self, res):
        self.res = res
        self.name = res.params.drbd_resource
        self.memory_path = res.state_path(f"{res.instance_without_clone_suffix}.state")
        self.memory = self._load_memory()

    # memory: key=value lines in the state directory (cleared at reboot)
    def _load_memory(self):
        memory = {}
        for line in (read_file(self.memory_path, "") or "").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                memory[key] = value
        return memory

    def remember(self, **values):
        changed = False
        for key, value in values.items():
            if value is None:
                changed |= self.memory.pop(key, None) is not None
            elif self.memory.get(key) != str(value):
                self.memory[key] = str(value)
                changed = True
        if changed:
            write_file_atomically(self.memory_path,
                                  "".join(f"{k}={v}\n" for k, v in sorted(self.memory.items())))

    def forget(self):
        self.memory = {}
        try:
            os.unlink(self.memory_path)
        except FileNotFoundError:
            pass

    # commands
    def adm(self, *args, timeout=None, quiet=False):
        return self.res.run(["drbdadm", "-c", self.res.params.drbdconf, *args, self.name],
                            timeout=timeout, quiet=quiet)

    def kernel_version(self, use_cache=True):
        """DRBD module version (tuple) or None when the module is not loaded."""
        text = read_head(self.res.params.proc_drbd)
        if text:
            version = parse_proc_drbd(text)[0]
            if version:
                return version
        cached = self.memory.get("kernel", "").split(".")
        if use_cache and all(x.isdigit() for x in cached):  # a corrupted memory is ignored
            return tuple(int(x) for x in cached)
        result = self.res.run(["drbdadm", "--version"], timeout=10, quiet=True)
        return decode_kernel_version(result.out)

    def state(self, version):
        """Read the resource's state: exactly one drbdsetup call in the normal case."""
        if version[0] >= 9:
            result = self.res.run(["drbdsetup", "events2", "--now", self.name], timeout=15,
                                  quiet=True)
            if result.rc != 0:
                raise OCFError(ERR_GENERIC, f"drbdsetup events2 failed (rc {result.rc}): "
                                            f"{result.err.strip()}")
            return parse_events2(result.out, self.name)
        result = self.res.run(["drbdsetup", "sh-status", self.name], timeout=15, quiet=True)
        if result.rc == 0 and "_known=" in result.out:
            return parse_sh_status(result.out)
        outs = [self.adm(word, timeout=15, quiet=True).out for word in ("role", "cstate",
                                                                        "dstate")]
        return parse_drbdadm_84(*outs)


    def generation_ids(self, version, st, peer_id):
        """This node's data generation UUIDs towards one peer (first volume), or None.

        DRBD 9: ``drbdsetup get-gi <res> <peer-node-id> <volume>``; 8.4:
        ``drbdsetup get-gi <minor>``. Only called while a peer is not connected.
        """
        if version[0] >= 9:
            volume = st.volumes[0] if st.volumes else "0"
            argv = ["drbdsetup", "get-gi", self.name, str(peer_id), volume]
        elif st.minors and st.minors[0].isdigit():
            argv = ["drbdsetup", "get-gi", st.minors[0]]
        else:
            return None
        result = self.res.run(argv, timeout=15, quiet=True)
        return parse_gi(result.out) if result.rc == 0 else None


ZERO_UUID = "0" * 16


def decode_kernel_version(text):
    """The module's version from ``drbdadm --version`` output, None when not loaded:
    drbd-utils print DRBD_KERNEL_VERSION=0 then (it is not version 0, and not 8.4)."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "DRBD_KERNEL_VERSION" and value.strip():
            try:
                version = tuple(int(x) for x in value.strip().split("-")[0].split(".")[:3])
            except ValueError:
                return None
            return version if version and version[0] > 0 else None
    return None


def parse_gi(text):
    """(current, bitmap, history...) from ``get-gi``/``show-gi`` output, or None.

    The line looks like CURRENT:BITMAP:HISTORY1:HISTORY2:flags... (16 hex digits each);
    show-gi wraps the same line in an explanatory drawing.
    """
    for line in text.splitlines():
        fields = line.strip().split(":")
        uuids = fields[:4]
        if len(fields) >= 5 and all(len(u) == 16 and _is_hex(u) for u in uuids):
            return tuple(u.upper() for u in uuids)
    return None


def _is_hex(text):
    return all(c in "0123456789abcdefABCDEF" for c in text)


def uuids_diverged(mine, theirs):
    """Split brain by generation UUIDs: both sides have a current UUID the other has never
    seen (neither is the other's bitmap or history UUID). DRBD keeps a flag in the lowest
    bit of a UUID; it is not part of the identity."""
    def ids(gi):
        return [int(u, 16) & ~1 for u in gi]
    a, b = ids(mine), ids(theirs)
    if a[0] == b[0] or not a[0] or not b[0]:
        return False
    return a[0] not in b[1:] and b[0] not in a[1:]


# --- promotion score ------------------------------------------------------------
def compute_score(st, params, promoted_elsewhere=None):
    """The linbit agent's promotion score rules; None = delete, UNCHANGED = leave."""
    consistent, remote, local_peer_unknown, good = params.adjust_master_score
    if not st.quorum:
        return None
    policy = params.remove_master_score_if_peer_primary
    if policy != "false" and not st.primary:
        for peer in st.peers.values():
            if peer.role == "Primary" and peer.all_uptodate:
                if policy == "true" or (promoted_elsewhere is not None
                                        and not promoted_elsewhere()):
                    return None
    peers = list(st.peers.values())
    if st.client:
        # A diskless client serves data only through a peer's disk. LINBIT derives its
        # scores from the configured ones, one below a diskful node in the same
        # situation, so a node with the data always wins: good - 1 when every diskful
        # peer is UpToDate (diskless peers have nothing to be up to date with), or when
        # it is Primary on an UpToDate peer already ...
        diskful = [p for p in peers if not p.client]
        if (st.primary and any(p.all_uptodate for p in peers)) or \
                (diskful and all(p.all_uptodate for p in diskful)):
            return good - 1
        # ... local_peer_unknown - 1 while at least one peer still has UpToDate data;
        # no score without one (promoting would give an application no data).
        return local_peer_unknown - 1 if any(p.all_uptodate for p in peers) else None
    if st.all_uptodate:
        if st.primary:
            return good
        if any(p.any_unknown and not p.client for p in peers):
            return local_peer_unknown
        return good
    if any(p.all_uptodate for p in peers):
        return remote
    if any(d in ("Attaching", "Negotiating") for d in st.disks):
        return UNCHANGED
    if st.disks and all(d in ("Consistent", "UpToDate") for d in st.disks):
        return consistent if consistent > 0 else None
    return None


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
            result = res.run(["drbdadm", "-c", res.params.drbdconf, "unfence-peer",
                              drbd.name], timeout=30, quiet=True, env=env)
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


def split_brain_flag(res, name):
    """Written by the split-brain handler (run by DRBD) in the agent's state directory."""
    return res.state_path(f"{name}.split-brain")


def split_brain_evidence(res, drbd, st, version):
    """(why it is a split brain or None, what the disconnect is otherwise).

    Three signals: DRBD's split-brain handler ran (flag file), this agent already decided
    so, or the generation UUIDs of the two sides diverged. Each side publishes its UUIDs in
    the node attribute drbd-<resource>-gi while a peer is not connected (once per change),
    so the other side can compare. A StandAlone peer without any of these is an
    administrative disconnect (drbdadm disconnect), not a split brain.
    """
    if drbd.memory.get("split_brain") == "1":
        return drbd.memory.get("split_brain_why", "split brain"), None
    if os.path.exists(split_brain_flag(res, drbd.name)):
        return "DRBD's split-brain handler reported it", None
    peers = st.disconnected_peers
    peer_id = next(i for i, p in st.peers.items() if p is peers[0])
    mine = drbd.generation_ids(version, st, peer_id)
    if mine is None:
        return None, "own generation UUIDs unavailable"
    attribute = f"drbd-{drbd.name}-gi"
    published = ":".join(mine)
    if drbd.memory.get("gi") != published:
        if res.node_attribute(attribute, value=published):
            drbd.remember(gi=published)
    if version[0] < 9:
        return None, "DRBD 8.4 does not name the peer's node; no split brain reported by DRBD"
    note = "peer's generation UUIDs not known yet; no split brain reported by DRBD"
    for peer in st.standalone_peers:
        if peer.name == res.node_name:
            continue
        theirs = parse_gi((res.node_attribute(attribute, node=peer.name) or "") + ":")
        if theirs is None:
            continue
        if uuids_diverged(mine, theirs):
            return (f"generation UUIDs diverged: this node {mine[0]}, {peer.name} "
                    f"{theirs[0]}, neither has seen the other's data"), None
        note = "disconnected by an administrator; generation UUIDs not diverged"
    return None, note


def report_split_brain(res, drbd, st, why):
    names = ", ".join(p.name for p in st.disconnected_peers) or "the peer"
    message = (f"DRBD resource {drbd.name}: SPLIT BRAIN with {names} ({why}); resolve "
               "manually: drbdadm secondary + drbdadm connect --discard-my-data on the victim, "
               "drbdadm connect on the survivor")
    if drbd.memory.get("split_brain") != "1":
        res.log.crit(message)
        res.node_attribute(f"drbd-{drbd.name}-split-brain", value=1)
        drbd.remember(split_brain=1, split_brain_why=why)
    return message


def clear_split_brain(res, drbd):
    """All peers connected again: drop the split-brain marks and the published UUIDs."""
    flag = split_brain_flag(res, drbd.name)
    flagged = os.path.exists(flag)
    if drbd.memory.get("split_brain") or flagged:
        res.node_attribute(f"drbd-{drbd.name}-split-brain", delete=True)
        if flagged:
            os.unlink(flag)
        drbd.remember(split_brain=None, split_brain_why=None)
        res.log.notice(f"DRBD resource {drbd.name}: connected again, split brain cleared")
    if drbd.memory.get("gi"):
        res.node_attribute(f"drbd-{drbd.name}-gi", delete=True)
        drbd.remember(gi=None)


def recover_split_brain(res, drbd, st):
    """split_brain_recovery=discard-secondary: the Secondary throws its changes away."""
    if res.params.split_brain_recovery != "discard-secondary":
        return
    if st.primary:
        args = ("connect",)
    else:
        args = ("connect", "--discard-my-data")
    res.log.warning(f"split_brain_recovery: drbdadm {' '.join(args)} {drbd.name}")
    drbd.adm(*args, quiet=True)


# --- actions --------------------------------------------------------------------
def open_drbd(res, need_module=True):
    drbd = Drbd(res)
    version = drbd.kernel_version()
    if version is None and need_module:
        raise OCFError(NOT_RUNNING, "DRBD kernel module is not loaded")
    return drbd, version


def start(res):
    drbd = Drbd(res)
    version = drbd.kernel_version(use_cache=False)
    if version is None:
        res.run(["modprobe", "-s", "drbd"], timeout=30, quiet=True, missing_ok=True)
        version = drbd.kernel_version(use_cache=False)
    if version is None:
        raise OCFError(ERR_INSTALLED, "DRBD kernel module is not loaded and cannot be loaded")
    check_module_version(res, version)
    check_resource_defined(res)
    drbd.remember(kernel=".".join(map(str, version)))
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
    degraded = bool(st.disconnected_peers) and res.params.report_degraded
    if degraded:
        res.exit_reason(reason or f"{drbd.name} degraded: peer not connected ({st.describe()})",
                        level="warning")
    if st.primary:
        return DEGRADED_PROMOTED if degraded else RUNNING_PROMOTED
    return DEGRADED if degraded else SUCCESS


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
    version = drbd.kernel_version(use_cache=False)
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
    check_resource_defined(res)
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
    if not res.meta("notify") or res.meta("notify").lower() not in ("true", "yes", "1", "on"):
        raise OCFError(ERR_CONFIGURED, "the clone must have notify=true for DRBD")
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


def check_resource_defined(res):
    # Both are facts of this node (another node may have the file and the resource):
    # 5 keeps the resource off this node only, where 6 would ban it from every node
    # (LINBIT's agent and ocft answer 5 too).
    if not os.path.exists(res.params.drbdconf):
        raise OCFError(ERR_INSTALLED, f"{res.params.drbdconf} does not exist on this node: "
                                      "install the DRBD configuration here, or keep the "
                                      "clone off this node")
    result = res.run(["drbdadm", "-c", res.params.drbdconf, "sh-dev", res.params.drbd_resource],
                     timeout=15, quiet=True)
    if result.rc != 0:
        raise OCFError(ERR_INSTALLED, f"DRBD resource {res.params.drbd_resource} is not "
                                      f"defined for this host in {res.params.drbdconf}: "
                                      f"{result.err.strip()}")


def holders_text(res, drbd):
    """Who holds the device open: mounts (any mount namespace) and processes."""
    result = drbd.adm("sh-dev", quiet=True)
    holders = device_holders(result.out.strip().splitlines()[0] if result.out.strip() else "")
    return f"(held open by: {', '.join(holders)})" if holders else ""


def device_holders(device):
    try:
        rdev = os.stat(device).st_rdev
    except (OSError, ValueError):
        return []
    majmin = f"{os.major(rdev)}:{os.minor(rdev)}"
    found, seen_ns = [], set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns not in seen_ns:
                seen_ns.add(ns)
                for line in (read_file(f"/proc/{pid}/mountinfo", "") or "").splitlines():
                    fields = line.split()
                    if len(fields) > 4 and fields[2] == majmin:
                        found.append(f"mount {fields[4]}")
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.stat(f"/proc/{pid}/fd/{fd}").st_rdev == rdev:
                        comm = (read_file(f"/proc/{pid}/comm", "?") or "?").strip()
                        found.append(f"{comm}[{pid}]")
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return sorted(set(found))


# --- DRBD's split-brain handler --------------------------------------------------
def split_brain_handler(argv):
    """drbd.conf: handlers { split-brain "/usr/lib/ocf/resource.d/pyha/drbd split-brain-handler"; }

    DRBD (drbdadm, on behalf of the kernel) runs it on each node the moment it detects a
    split brain and drops the connection, with DRBD_RESOURCE, DRBD_PEER_NODE_ID,
    DRBD_MY_NODE_ID and DRBD_NODE_ID_<id>=<host> in the environment (8.4: DRBD_MINOR, no
    node ids). It records the split brain at once: a crit log line (syslog, facility
    daemon unless HA_LOGFACILITY says otherwise), the node attribute
    drbd-<resource>-split-brain=1, and a flag file the agent's monitor reads without forking.
    """
    from ocf_agents.ocf import Resource, write_file_atomically as write
    env = os.environ
    try:
        name = parse_resource_name(env.get("DRBD_RESOURCE", ""))
    except ValueError as err:
        sys.stderr.write(f"drbd split-brain-handler: DRBD_RESOURCE: {err}\n")
        return ERR_ARGS
    env.setdefault("HA_LOGFACILITY", "daemon")
    res = Resource(AGENT, "split-brain-handler")
    try:
        my_id = env.get("DRBD_MY_NODE_ID", "")
        node = env.get(f"DRBD_NODE_ID_{my_id}") if my_id.isdigit() else None
        if node:
            res._node_name = node     # the host name DRBD knows = the cluster node name
        peer_id = env.get("DRBD_PEER_NODE_ID", "")
        peer = (env.get(f"DRBD_NODE_ID_{peer_id}") if peer_id.isdigit() else None) or \
            (f"node-id {peer_id}" if peer_id else "the peer")
        res.log.crit(f"DRBD resource {name}: SPLIT BRAIN detected by DRBD with {peer}; the "
                     "connection is StandAlone until resolved (drbdadm connect "
                     "--discard-my-data on the victim, drbdadm connect on the survivor)")
        write(split_brain_flag(res, name), f"peer={peer}\ntime={int(time.time())}\n")
        ok = res.node_attribute(f"drbd-{name}-split-brain", value=1)
        return SUCCESS if ok else ERR_GENERIC
    finally:
        res.close()


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
disk, and 191/190 (degraded) while the peer is not connected.

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
        Parameter("report_degraded", type="boolean", default=True,
                  shortdesc="Report 190/191 while the peer is disconnected",
                  longdesc="Monitor returns OCF_DEGRADED (190) / OCF_DEGRADED_PROMOTED (191) "
                           "while a peer is not connected. Set false for Pacemaker older than "
                           "2.1, which does not know these codes: monitor then returns 0/8."),
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
