"""DRBD emulator, the state model: the shared state store, data images and devices, the
state machine (handshake, resync, new data generations, fencing) and handlers.  Topology,
views and quorum: emutopo.py; the actions behind drbdadm/drbdsetup: emuactions.py; front
ends: drbdemu.py; output formats: emuformats.py."""

import json
import os
import time

from emudevices import (
    Failure, adopt_image, image_path, set_device_read_only, settle_io, split_images, state_dir,
    writes_through_device)
from emutopo import (
    all_vols, conn_of, connected, connected_peers, local_disk, minor_of, node_id, pair_key,
    pairs, peer_view, peers_of, suspension, sync_done, vol, volumes, wants_connection)

# ----------------------------------------------------------------------------- constants

DISK_STATES = ("Diskless", "Attaching", "Detaching", "Failed", "Negotiating", "Inconsistent",
               "Outdated", "DUnknown", "Consistent", "UpToDate")
KERNEL_VERSION = {"9": ("9.1.17", "0x090111", "2/proto:86-121"),
                  "8.4": ("8.4.11", "0x08040b", "1/proto:86-101")}
UTILS_VERSION = ("9.22.0", "0x091600")
GIT_HASH = "6f3fa5e5d6c4c7d3b6f0c1bdb7e2a4e6b0f1a2c3"
ZERO_UUID = "0" * 16

# drbdsetup state-change refusals: (rc, kernel code, text)
SS_TWO_PRIMARIES = (11, -1, "Multiple primaries not allowed by config")
SS_NO_UP_TO_DATE_DISK = (17, -2, "Need access to UpToDate data")
SS_DEVICE_IN_USE = (11, -12, "Device is held open by someone")
SS_CONNECTED_OUTDATES = (11, -15, "Refusing to be Outdated while Connected")
SS_NO_LOCAL_DISK = (16, -4, "Can not resync without local disk")
SS_PRIMARY_NOP = (11, -7, "Refusing to be Primary while peer is not outdated")
SS_NO_QUORUM = (11, -25, "No quorum")

# fence-peer exit codes (drbd_nl.c conn_try_outdate_peer): 3 peer inconsistent, 4 peer
# outdated, 5 peer down (counts only if the local disk is UpToDate), 6 peer primary (outdate
# myself), 7 peer stonithed; anything else means the handler is broken: nothing is fenced.
FENCE_PEER_INCONSISTENT, FENCE_PEER_OUTDATED, FENCE_PEER_DOWN = 3, 4, 5
FENCE_PEER_PRIMARY, FENCE_PEER_STONITHED = 6, 7


class NeedFencing(Exception):
    """A promote must run the fence-peer handler first (outside the state lock)."""

    def __init__(self, name, node, peers):
        super().__init__(name)
        self.name, self.node, self.peers = name, node, peers


# ----------------------------------------------------------------------------- state store

def local_node():
    return os.environ.get("DRBDEMU_NODE") or os.uname().nodename


class Store:
    """Exclusive access to the emulator state for the duration of one command."""

    def __init__(self):
        self.dir = state_dir()
        self.fd = None
        self.loaded = {}     # name -> (json text as read, dict)

    def __enter__(self):
        import fcntl
        os.makedirs(self.dir, exist_ok=True)
        self.fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
        self.fd = None
        run_pending_handlers()

    def names(self):
        try:
            return sorted(f[:-5] for f in os.listdir(self.dir) if f.endswith(".json"))
        except FileNotFoundError:
            return []

    def load(self, name):
        if name in self.loaded:
            return self.loaded[name][1]
        try:
            with open(os.path.join(self.dir, name + ".json")) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        res = json.loads(text)
        self.loaded[name] = (text, res)
        return res

    def create(self, res):
        self.loaded[res["name"]] = ("", res)

    def save_all(self):
        changed = False
        for name, (old, res) in list(self.loaded.items()):
            text = json.dumps(res, indent=1, sort_keys=True)
            if text != old:
                path = os.path.join(self.dir, name + ".json")
                with open(path + ".tmp", "w") as f:
                    f.write(text)
                os.replace(path + ".tmp", path)
                self.loaded[name] = (text, res)
                changed = True
        if changed:
            self.write_proc_files()

    def remove(self, name):
        self.loaded.pop(name, None)
        try:
            os.unlink(os.path.join(self.dir, name + ".json"))
        except FileNotFoundError:
            pass

    def write_proc_files(self):
        """Per-node stand-in for /proc/drbd: $DRBDEMU_STATE/proc/<node>/drbd."""
        resources = [self.load(n) for n in self.names()]
        nodes = sorted({n for r in resources for n in r["nodes"]})
        for node in nodes:
            from emuformats import format_proc_drbd   # (formats import this module)
            text = format_proc_drbd(resources, node, time.time())
            d = os.path.join(self.dir, "proc", node)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "drbd.tmp"), "w") as f:
                f.write(text)
            os.replace(os.path.join(d, "drbd.tmp"), os.path.join(d, "drbd"))


