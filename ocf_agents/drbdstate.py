"""DRBD's state as ocf:pyha:drbd sees it, and the promotion score it gives that state.

Pure functions and plain objects, no I/O: the decoders turn what drbdsetup, drbdadm and
/proc/drbd print (DRBD 9 and 8.4) into a ``DrbdState``; ``uuids_diverged`` compares two
sides' generation UUIDs; ``compute_score`` is LINBIT's promotion-score rule set with its
reason at every branch. The agent (``ocf_agents.drbd``) runs the tools and acts.
"""

UNCHANGED = object()      # promotion score: leave as it is (transitional disk state)
# DRBD 8.4 connection states in which the peer is there (connected, syncing or verifying)
CONNECTED_84 = ("Connected", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT",
                "WFSyncUUID", "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT",
                "VerifyS", "VerifyT", "Ahead", "Behind")


# --- state --------------------------------------------------------------------
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
        """Lost the local disk (not a diskless client by configuration). Detaching is not
        (yet): it is the transient step of a detach (an administrator's, or after an I/O
        error, which passes through Failed first) and ends in Diskless."""
        return not self.client and any(d in ("Diskless", "Failed") for d in self.disks)

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


def decode_events2(text, resource):
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


def decode_sh_status(text):
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


def decode_drbdadm_84(role, cstate, dstate):
    """State from ``drbdadm role``/``cstate``/``dstate`` output (DRBD 8.4)."""
    st = DrbdState()
    roles, disks = role.split(), dstate.split()
    for i, cs in enumerate(cstate.split()):
        r = (roles[i] if i < len(roles) else "Unconfigured").split("/")
        d = (disks[i] if i < len(disks) else "").split("/")
        _apply_84(st, r[0], r[1] if len(r) > 1 else None, d[0], d[1] if len(d) > 1 else None,
                  cs)
    return st


def decode_proc_drbd(text):
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


def decode_gi(text):
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
    """LINBIT's promotion-score rules; None = delete the score, UNCHANGED = leave it.

    params.adjust_master_score = (consistent, remote, local_peer_unknown, good).
    """
    consistent, remote, local_peer_unknown, good = params.adjust_master_score
    if not st.quorum:
        # Without quorum DRBD refuses (or freezes) writes: a promotion here would serve
        # nothing, and the partition that has quorum is the one to promote.
        return None
    policy = params.remove_master_score_if_peer_primary
    if policy != "false" and not st.primary:
        for peer in st.peers.values():
            if peer.role == "Primary" and peer.all_uptodate:
                # A healthy Primary already serves the data: with "true" never compete
                # with it; with "unexpected" only when Pacemaker does not know of it
                # (promoted outside the cluster), so Pacemaker cannot pick a second one.
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
            # The Primary keeps the top score even with its peer gone: moving the
            # service would gain nothing and cost a failover.
            return good
        if any(p.any_unknown and not p.client for p in peers):
            # UpToDate as far as this node knows, but a peer it cannot see may have
            # newer data (it may be Primary on the other side of a cut): promotable,
            # below a node that knows every peer.
            return local_peer_unknown
        # UpToDate and every peer known: the best place for the Primary.
        return good
    if any(p.all_uptodate for p in peers):
        # Not UpToDate here (Inconsistent, Outdated, SyncTarget, Diskless) but a connected
        # peer has the data: DRBD reads through to it, so a promotion works, but a node
        # with local data is better.
        return remote
    if any(d in ("Attaching", "Negotiating") for d in st.disks):
        # Transitional: the disk state is about to become known; keep the old score
        # instead of flapping it for a second.
        return UNCHANGED
    if st.disks and all(d in ("Consistent", "UpToDate") for d in st.disks):
        # Consistent with no peer to ask (e.g. after a crash with fencing): the data is
        # sound but may be stale; promotable only if the administrator said so with a
        # positive first score.
        return consistent if consistent > 0 else None
    # Outdated, Inconsistent, Failed or no disk, and no peer with data: never promote
    # (the application would see stale or no data).
    return None
