"""DRBD emulator, the state model: the shared state store, data images and devices, the
state machine (handshake, resync, new data generations, fencing, quorum), handlers and the
actions behind drbdadm/drbdsetup.  Front ends: drbdemu.py; output formats: emuformats.py."""

import json
import os
import time

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


class Failure(Exception):
    """A command failed: message for stderr, exit code."""

    def __init__(self, message, rc):
        super().__init__(message)
        self.message = message
        self.rc = rc


# ----------------------------------------------------------------------------- state store

def state_dir():
    d = os.environ.get("DRBDEMU_STATE")
    if not d:
        raise Failure("drbdemu: DRBDEMU_STATE is not set", 20)
    return d


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


def image_path(res, image):
    return os.path.join(state_dir(), image)


def sparse_copy(src, dst):
    """Copy an image keeping holes (images are mostly empty)."""
    with open(src, "rb") as fi, open(dst + ".tmp", "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                data_start = os.lseek(fi.fileno(), offset, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fi.fileno(), data_start, os.SEEK_HOLE)
            os.lseek(fi.fileno(), data_start, os.SEEK_SET)
            os.lseek(fo.fileno(), data_start, os.SEEK_SET)
            remaining = hole - data_start
            while remaining:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), remaining)
                if n <= 0:
                    break
                remaining -= n
            offset = hole
        fo.truncate(size)
    os.replace(dst + ".tmp", dst)


def peers_of(res, node):
    return [p for p in res["nodes"] if p != node]


def node_id(res, node):
    return res["nodes"].index(node)


def connected(res, a, b):
    c = res.get("conn")
    return bool(c) and a in c["nodes"] and b in c["nodes"]


def log_event(res, node, line):
    res.setdefault("events", []).append({"t": time.time(), "node": node, "line": line})
    del res["events"][:-50]


# ----------------------------------------------------------------------------- devices

def _run(argv):
    import subprocess
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)


def device_in_use(st):
    """True when the Primary's device is mounted or opened exclusively (like DRBD's open count)."""
    if not st.get("loop"):
        return False
    try:
        fd = os.open(st["loop"], os.O_RDONLY | os.O_EXCL)
    except OSError as e:
        import errno
        return e.errno == errno.EBUSY
    os.close(fd)
    return False