# ----------------------------------------------------------------------------- helpers

def new_uuid():
    return os.urandom(8).hex().upper()


def log_event(res, node, line):
    res.setdefault("events", []).append({"t": time.time(), "node": node, "line": line})
    del res["events"][:-50]


# ----------------------------------------------------------------------------- state machine

def reconcile(res, now):
    """Bring the shared resource state up to date: first writes, then per connection (each
    pair of nodes: DRBD 9 is a full mesh) disconnect, resync progress, connect."""
    notice_first_writes(res)
    res.setdefault("conns", {})
    for a, b in pairs(res):             # losses first: a handshake must see them
        if connected(res, a, b) and not wants_connection(res, a, b):
            lose_connection(res, a, b, now)
    for a, b in pairs(res):
        if connected(res, a, b):
            advance_sync(res, a, b, now)
        elif wants_connection(res, a, b):
            handshake(res, a, b, now)
    settle_io(res)


def advance_sync(res, a, b, now):
    syncs = conn_of(res, a, b)["sync"]
    for key, s in list(syncs.items()):
        T = vol(res["node"][s["target"]], int(key))
        if s.get("paused"):
            if T["disk"] == "UpToDate":      # the other source finished it
                del syncs[key]
            elif not any(o for o in syncing_into(res, s["target"], int(key)) if o is not s):
                s.update(paused=False, start=now)   # the active source went away
            continue
        if sync_done(res, s, now) >= 100.0:
            T["disk"] = "UpToDate"
            del syncs[key]
            log_event(res, s["target"], "change peer-device name:%s volume:%s "
                      "replication:Established" % (res["name"], key))


def syncing_into(res, target, v):
    """The resyncs (of any connection) whose target is volume v of `target`."""
    found = []
    for c in (res.get("conns") or {}).values():
        s = (c.get("sync") or {}).get(str(v))
        if s and s["target"] == target:
            found.append(s)
    return found


def lose_connection(res, a, b, now):
    conn = res["conns"].pop(pair_key(res, a, b))
    for key, sync in (conn.get("sync") or {}).items():
        T = vol(res["node"][sync["target"]], int(key))
        if T["disk"] == "UpToDate" and not sync.get("paused"):
            T["disk"] = "Inconsistent"
    split_images(res)
    for name in (a, b):
        st = res["node"][name]
        if not (st["up"] and st["role"] == "Primary"):
            continue
        for v in volumes(res):
            V = vol(st, v)
            if not V["attached"] and not any(vol(res["node"][p], v)["attached"]
                                             for p in connected_peers(res, name)):
                # a diskless Primary without a peer with data: writes fail
                # (on-no-data-accessible io-error, the default)
                set_device_read_only(V, True)
            elif V["attached"]:
                arm_new_current_uuid(res, V)
        if res["fencing"] != "dont-care" and not st.get("client"):
            start_async_fencing(res, name, now)


# New data generation (drbd_state.c finish_state_change sets NEW_CUR_UUID on every device
# when a Primary loses a peer or is promoted without all of them; drbd_req.c
# inc_ap_bio_cond turns it into drbd_uuid_new_current at the device's first write, and the
# connected peers take the new UUID; Primary -> Secondary clears it).  A "write" is a change
# of the volume's image file (mtime/size), i.e. a bio that reached the loop device.