def attach_device(res, st):
    img = image_path(res, st["image"])
    p = _run(["losetup", "--find", "--show", img])
    if p.returncode != 0:
        raise Failure("%s: losetup failed: %s" % (res["name"], p.stderr.strip()), 20)
    loop = p.stdout.strip()
    rdev = os.stat(loop).st_rdev
    path = res["device"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    import stat
    os.mknod(path, stat.S_IFBLK | 0o660, rdev)
    st["loop"], st["rdev"], st["loop_image"] = loop, rdev, st["image"]
    set_device_read_only(st, False)     # a reused loop may still carry an old read-only flag


def device_is_ours(res, st):
    try:
        return bool(st.get("rdev")) and os.stat(res["device"]).st_rdev == st["rdev"]
    except FileNotFoundError:
        return False


def set_device_read_only(st, read_only):
    if st.get("loop"):
        _run(["blockdev", "--setro" if read_only else "--setrw", st["loop"]])
        st["device_read_only"] = read_only


def device_writable(res, name):
    """Writes reach the data only on a Primary whose I/O is not suspended (user, fencing,
    quorum), that has quorum and, if diskless, a peer."""
    st = res["node"][name]
    if not (st["up"] and st["role"] == "Primary") or not has_quorum(res, name) or \
            any(suspension(st)):
        return False
    return not st.get("client") or any(connected(res, name, p) for p in peers_of(res, name))


def settle_io(res):
    """Suspension or quorum changed: a Primary without quorum suspends its I/O (on-no-quorum
    suspend-io: suspended:quorum) or fails it (io-error); the device stands in for a freeze
    and for failing I/O alike by refusing writes until quorum returns / I/O resumes."""
    for name in res["nodes"]:
        st = res["node"][name]
        st["susp_quorum"] = quorum_suspends(res, name)
        if st.get("loop"):
            read_only = not device_writable(res, name)
            if st.get("device_read_only") != read_only:
                set_device_read_only(st, read_only)


def open_device_for_primary(res, st):
    """Promote: the device kept since the last demote becomes writable again, unless its
    data file changed (resync, split) or another node's device took the path meanwhile."""
    if st.get("client"):
        me = [n for n in res["nodes"] if res["node"][n] is st][0]
        servers = [p for p in peers_of(res, me) if connected(res, me, p)
                   and res["node"][p]["attached"]]
        if servers:
            st["image"] = res["node"][servers[0]]["image"]
    if st.get("loop") and st.get("loop_image") == st["image"] and device_is_ours(res, st):
        set_device_read_only(st, False)
        return
    detach_device(res, st)
    attach_device(res, st)


def refresh_kept_device(res, st):
    """A Secondary keeps its device (read-only) until down; when its data file is replaced,
    the device follows (if the path is still its own) or is let go."""
    if not st.get("loop") or st["role"] == "Primary" or st.get("loop_image") == st["image"]:
        return
    ours = device_is_ours(res, st)
    detach_device(res, st)
    if ours and st["up"]:
        attach_device(res, st)
        set_device_read_only(st, True)


def writes_through_device(st):
    return bool(st.get("loop")) and st["role"] == "Primary"


def detach_device(res, st):
    """Remove our device node (only if it still is ours) and release the loop device."""
    path = res["device"]
    try:
        if os.stat(path).st_rdev == st.get("rdev"):
            os.unlink(path)
    except FileNotFoundError:
        pass
    if st.get("loop"):
        set_device_read_only(st, False)
        p = _run(["losetup", "-d", st["loop"]])
        if p.returncode != 0:       # busy (crash with a mount): auto-clear on last close
            _run(["losetup", "--detach", st["loop"]])
    st["loop"] = st["rdev"] = st["device_read_only"] = None


# ----------------------------------------------------------------------------- state machine

def local_disk(st):
    if not st["up"]:
        return "Unconfigured"
    return st["disk"] if st["attached"] else "Diskless"


def reconcile(res, now):
    """Bring the shared resource state up to date: first writes, connect, disconnect, resync
    progress."""
    notice_first_writes(res)
    nodes = res["nodes"]
    if len(nodes) == 2:
        a, b = nodes
        A, B = res["node"][a], res["node"][b]
        want = A["up"] and B["up"] and A["net"] and B["net"] and not res["link_cut"]
        if res.get("conn"):
            if not want:
                lose_connection(res, now)
            else:
                advance_sync(res, now)
        elif want:
            handshake(res, now)
    settle_io(res)


def sync_done(res, now):
    s = res["conn"]["sync"]
    secs = float(res["resync_seconds"])
    if secs <= 0:
        return 100.0
    return min(100.0, 100.0 * (now - s["start"]) / secs)


def advance_sync(res, now):
    s = res["conn"].get("sync")
    if s and sync_done(res, now) >= 100.0:
        res["node"][s["target"]]["disk"] = "UpToDate"
        res["conn"]["sync"] = None
        log_event(res, s["target"], "change peer-device name:%s volume:0 replication:Established"
                  % res["name"])


def lose_connection(res, now):
    conn = res["conn"]
    sync = conn.get("sync")
    res["conn"] = None
    if sync:
        target = res["node"][sync["target"]]
        if target["disk"] == "UpToDate":
            target["disk"] = "Inconsistent"
    split_images(res)
    for name in res["nodes"]:
        st = res["node"][name]
        if st["up"] and st["role"] == "Primary" and st.get("client"):
            # a diskless Primary without peers has no data: writes fail
            # (on-no-data-accessible io-error, the default)
            set_device_read_only(st, True)
        elif st["up"] and st["role"] == "Primary":
            arm_new_current_uuid(res, st)
            if res["fencing"] != "dont-care":
                start_async_fencing(res, name, now)


# New data generation (drbd_state.c finish_state_change sets NEW_CUR_UUID when a Primary
# loses its peer or is promoted without one; drbd_req.c inc_ap_bio_cond turns it into
# drbd_uuid_new_current at the first write; Primary -> Secondary clears it).  A "write" is
# a change of the Primary's image file (mtime/size), i.e. a bio that reached the loop device.

def image_signature(res, st):
    try:
        s = os.stat(image_path(res, st["image"]))
    except FileNotFoundError:
        return None
    return [s.st_mtime_ns, s.st_size]


def arm_new_current_uuid(res, st):
    if not st.get("new_cur_uuid"):
        st["new_cur_uuid"] = True
        st["write_mark"] = image_signature(res, st)


def disarm_new_current_uuid(st):
    st["new_cur_uuid"] = False
    st["write_mark"] = None


def notice_first_writes(res):
    """A pending new current UUID becomes real once the Primary's data changed."""
    for name in res["nodes"]:
        st = res["node"][name]
        if not st.get("new_cur_uuid"):
            continue
        if not (st["up"] and st["role"] == "Primary") or \
                any(connected(res, name, p) for p in peers_of(res, name)):
            disarm_new_current_uuid(st)
        elif image_signature(res, st) != st.get("write_mark"):
            disarm_new_current_uuid(st)
            new_generation(st)


def new_generation(st):
    """A new current UUID; the first one since the peer was last seen keeps the old current
    as the bitmap UUID (the base of the changes the peer lacks), as DRBD does."""
    if not st.get("bitmap"):
        st["bitmap"] = st["uuid"]
    st["history"] = ([st["uuid"]] + st["history"])[:4]
    st["uuid"] = new_uuid()


def generation_ids(st):
    """(current, bitmap, history1, history2) as drbdsetup get-gi shows them."""
    bitmap = st.get("bitmap") or ZERO_UUID
    history = [h for h in st["history"] if h != bitmap] + [ZERO_UUID, ZERO_UUID]
    return st["uuid"], bitmap, history[0], history[1]


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
    disk = image_path(res, M["image"]) if M["attached"] else "none"
    env["DRBD_MINOR_0"] = str(res["minor"])
    if M["attached"]:
        env["DRBD_BACKING_DEV_0"] = disk
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
        if M["role"] == "Secondary" and M["disk"] in ("UpToDate", "Consistent"):
            M["disk"] = "Outdated"
    ok = peer in fenced
    if ok and M.get("susp_fencing"):
        M["susp_fencing"] = False
        if M.get("new_cur_uuid"):
            disarm_new_current_uuid(M)
            new_generation(M)
    return ok


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


def fence_before_promote(nf):
    """Run fence-peer for each unknown peer of a node being promoted, synchronously (the
    promote waits for it, drbd_nl.c drbd_set_role), then record what the kernel made of it."""
    FENCING_TRIED.add(nf.name)
    jobs = []
    with Store() as store:
        res = store.load(nf.name)
        for peer in nf.peers:
            log_helper_call(res, nf.node, "fence-peer", peer)
            jobs.append((peer, (res.get("handlers") or {}).get("fence-peer"),
                         helper_environment(res, nf.node, "fence-peer", peer)))
        store.save_all()
    for peer, command, env in jobs:
        rc = run_helper(command, env)
        with Store() as store:
            res = store.load(nf.name)
            log_helper_response(res, nf.node, "fence-peer", peer, rc)
            apply_fence_result(res, nf.node, peer, rc, time.time())
            store.save_all()


def retry_after_fencing(command):
    while True:
        try:
            return command()
        except NeedFencing as nf:
            if nf.name in FENCING_TRIED:
                raise AssertionError("fence-peer requested twice")
            fence_before_promote(nf)


def split_images(res):
    """After a disconnect each node needs its own copy of the (so far shared) data."""
    a, b = res["nodes"]
    A, B = res["node"][a], res["node"][b]
    if A["image"] != B["image"] or A.get("client") or B.get("client"):
        return
    # the Primary (writing through its loop device) keeps the file
    if writes_through_device(B) and not writes_through_device(A):
        keeper, other, oname = B, A, a
    else:
        keeper, other, oname = A, B, b
    if writes_through_device(other):    # dual-primary: both hold it; nothing sane to do
        return
    res["serial"] = res.get("serial", 0) + 1
    new = "%s.%s.%d.img" % (res["name"], oname, res["serial"])
    sparse_copy(image_path(res, keeper["image"]), image_path(res, new))
    other["image"] = new
    refresh_kept_device(res, other)


def adopt_image(res, target, source):
    """target now uses source's data; drop target's old file if nobody uses it."""
    T, S = res["node"][target], res["node"][source]
    old = T["image"]
    T["image"] = S["image"]
    refresh_kept_device(res, T)
    if old != T["image"] and all(res["node"][n]["image"] != old for n in res["nodes"]):
        try:
            os.unlink(image_path(res, old))
        except FileNotFoundError:
            pass


def go_standalone(res, names, reason, now):
    for n in names:
        st = res["node"][n]
        st["net"] = False
        st["discard"] = False
        st["standalone_reason"] = reason
        if reason == "split-brain":
            peer = peers_of(res, n)[0]
            log_event(res, n, "call helper name:%s peer-node-id:%d conn-name:%s helper:split-brain"
                      % (res["name"], node_id(res, peer), peer))
            queue_handler(res, n, "split-brain", peer)


def handshake(res, now):
    a, b = res["nodes"]
    A, B = res["node"][a], res["node"][b]
    source = None
    if A["discard"] and B["discard"]:
        return go_standalone(res, [a, b], "discard-both", now)
    if A["attached"] and B["attached"]:
        if A["discard"] or B["discard"]:
            source = b if A["discard"] else a
        elif A["uuid"] == B["uuid"]:
            inc_a, inc_b = A["disk"] == "Inconsistent", B["disk"] == "Inconsistent"
            if inc_a and not inc_b:
                source = b
            elif inc_b and not inc_a:
                source = a
            elif not inc_a:
                # same generation, nobody inconsistent: the data is the same
                settle_equal_disks(A, B)
        elif A["uuid"] in B["history"]:
            source = b
        elif B["uuid"] in A["history"]:
            source = a
        else:
            common = ({A["uuid"]} | set(A["history"])) & ({B["uuid"]} | set(B["history"]))
            return go_standalone(res, [a, b], "split-brain" if common else "unrelated-data", now)
    if source:
        target = b if source == a else a
        if res["node"][target]["role"] == "Primary":
            # "I shall become SyncTarget, but I am primary!"
            return go_standalone(res, [target], "primary-sync-target", now)
    elif A["role"] == B["role"] == "Primary" and not res["allow_two_primaries"]:
        # same data, both Primary: the connect's state change fails with SS_TWO_PRIMARIES
        # and, rr-conflict not being retry-connect, both disconnect (drbd_receiver.c
        # connect_work); no split brain, nothing diverged
        return go_standalone(res, [a, b], "two-primaries", now)
    for st in (A, B):
        st["discard"] = False
        st["standalone_reason"] = None
        st["bitmap"] = None     # the peer has (or is about to get) the changes
        st["fenced"] = {}
        st["outdated_peers"] = []
        st["susp_fencing"] = False
    res["conn"] = {"nodes": [a, b], "sync": None, "since": now}
    for client, server in ((A, B), (B, A)):
        if client.get("client") and server["attached"]:
            client["image"] = server["image"]   # a client reads and writes the peer's data
            if client["role"] == "Primary":
                set_device_read_only(client, False)
    if source:
        start_sync(res, source, target, now)
    elif A["attached"] and B["attached"]:
        keeper, other = (b, a) if writes_through_device(B) and not writes_through_device(A) \
            else (a, b)
        if not writes_through_device(res["node"][other]):
            adopt_image(res, other, keeper)


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
    for st in (A, B):
        if st["disk"] == "Consistent":
            st["disk"] = "UpToDate"


def start_sync(res, source, target, now):
    S, T = res["node"][source], res["node"][target]
    T["disk"] = "Inconsistent"
    T["uuid"], T["history"] = S["uuid"], list(S["history"])
    T["bitmap"] = S["bitmap"] = None
    adopt_image(res, target, source)
    res["conn"]["sync"] = {"source": source, "target": target, "start": now,
                           "total_kib": res["size_kib"]}
    advance_sync(res, now)


def do_attach(res, st, now):
    if st["attached"] or st.get("client"):      # `disk none`: nothing to attach
        return
    if st["failed"]:
        raise Failure("%d: Failure: (104) Can not open backing device." % res["minor"], 10)
    st["attached"] = True
    d = st["disk"]
    if res["fencing"] == "dont-care" and d == "Consistent":
        d = "UpToDate"
    elif res["fencing"] != "dont-care" and d == "UpToDate":
        d = "Consistent"
    st["disk"] = d
    me = [n for n in res["nodes"] if res["node"][n] is st][0]
    for peer in peers_of(res, me):
        P = res["node"][peer]
        if connected(res, me, peer) and P["attached"] and P["disk"] == "UpToDate":
            if st["uuid"] != P["uuid"] or d != "UpToDate":
                start_sync(res, peer, me, now)


# ----------------------------------------------------------------------------- views

def peer_view(res, me, peer, now):
    """Connection as seen from `me`: (cstate, peer_role, repl, peer_disk, done)."""
    M, P = res["node"][me], res["node"][peer]
    if connected(res, me, peer):
        sync = res["conn"].get("sync")
        repl, done = "Established", None
        if sync:
            repl = "SyncSource" if sync["source"] == me else "SyncTarget"
            done = sync_done(res, now)
        pdisk = P["disk"] if P["attached"] else "Diskless"
        return "Connected", P["role"], repl, pdisk, done
    cstate = "Connecting" if M["net"] else "StandAlone"
    return cstate, "Unknown", "Off", (M.get("fenced") or {}).get(peer, "DUnknown"), None


def promotion_score(res, me, now):
    M = res["node"][me]
    if not M["attached"]:
        return 0
    score = 10000
    if M["disk"] == "UpToDate":
        score += 100
    replicas = 1 if M["disk"] == "UpToDate" else 0
    for p in peers_of(res, me):
        if peer_view(res, me, p, now)[3] == "UpToDate":
            replicas += 1
    return score + replicas


def may_promote(res, me, now):
    M = res["node"][me]
    if M["role"] == "Primary" or local_disk(M) != "UpToDate":
        return False
    return all(peer_view(res, me, p, now)[1] != "Primary" for p in peers_of(res, me))


def has_quorum(res, me):
    """drbd_state.c calc_quorum for this node's volume (quorum off: always true).  Voters are
    the diskful nodes; an absent peer whose disk is known Outdated (fenced, or it left
    gracefully as a Secondary: MDF_PEER_OUTDATED) is no voter when no voter is unknown; a
    connected diskless client breaks an even tie."""
    if res.get("quorum", "off") == "off":
        return True
    M = res["node"][me]
    up_to_date = present = outdated = unknown = diskless = 0
    if M["attached"]:
        if M["disk"] == "UpToDate":
            up_to_date += 1
        else:
            present += 1
    elif M.get("client"):
        diskless += 1
    else:
        unknown += 1
    for p in peers_of(res, me):
        P = res["node"][p]
        if connected(res, me, p):
            if P.get("client"):
                diskless += 1
            elif P["attached"] and P["disk"] == "UpToDate":
                up_to_date += 1
            elif P["attached"]:
                present += 1
            else:
                unknown += 1
        elif P.get("client"):
            continue                    # an absent client is no voter
        elif peer_view(res, me, p, time.time())[3] in ("Outdated", "Inconsistent") or \
                p in (M.get("outdated_peers") or ()):
            outdated += 1
        else:
            unknown += 1
    voters = outdated + unknown + up_to_date + present if unknown else up_to_date + present
    need = quorum_at(res["quorum"], voters)
    if up_to_date + present >= need:
        return True
    # an even number of voters, one vote short: connected diskless nodes break the tie
    return voters != 0 and voters % 2 == 0 and up_to_date + present == need - 1 and \
        diskless >= quorum_at("majority", diskless) and diskless > 0


def quorum_at(setting, voters):
    if setting == "majority":
        return voters // 2 + 1
    if setting == "all":
        return voters
    return int(setting)


def quorum_suspends(res, me):
    """A Primary without quorum and on-no-quorum suspend-io has its I/O suspended."""
    M = res["node"][me]
    return M["up"] and M["role"] == "Primary" and not has_quorum(res, me) and \
        res.get("on_no_quorum", "suspend-io") == "suspend-io"


def peer_is_client(res, me, peer):
    """peer-client: known only while connected (the peer says it is intentionally diskless)."""
    return connected(res, me, peer) and bool(res["node"][peer].get("client"))


def yn(v):
    return "yes" if v else "no"


def suspension(M):
    """(user, no-data, fencing, quorum) I/O suspension flags of a node's resource."""
    return (bool(M.get("susp_user")), False, bool(M.get("susp_fencing")),
            bool(M.get("susp_quorum")))


def suspended_words(M):
    """drbd-utils drbdsetup.c susp_str: "no" or the reasons, comma separated."""
    words = [w for w, on in zip(("user", "no-data", "fencing", "quorum"), suspension(M)) if on]
    return ",".join(words) or "no"


# ----------------------------------------------------------------------------- actions

def state_failure(res, rc_code_text, mode, cmd):
    rc, code, text = rc_code_text
    who = res["name"] if mode == "9" else str(res["minor"])
    return Failure("%s: State change failed: (%d) %s" % (who, code, text), rc)


def unknown_resource(res):
    if res["mode"] == "9":
        return Failure("%s: Failure: (158) Unknown resource\nadditional info from kernel:\n"
                       "unknown resource" % res["name"], 10)
    return Failure("%d: Failure: (127) Device minor not allocated\nadditional info from kernel:\n"
                   "unknown minor" % res["minor"], 10)


def act_primary(res, me, now, force=False):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if M["role"] == "Primary":
        return
    for p in peers_of(res, me):
        if connected(res, me, p) and res["node"][p]["role"] == "Primary" \
                and not res["allow_two_primaries"]:
            raise state_failure(res, SS_TWO_PRIMARIES, res["mode"], "primary")
    disk = local_disk(M)
    if not has_quorum(res, me) and not force and (disk == "UpToDate" or any(
            connected(res, me, p) and peer_view(res, me, p, now)[3] == "UpToDate"
            for p in peers_of(res, me))):
        raise state_failure(res, SS_NO_QUORUM, res["mode"], "primary")
    if res["fencing"] != "dont-care" and disk in ("UpToDate", "Consistent"):
        # drbd_state.c is_valid_state: SS_PRIMARY_NOP while a peer is neither connected nor
        # known Outdated; drbd_nl.c drbd_set_role then runs fence-peer once and retries
        unknown = [p for p in peers_of(res, me) if not connected(res, me, p)
                   and peer_view(res, me, p, now)[3] not in ("Outdated", "Inconsistent")]
        if unknown and res["name"] not in FENCING_TRIED:
            raise NeedFencing(res["name"], me, unknown)
        disk = local_disk(M)        # fence-peer exit 6 outdated us
        if unknown and not force:
            raise state_failure(res, SS_PRIMARY_NOP if disk == "UpToDate"
                                else SS_NO_UP_TO_DATE_DISK, res["mode"], "primary")
        lonely = [p for p in peers_of(res, me) if not connected(res, me, p)]
        if disk == "Consistent" and lonely and len(lonely) == len(peers_of(res, me)) \
                and not unknown:
            M["disk"] = disk = "UpToDate"   # every peer fenced: CS_FP_LOCAL_UP_TO_DATE
    peer_uptodate = any(connected(res, me, p) and peer_view(res, me, p, now)[3] == "UpToDate"
                        for p in peers_of(res, me))
    if disk != "UpToDate" and not peer_uptodate:
        if force and M["attached"] and disk in ("Consistent", "Outdated", "Inconsistent"):
            M["disk"] = "UpToDate"
            for p in peers_of(res, me):
                if connected(res, me, p) and res["node"][p]["attached"] and \
                        res["node"][p]["disk"] != "UpToDate" and not res["conn"].get("sync"):
                    start_sync(res, me, p, now)
        else:
            raise state_failure(res, SS_NO_UP_TO_DATE_DISK, res["mode"], "primary")
    open_device_for_primary(res, M)
    M["role"] = "Primary"
    if not any(connected(res, me, p) for p in peers_of(res, me)):
        arm_new_current_uuid(res, M)


def act_secondary(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if M["role"] == "Secondary":
        return
    if device_in_use(M):
        raise state_failure(res, SS_DEVICE_IN_USE, res["mode"], "secondary")
    # /dev/drbdN stays until down (DRBD 9 keeps the minor; only writes are refused)
    set_device_read_only(M, True)
    M["role"] = "Secondary"
    disarm_new_current_uuid(M)


def leave_gracefully(res, me):
    """A Secondary that disconnects on purpose is recorded as outdated by the peers it
    leaves (MDF_PEER_OUTDATED): they keep quorum ("if you disconnect all secondary nodes
    gracefully a single primary continues to operate", drbd.conf quorum)."""
    M = res["node"][me]
    if M["role"] != "Secondary":
        return
    for p in peers_of(res, me):
        if connected(res, me, p):
            gone = res["node"][p].setdefault("outdated_peers", [])
            if me not in gone:
                gone.append(me)


def act_down(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        return
    act_secondary(res, me, now)
    leave_gracefully(res, me)
    detach_device(res, M)
    M.update(up=False, attached=False, net=False, discard=False, standalone_reason=None)
    reconcile(res, now)


def act_up(res, me, now, skip_net=False, adjust=True):
    M = res["node"][me]
    if M["up"] and not adjust:
        raise Failure("%s: Failure: (161) Minor or volume exists already (delete it first)"
                      % res["name"], 10)
    M["up"] = True
    reconcile(res, now)
    if not M["attached"]:
        do_attach(res, M, now)
    if not skip_net and not M["net"]:
        M["net"] = True
    reconcile(res, now)


def act_connect(res, me, now, discard=False):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if M["net"]:
        raise Failure("%s: Failure: (125) Device has a net-config (use disconnect first)"
                      % res["name"], 10)
    M["net"] = True
    M["discard"] = discard
    reconcile(res, now)


def act_disconnect(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    leave_gracefully(res, me)
    M["net"] = False
    M["discard"] = False
    reconcile(res, now)


def act_outdate(res, me, now):
    M = res["node"][me]
    if M["up"]:
        if M["role"] == "Primary":
            raise state_failure(res, SS_NO_UP_TO_DATE_DISK, res["mode"], "outdate")
        if any(connected(res, me, p) for p in peers_of(res, me)):
            raise state_failure(res, SS_CONNECTED_OUTDATES, res["mode"], "outdate")
    if M["disk"] in ("UpToDate", "Consistent"):
        M["disk"] = "Outdated"


def act_suspend_io(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    M["susp_user"] = True


def act_resume_io(res, me, now):
    """drbd_nl.c drbd_adm_resume_io: a pending new current UUID is made now, and every
    suspension (user, no-data, fencing, quorum) ends."""
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if M.get("new_cur_uuid"):
        disarm_new_current_uuid(M)
        new_generation(M)
    M["susp_user"] = M["susp_fencing"] = False


def act_attach(res, me, now):
    if not res["node"][me]["up"]:
        raise unknown_resource(res)
    do_attach(res, res["node"][me], now)


def act_detach(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    M["attached"] = False


def wait_connect(name, me, timeout):
    deadline = time.time() + timeout if timeout > 0 else None
    while True:
        with Store() as store:
            res = store.load(name)
            now = time.time()
            reconcile(res, now)
            store.save_all()
            if not res["node"][me]["up"]:
                return 10
            if any(connected(res, me, p) for p in peers_of(res, me)) or not peers_of(res, me):
                return 0
        if deadline is not None and time.time() >= deadline:
            return 5
        time.sleep(0.1)