def image_signature(res, V):
    try:
        s = os.stat(image_path(res, V["image"]))
    except FileNotFoundError:
        return None
    return [s.st_mtime_ns, s.st_size]


def arm_new_current_uuid(res, V):
    if not V.get("new_cur_uuid"):
        V["new_cur_uuid"] = True
        V["write_mark"] = image_signature(res, V)


def disarm_new_current_uuid(st):
    for V in all_vols(st):
        V["new_cur_uuid"] = False
        V["write_mark"] = None


def notice_first_writes(res):
    """A pending new current UUID becomes real once the Primary's volume data changed.  It
    is pending while some peer does not replicate the volume: not connected, or connected
    with that volume detached (drbd_state.c: a peer disk lost while Primary)."""
    for name in res["nodes"]:
        st = res["node"][name]
        primary = st["up"] and st["role"] == "Primary"
        for v in volumes(res):
            V = vol(st, v)
            lagging = primary and any(
                not connected(res, name, p) or (not res["node"][p].get("client") and
                                                not vol(res["node"][p], v)["attached"])
                for p in peers_of(res, name))
            if not lagging:
                V["new_cur_uuid"], V["write_mark"] = False, None
                continue
            if not V.get("new_cur_uuid"):
                if V["attached"] and all(connected(res, name, p) for p in peers_of(res, name)):
                    arm_new_current_uuid(res, V)    # a connected peer's volume detached
                continue
            if image_signature(res, V) != V.get("write_mark"):
                V["new_cur_uuid"], V["write_mark"] = False, None
                new_generation(V)
                share_generation(res, name, v)


def new_generation(V):
    """A new current UUID; the first one since a peer was last seen keeps the old current
    as the bitmap UUID (the base of the changes the peer lacks), as DRBD does."""
    if not V.get("bitmap"):
        V["bitmap"] = V["uuid"]
    V["history"] = ([V["uuid"]] + V["history"])[:4]
    V["uuid"] = new_uuid()


def share_generation(res, name, v):
    """drbd_uuid_new_current sends the new UUIDs to the connected peers; those replicating
    this volume (same data) take them over."""
    V = vol(res["node"][name], v)
    for p in connected_peers(res, name):
        P = vol(res["node"][p], v)
        if P["attached"] and P["image"] == V["image"]:
            P["uuid"], P["history"], P["bitmap"] = V["uuid"], list(V["history"]), V["bitmap"]


def generation_ids(V):
    """(current, bitmap, history1, history2) as drbdsetup get-gi shows them."""
    bitmap = V.get("bitmap") or ZERO_UUID
    history = [h for h in V["history"] if h != bitmap] + [ZERO_UUID, ZERO_UUID]
    return V["uuid"], bitmap, history[0], history[1]


# ----------------------------------------------------------------------------- handlers
# drbd.conf `handlers { split-brain "..."; }`: drbdadm runs the command through /bin/sh with
# DRBD_* variables describing the event. Here the command is queued while the state is
# locked and run once the lock is released (a handler may itself call drbdadm).

PENDING_HANDLERS = []
FENCING_TRIED = set()      # resources whose promote already ran fence-peer in this command


def helper_environment(res, node, helper, peer):
    """The environment of a connection helper: the kernel's (drbd_nl.c drbd_khelper: peer
    node id, connection state, addresses, minors/backing devices, UP_TO_DATE_NODES for the
    fence helpers) plus drbdadm's (drbdadm_main.c adm_khelper: DRBD_CONF, DRBD_RESOURCE,
    DRBD_NODE_ID_<n>, DRBD_MY_NODE_ID, DRBD_MINOR, DRBD_VOLUME, DRBD_LL_DISK)."""
    M = res["node"][node]
    env = {"DRBD_RESOURCE": res["name"], "DRBD_CONF": "/etc/drbd.conf",
           "DRBDEMU_NODE": node, "DRBD_PEER_NODE_ID": str(node_id(res, peer))}
    if res["mode"] != "9":
        env.update(DRBD_MINOR=str(res["minor"]), DRBD_VOLUME="0", DRBD_PEER=peer)
        env.pop("DRBD_PEER_NODE_ID")
        return env
    env["DRBD_MY_NODE_ID"] = str(node_id(res, node))
    for i, n in enumerate(res["nodes"]):
        env["DRBD_NODE_ID_%d" % i] = n
    addrs = res.get("addresses") or {}
    if node in addrs and peer in addrs:
        env.update(DRBD_MY_ADDRESS=addrs[node], DRBD_MY_AF="ipv4",
                   DRBD_PEER_ADDRESS=addrs[peer], DRBD_PEER_AF="ipv4")
    env["DRBD_CSTATE"] = peer_view(res, node, peer, time.time())[0]
    # drbdadm adm_khelper: DRBD_MINOR_<vnr> / DRBD_BACKING_DEV_<vnr> for every volume
    for v in volumes(res):
        env["DRBD_MINOR_%d" % v] = str(minor_of(res, v))
        if vol(M, v)["attached"]:
            env["DRBD_BACKING_DEV_%d" % v] = image_path(res, vol(M, v)["image"])
    disk = image_path(res, M["image"]) if M["attached"] else "none"
    env.update(DRBD_MINOR=str(res["minor"]), DRBD_VOLUME="0", DRBD_LL_DISK=disk)
    if "fence" in helper:
        mask = 1 << node_id(res, node)
        for p in peers_of(res, node):
            if peer_view(res, node, p, time.time())[3] == "UpToDate":
                mask |= 1 << node_id(res, p)
        env["UP_TO_DATE_NODES"] = "0x%08X" % (mask if M["attached"] else (1 << 64) - 1)
    return env


def queue_handler(res, node, helper, peer):
    """Run drbd.conf's handler once the state lock is released.  A fence-peer without a
    handler still "runs": drbdadm finds nothing to execute and exits 0."""
    command = (res.get("handlers") or {}).get(helper)
    if not command and helper != "fence-peer":
        return
    PENDING_HANDLERS.append((res["name"], node, helper, peer, command,
                             helper_environment(res, node, helper, peer)))


def run_helper(command, extra):
    import subprocess
    if not command:
        return 0
    env = dict(os.environ, **extra)
    return subprocess.run(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def log_helper_call(res, node, helper, peer):
    log_event(res, node, "call helper name:%s peer-node-id:%d conn-name:%s helper:%s"
              % (res["name"], node_id(res, peer), peer, helper))


def log_helper_response(res, node, helper, peer, rc):
    log_event(res, node, "response helper name:%s peer-node-id:%d conn-name:%s helper:%s "
              "status:%d" % (res["name"], node_id(res, peer), peer, helper, rc))


def run_pending_handlers():
    while PENDING_HANDLERS:
        name, node, helper, peer, command, extra = PENDING_HANDLERS.pop(0)
        rc = run_helper(command, extra)
        try:
            with Store() as store:
                res = store.load(name)
                if res is not None:
                    log_helper_response(res, node, helper, peer, rc)
                    if helper == "fence-peer":
                        apply_fence_result(res, node, peer, rc, time.time())
                    store.save_all()
        except Failure:
            pass


def apply_fence_result(res, me, peer, rc, now):
    """What the kernel makes of fence-peer's exit code (drbd_nl.c conn_try_outdate_peer);
    True when the peer now counts as outdated.  Success ends a fencing I/O suspension and
    starts the new data generation at once (drbd_state.c check_may_resume_io_after_fencing)."""
    M = res["node"][me]
    if not M["up"] or connected(res, me, peer):
        return False            # connection re-established meanwhile: ignored
    fenced = M.setdefault("fenced", {})
    if rc == FENCE_PEER_INCONSISTENT:
        fenced[peer] = "Inconsistent"
    elif rc in (FENCE_PEER_OUTDATED, FENCE_PEER_STONITHED):
        fenced[peer] = "Outdated"
    elif rc == FENCE_PEER_DOWN:
        if local_disk(M) == "UpToDate":
            fenced[peer] = "Outdated"
    elif rc == FENCE_PEER_PRIMARY:
        for V in all_vols(M):
            if M["role"] == "Secondary" and V["disk"] in ("UpToDate", "Consistent"):
                V["disk"] = "Outdated"
    ok = peer in fenced
    if ok and M.get("susp_fencing"):
        M["susp_fencing"] = False
        make_pending_generations(res, me)
    return ok


def make_pending_generations(res, me):
    """Resume after a suspension: every volume with a pending new current UUID gets it now."""
    M = res["node"][me]
    for v in volumes(res):
        V = vol(M, v)
        if V.get("new_cur_uuid"):
            V["new_cur_uuid"], V["write_mark"] = False, None
            new_generation(V)
            share_generation(res, me, v)


def start_async_fencing(res, node, now):
    """A Primary lost a peer while `fencing` is set (drbd_receiver.c conn_disconnect ->
    conn_try_outdate_peer_async); with resource-and-stonith its I/O is suspended until the
    handler succeeded (drbd_state.c sanitize_state: susp_fen)."""
    for peer in peers_of(res, node):
        if connected(res, node, peer) or peer in (res["node"][node].get("fenced") or {}):
            continue
        if res["fencing"] == "resource-and-stonith":
            res["node"][node]["susp_fencing"] = True
        log_helper_call(res, node, "fence-peer", peer)
        queue_handler(res, node, "fence-peer", peer)


def go_standalone(res, a, b, names, reason, now):
    """The connection a-b goes StandAlone on the side(s) `names` (DRBD 9: per connection;
    the node's other connections are untouched)."""
    for n in names:
        st = res["node"][n]
        peer = b if n == a else a
        st.setdefault("standalone", {})[peer] = reason
        st["discard"] = False
        if reason == "split-brain":
            log_event(res, n, "call helper name:%s peer-node-id:%d conn-name:%s helper:split-brain"
                      % (res["name"], node_id(res, peer), peer))
            queue_handler(res, n, "split-brain", peer)


def sync_plan(res, a, b):
    """drbd_sync_handshake per volume: {volume: source} for the volumes to resync, the
    volumes whose data is equal, or a reason to refuse the connection."""
    A, B = res["node"][a], res["node"][b]
    plan, equal = {}, []
    for v in volumes(res):
        VA, VB = vol(A, v), vol(B, v)
        if not (VA["attached"] and VB["attached"]):
            continue
        if A["discard"] or B["discard"]:
            plan[v] = b if A["discard"] else a
        elif VA["uuid"] == VB["uuid"]:
            inc_a, inc_b = VA["disk"] == "Inconsistent", VB["disk"] == "Inconsistent"
            if inc_a and not inc_b:
                plan[v] = b
            elif inc_b and not inc_a:
                plan[v] = a
            elif not inc_a:
                equal.append(v)     # same generation, nobody inconsistent: same data
        elif VA["uuid"] in VB["history"]:
            plan[v] = b
        elif VB["uuid"] in VA["history"]:
            plan[v] = a
        else:
            common = ({VA["uuid"]} | set(VA["history"])) & ({VB["uuid"]} | set(VB["history"]))
            return None, None, "split-brain" if common else "unrelated-data"
    return plan, equal, None


def handshake(res, a, b, now):
    A, B = res["node"][a], res["node"][b]
    if A["discard"] and B["discard"]:
        return go_standalone(res, a, b, [a, b], "discard-both", now)
    plan, equal, refusal = sync_plan(res, a, b)
    if refusal:
        return go_standalone(res, a, b, [a, b], refusal, now)
    targets = {b if s == a else a for s in plan.values()}
    primary_targets = [t for t in targets if res["node"][t]["role"] == "Primary"]
    if primary_targets:
        # "I shall become SyncTarget, but I am primary!"
        return go_standalone(res, a, b, primary_targets, "primary-sync-target", now)
    if not plan and A["role"] == B["role"] == "Primary" and not res["allow_two_primaries"]:
        # same data, both Primary: the connect's state change fails with SS_TWO_PRIMARIES
        # and, rr-conflict not being retry-connect, both disconnect (drbd_receiver.c
        # connect_work); no split brain, nothing diverged
        return go_standalone(res, a, b, [a, b], "two-primaries", now)
    for me, peer in ((a, b), (b, a)):
        st = res["node"][me]
        st["discard"] = False
        (st.get("standalone") or {}).pop(peer, None)
        (st.get("fenced") or {}).pop(peer, None)
        if peer in (st.get("outdated_peers") or ()):
            st["outdated_peers"].remove(peer)
        st["susp_fencing"] = False
        for V in all_vols(st):
            V["bitmap"] = None      # the peer has (or is about to get) the changes
    res["conns"][pair_key(res, a, b)] = {"sync": {}, "since": now}
    for v in volumes(res):
        for client, server in ((a, b), (b, a)):
            C, S = vol(res["node"][client], v), vol(res["node"][server], v)
            if not C["attached"] and S["attached"]:
                C["image"] = S["image"]   # a diskless volume reads and writes the peer's data
                if res["node"][client]["role"] == "Primary":
                    set_device_read_only(C, False)
        if v in plan:
            source = plan[v]
            start_sync(res, source, b if source == a else a, v, now)
        elif v in equal:
            settle_equal_disks(vol(A, v), vol(B, v))
            keeper, other = (b, a) if writes_through_device(B, vol(B, v)) and \
                not writes_through_device(A, vol(A, v)) else (a, b)
            if not writes_through_device(res["node"][other], vol(res["node"][other], v)):
                adopt_image(res, other, keeper, v)


def settle_equal_disks(A, B):
    """Same data on both sides after the handshake (drbd_receiver.c, end of
    drbd_sync_handshake): an Outdated disk takes the peer's state only when the peer is
    Consistent or UpToDate, so two Outdated disks stay Outdated; Consistent disks that now see
    all their peers become UpToDate."""
    if A["disk"] == "Outdated" and B["disk"] == "Outdated":
        return
    for me, peer in ((A, B), (B, A)):
        if me["disk"] == "Outdated" and peer["disk"] in ("Consistent", "UpToDate"):
            me["disk"] = peer["disk"]
    for V in (A, B):
        if V["disk"] == "Consistent":
            V["disk"] = "UpToDate"


def start_sync(res, source, target, v, now):
    """Resync volume v from source to target; a target already resyncing that volume from
    another peer waits for it (PausedSyncT, resync-suspended:dependency)."""
    S, T = vol(res["node"][source], v), vol(res["node"][target], v)
    busy = syncing_into(res, target, v)
    sync = {"source": source, "target": target, "start": now, "total_kib": res["size_kib"]}
    if busy:
        sync["paused"] = True
    else:
        T["disk"] = "Inconsistent"
        T["uuid"], T["history"] = S["uuid"], list(S["history"])
        T["bitmap"] = S["bitmap"] = None
        adopt_image(res, target, source, v)
    conn_of(res, source, target)["sync"][str(v)] = sync
    advance_sync(res, source, target, now)


def do_attach(res, me, v, now):
    st = res["node"][me]
    V = vol(st, v)
    if V["attached"] or st.get("client"):      # `disk none`: nothing to attach
        return
    if V["failed"]:
        raise Failure("%d: Failure: (104) Can not open backing device." % minor_of(res, v), 10)
    V["attached"] = True
    d = V["disk"]
    if res["fencing"] == "dont-care" and d == "Consistent":
        d = "UpToDate"
    elif res["fencing"] != "dont-care" and d == "UpToDate":
        d = "Consistent"
    V["disk"] = d
    for peer in connected_peers(res, me):
        P = vol(res["node"][peer], v)
        if P["attached"] and P["disk"] == "UpToDate" and not syncing_into(res, me, v):
            if V["uuid"] != P["uuid"] or d != "UpToDate":
                start_sync(res, peer, me, v, now)


def yn(v):
    return "yes" if v else "no"


def suspended_words(M):
    """drbd-utils drbdsetup.c susp_str: "no" or the reasons, comma separated."""
    words = [w for w, on in zip(("user", "no-data", "fencing", "quorum"), suspension(M)) if on]
    return ",".join(words) or "no"


