"""DRBD emulator: drop-in ``drbdadm`` / ``drbdsetup`` for a machine without the DRBD module.

Test tooling only (never installed as an agent).  ``bin/drbdadm``, ``bin/drbdsetup`` and
``bin/drbdemu`` are thin launchers for the three ``main_*`` functions at the bottom.

Model
-----
* Every resource lives in ``$DRBDEMU_STATE/<res>.json`` (shared by all nodes of a lab, guarded
  by ``flock`` on ``$DRBDEMU_STATE/.lock``).  The local node is ``$DRBDEMU_NODE`` or the UTS
  host name, so each lab node (own UTS namespace) sees its own side of the same resource.
* There is no daemon: every command first *reconciles* the resource (handshake when both sides
  want a connection and the link is up, disconnect when one of them went away, resync progress
  by wall clock), then acts, then saves the state if it changed.
* Data: each node owns an image file.  While connected both nodes point at one image (the
  moral equivalent of protocol C); on disconnect the node that is not holding the image through
  a loop device gets a sparse copy; on a resync the target adopts the source's image; after a
  split brain both keep their own until one side connects with ``--discard-my-data``.
* Primary attaches a loop device to the node's image and ``mknod``s the resource's device path
  with the loop's major:minor, so ``mkfs``/``mount`` of ``/dev/drbdN`` really work.
* Generation UUIDs decide the sync direction: a Primary that is (or becomes) disconnected starts
  a new data generation; the side whose history contains the other's current UUID is ahead;
  neither contains the other's but they share an ancestor -> split brain -> both StandAlone.
  The first new UUID since the peer was last seen keeps the old one as the bitmap UUID;
  ``drbdsetup get-gi``/``show-gi`` print (current, bitmap, two history UUIDs, flags).
* Handlers: a split brain queues drbd.conf's split-brain handler (``--split-brain-handler``)
  for each node; it runs through /bin/sh with DRBD's DRBD_* environment (and DRBDEMU_NODE)
  after the state lock is released, and its exit status is logged as a "response helper".

Output formats follow drbd-utils 9.22 (see /work/shared/reference/drbd.md).
"""

import json
import os
import sys
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
    """Writes reach the data only on a Primary that has quorum and, if diskless, a peer."""
    st = res["node"][name]
    if not (st["up"] and st["role"] == "Primary") or not has_quorum(res, name):
        return False
    return not st.get("client") or any(connected(res, name, p) for p in peers_of(res, name))


def settle_io(res):
    """Quorum lost or regained: a Primary without quorum suspends its I/O (on-no-quorum
    suspend-io: suspended:quorum) or fails it (io-error); the device stands in for both by
    refusing writes until quorum returns."""
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


def format_gi(res, me, peer, now, v9):
    """One get-gi line: drbd-utils 9.22 dt_print_v9_uuids (4 UUIDs, 7 device flags, 5 peer
    flags) or, for 8.4, dt_print_uuids (4 UUIDs, 7 flags)."""
    M = res["node"][me]
    disk = M["disk"] if M["attached"] else "Diskless"
    conn = bool(peer) and connected(res, me, peer)
    consistent = disk in ("UpToDate", "Consistent", "Outdated")
    primary = M["role"] == "Primary"
    line = "%s:%s:%s:%s:" % generation_ids(M)
    if v9:
        P = res["node"][peer] if peer else None
        peer_outdated = bool(P) and P["disk"] in ("Outdated", "Inconsistent")
        flags = [consistent, disk == "UpToDate", primary, False, not primary, False, False,
                 conn, peer_outdated, res["fencing"] != "dont-care", False, bool(P)]
    else:
        flags = [consistent, disk == "UpToDate", primary, conn, False, False, False]
    return line + ":".join("1" if f else "0" for f in flags) + "\n"


V9_GI_HEAD = (
    "\n"
    "       +--<  Current data generation UUID  >-\n"
    "       |               +--<  Bitmap's base data generation UUID  >-\n"
    "       |               |                 +--<  younger history UUID  >-\n"
    "       |               |                 |         +-<  older history  >-\n"
    "       V               V                 V         V\n")
V9_GI_TAIL = (
    "                                                                    ^ ^ ^ ^ ^ ^ ^ ^ ^ ^ ^ ^\n"
    "                                      -<  Data consistency flag  >--+ | | | | | | | | | | |\n"
    "                             -<  Data was/is currently up-to-date  >--+ | | | | | | | | | |\n"
    "                                  -<  Node was/is currently primary  >--+ | | | | | | | | |\n"
    " -<  This node was a crashed primary, and has not seen its peer since  >--+ | | | | | | | |\n"
    "             -<  The activity-log was applied, the disk can be attached  >--+ | | | | | | |\n"
    "        -<  The activity-log was disabled, peer is completely out of sync  >--+ | | | | | |\n"
    "                              -<  This node was primary when it lost quorum  >--+ | | | | |\n"
    "                                          -<  Node was/is currently connected  >--+ | | | |\n"
    "                              -<  The peer's disk was out-dated or inconsistent  >--+ | | |\n"
    "                                 -<   A fence policy other the dont-care was used  >--+ | |\n"
    "                  -<  Node was in the progress of marking all blocks as out of sync  >--+ |\n"
    "                     -<  At least once we saw this node with a backing device attached >--+\n"
    "\n")
V84_GI_TAIL = (
    "                                                                    ^ ^ ^ ^ ^ ^ ^\n"
    "                                      -<  Data consistency flag  >--+ | | | | | |\n"
    "                             -<  Data was/is currently up-to-date  >--+ | | | | |\n"
    "                                  -<  Node was/is currently primary  >--+ | | | |\n"
    "                                  -<  Node was/is currently connected  >--+ | | |\n"
    "         -<  Node was in the progress of setting all bits in the bitmap  >--+ | |\n"
    "                        -<  The peer's disk was out-dated or inconsistent  >--+ |\n"
    "      -<  This node was a crashed primary, and has not seen its peer since   >--+\n"
    "\n")


def gi_output(res, me, now, args, pretty):
    """drbdsetup get-gi/show-gi: v9 `<res> <peer-node-id> <volume>`, 8.4 `<minor>`."""
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if not M["attached"]:
        raise Failure("%d: Failure: (112) Device has no disk" % res["minor"], 10)
    v9 = res["mode"] == "9"
    peer = None
    peers = peers_of(res, me)
    if v9:
        if len(args) < 4:
            raise Failure("USAGE: drbdsetup %s {resource} {peer_node_id} {volume}" % args[0], 20)
        peer = next((p for p in peers if str(node_id(res, p)) == args[2]), None)
        if peer is None or args[3] != "0":
            raise Failure("%s: Failure: (162) Invalid configuration request" % res["name"], 10)
    elif peers:
        peer = peers[0]
    line = format_gi(res, me, peer, now, v9)
    if not pretty:
        return line
    return V9_GI_HEAD + line + (V9_GI_TAIL if v9 else V84_GI_TAIL)


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


def format_events2(res, me, now, statistics=False):
    M = res["node"][me]
    if not M["up"]:
        return ""
    name = res["name"]
    out = []
    line = "exists resource name:%s role:%s suspended:%s force-io-failures:no" % (
        name, M["role"], suspended_words(M))
    if statistics:
        line += " write-ordering:flush"
    line += " may_promote:%s promotion_score:%d" % (yn(may_promote(res, me, now)),
                                                     promotion_score(res, me, now))
    out.append(line)
    peers = peers_of(res, me)
    views = {p: peer_view(res, me, p, now) for p in peers}
    for p in peers:
        cstate, prole = views[p][:2]
        line = "exists connection name:%s peer-node-id:%d conn-name:%s connection:%s role:%s" % (
            name, node_id(res, p), p, cstate, prole)
        if statistics:
            line += " congested:no ap-in-flight:0 rs-in-flight:0"
        out.append(line)
    disk = local_disk(M)
    line = "exists device name:%s volume:0 minor:%d backing_dev:%s disk:%s client:%s quorum:%s" % (
        name, res["minor"], image_path(res, M["image"]) if M["attached"] else "none", disk,
        yn(M.get("client")), yn(has_quorum(res, me)))
    if statistics:
        line += (" size:%d read:0 written:0 al-writes:0 bm-writes:0 upper-pending:0"
                 " lower-pending:0 al-suspended:no blocked:no" % res["size_kib"])
    out.append(line)
    for p in peers:
        cstate, prole, repl, pdisk, done = views[p]
        line = ("exists peer-device name:%s peer-node-id:%d conn-name:%s volume:0 replication:%s"
                " peer-disk:%s peer-client:%s resync-suspended:no" % (
                    name, node_id(res, p), p, repl, pdisk, yn(peer_is_client(res, me, p))))
        if done is not None:
            line += " done:%.2f" % done
        if statistics:
            line += " received:0 sent:0 out-of-sync:%d pending:0 unacked:0" % out_of_sync(res, done)
        out.append(line)
    addrs = res.get("addresses") or {}
    for p in peers:
        if me in addrs and p in addrs:
            out.append("exists path name:%s peer-node-id:%d conn-name:%s local:ipv4:%s:%d "
                       "peer:ipv4:%s:%d established:%s" % (
                           name, node_id(res, p), p, addrs[me], res["port"], addrs[p],
                           res["port"], yn(views[p][0] == "Connected")))
    return "".join(l + "\n" for l in out)


def out_of_sync(res, done):
    if done is None:
        return 0
    return int(res["size_kib"] * (100.0 - done) / 100.0)


def format_status(res, me, now):
    M = res["node"][me]
    head = "%s role:%s" % (res["name"], M["role"])
    if any(suspension(M)):
        head += " suspended:%s" % suspended_words(M)
    out = [head, "  disk:%s" % local_disk(M) + client_word(M) +
           ("" if has_quorum(res, me) else " quorum:no")]
    for p in peers_of(res, me):
        cstate, prole, repl, pdisk, done = peer_view(res, me, p, now)
        if cstate == "Connected":
            out.append("  %s role:%s" % (p, prole))
        else:
            out.append("  %s connection:%s" % (p, cstate))
        # drbd-utils peer_device_status: a peer device line once anything is known of it
        if repl == "Off" and pdisk == "DUnknown":
            continue
        line = "    "
        if repl not in ("Off", "Established"):
            line += "replication:%s " % repl
        line += "peer-disk:%s" % pdisk + peer_client_word(res, me, p, pdisk)
        if done is not None:
            line += " done:%.2f" % done
        out.append(line)
    return "\n".join(out) + "\n\n"


def client_word(M):
    """drbd-utils device_status: a Diskless disk says whether it is intentionally so."""
    return " client:%s" % yn(M.get("client")) if local_disk(M) == "Diskless" else ""


def peer_client_word(res, me, peer, pdisk):
    return " peer-client:%s" % yn(peer_is_client(res, me, peer)) if pdisk == "Diskless" else ""


def _wrap(indent, main, stats=(), width=80):
    """drbdsetup status --verbose layout: an object's tokens wrap at 80 columns with the
    continuation indented by 4; its statistics always start on a continuation line."""
    lines, cur = [], indent + main[0]
    for t in main[1:]:
        if len(cur) + 1 + len(t) > width:
            lines.append(cur)
            cur = indent + "    " + t
        else:
            cur += " " + t
    if stats:
        lines.append(cur)
        cur = indent + "    " + stats[0]
        for t in stats[1:]:
            if len(cur) + 1 + len(t) > width:
                lines.append(cur)
                cur = indent + "    " + t
            else:
                cur += " " + t
    lines.append(cur)
    return lines


def format_status_verbose(res, me, now, statistics):
    M = res["node"][me]
    main = [res["name"], "node-id:%d" % node_id(res, me), "role:%s" % M["role"],
            "suspended:%s" % suspended_words(M), "force-io-failures:no"]
    out = _wrap("", main, ["write-ordering:flush"] if statistics else ())
    main = ["volume:0", "minor:%d" % res["minor"], "disk:%s" % local_disk(M) + client_word(M),
            "backing_dev:%s" % (image_path(res, M["image"]) if M["attached"] else "none"),
            "quorum:%s" % yn(has_quorum(res, me))]
    stats = ["size:%d" % res["size_kib"], "read:0", "written:0", "al-writes:0", "bm-writes:0",
             "upper-pending:0", "lower-pending:0", "al-suspended:no", "blocked:no"]
    out += _wrap("  ", main, stats if statistics else ())
    for p in peers_of(res, me):
        cstate, prole, repl, pdisk, done = peer_view(res, me, p, now)
        main = [p, "node-id:%d" % node_id(res, p), "connection:%s" % cstate,
                "role:%s" % prole, "congested:no"]
        out += _wrap("  ", main, ["ap-in-flight:0", "rs-in-flight:0"] if statistics else ())
        main = ["volume:0", "replication:%s" % repl,
                "peer-disk:%s" % pdisk + peer_client_word(res, me, p, pdisk)]
        if done is not None:
            main.append("done:%.2f" % done)
        main.append("resync-suspended:no")
        stats = ["received:0", "sent:0", "out-of-sync:%d" % out_of_sync(res, done),
                 "pending:0", "unacked:0"]
        if done is not None:
            stats += ["dbdt1:0.24", "eta:%d" % max(
                0, int(float(res["resync_seconds"]) * (100 - done) / 100))]
        out += _wrap("    ", main, stats if statistics else ())
    return "\n".join(out) + "\n\n"


def _jb(v):
    return "true" if v else "false"


def format_status_json_one(res, me, now):
    M = res["node"][me]
    L = ['{', '  "name": "%s",' % res["name"], '  "node-id": %d,' % node_id(res, me),
         '  "role": "%s",' % M["role"]]
    flags = suspension(M)
    for k, v in zip(("suspended", "suspended-user", "suspended-no-data", "suspended-fencing",
                     "suspended-quorum", "force-io-failures"), (any(flags),) + flags + (False,)):
        L.append('  "%s": %s,' % (k, _jb(v)))
    L += ['  "write-ordering": "flush",', '  "devices": [', '    {',
          '      "volume": 0,', '      "minor": %d,' % res["minor"],
          '      "disk-state": "%s",' % local_disk(M),
          '      "client": %s,' % _jb(M.get("client")),
          '      "quorum": %s,' % _jb(has_quorum(res, me)), '      "size": %d,' % res["size_kib"],
          '      "read": 0,', '      "written": 0,', '      "al-writes": 0,',
          '      "bm-writes": 0,', '      "upper-pending": 0,', '      "lower-pending": 0',
          '    } ],', '  "connections": [']
    conns = []
    for p in peers_of(res, me):
        cstate, prole, repl, pdisk, done = peer_view(res, me, p, now)
        C = ['    {', '      "peer-node-id": %d,' % node_id(res, p), '      "name": "%s",' % p,
             '      "connection-state": "%s", ' % cstate, '      "congested": false,',
             '      "peer-role": "%s",' % prole, '      "ap-in-flight": 0,',
             '      "rs-in-flight": 0,', '      "peer_devices": [', '        {',
             '          "volume": 0,', '          "replication-state": "%s",' % repl,
             '          "peer-disk-state": "%s",' % pdisk,
             '          "peer-client": %s,' % _jb(peer_is_client(res, me, p)),
             '          "resync-suspended": "no",', '          "received": 0,',
             '          "sent": 0,', '          "out-of-sync": %d,' % out_of_sync(res, done),
             '          "pending": 0,', '          "unacked": 0,',
             '          "has-sync-details": %s,' % _jb(done is not None),
             '          "has-online-verify-details": false,']
        if done is None:
            C.append('          "percent-in-sync": 100.00')
        else:
            total = res["size_kib"] * 2
            C += ['          "percent-in-sync": %.2f,' % done,
                  '          "rs-total": %d,' % total, '          "rs-dt-start-ms": 0,',
                  '          "rs-paused-ms": 0,', '          "rs-dt0-ms": 0,',
                  '          "rs-db0-sectors": 0,', '          "rs-dt1-ms": 100,',
                  '          "rs-db1-sectors": 50,', '          "rs-failed": 0,',
                  '          "rs-same-csum": 0,', '          "want": 0.00,',
                  '          "db0/dt0 [MiB/s]": 0.00,', '          "db1/dt1 [MiB/s]": 0.24,',
                  '          "estimated-seconds-to-finish": %d,' % max(
                      0, int(float(res["resync_seconds"]) * (100 - done) / 100)),
                  '          "db/dt [MiB/s]": 1.00,',
                  '          "percent-resync-done": %.2f' % done]
        C += ['        } ]', '    }']
        conns.append("\n".join(C))
    if conns:
        L.append(",\n".join(conns) + " ]")
        L[-1] = L[-1]
    else:
        L[-1] = '  "connections": [ ]'
    L.append('}')
    return "\n".join(L)


def format_status_json(resources, me, now):
    objs = [format_status_json_one(r, me, now) for r in resources]
    if not objs:
        return "[\n]\n"
    return "[\n" + ",\n".join(objs) + "\n]\n"


def cstate84(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        return "Unconfigured"
    p = peers_of(res, me)
    if not p:
        return "StandAlone"
    cstate, prole, repl, pdisk, done = peer_view(res, me, p[0], now)
    if cstate == "Connected":
        return "Connected" if repl == "Established" else repl
    return "WFConnection" if cstate == "Connecting" else "StandAlone"


def peer84(res, me, now):
    p = peers_of(res, me)
    if not p:
        return "Unknown", "DUnknown", None
    v = peer_view(res, me, p[0], now)
    return v[1], v[3], v[4]


def format_sh_status(res, me, now):
    M = res["node"][me]
    head = "_minor=%d\n_res_name=%s\n_volume=0\n" % (res["minor"], res["name"])
    if not M["up"]:
        return head + "_known=Unconfigured\n\n_sh_status_process\n\n\n"
    prole, pdisk, done = peer84(res, me, now)
    return head + ("_known=Configured\n\n_cstate=%s\n_role=%s\n_peer=%s\n_disk=%s\n_pdsk=%s\n\n"
                   "_flags_susp=\n_flags_aftr_isp=\n_flags_peer_isp=\n_flags_user_isp=\n\n"
                   "_resynced_percent=%s\n\n_sh_status_process\n\n\n") % (
        cstate84(res, me, now), M["role"], prole, local_disk(M), pdisk,
        "" if done is None else "%.1f" % done)


def format_proc_drbd(resources, me, now):
    mine = [r for r in resources if me in r["nodes"]]
    mode = mine[0]["mode"] if mine else "9"
    ver, _, api = KERNEL_VERSION[mode]
    out = ["version: %s-1 (api:%s)" % (ver, api),
           "GIT-hash: %s build by drbdemu@localhost, 2024-01-01 00:00:00" % GIT_HASH]
    if mode == "9":
        out.append("Transports (api:18): tcp (%s)" % ver)
        return "\n".join(out) + "\n"
    for res in sorted(mine, key=lambda r: r["minor"]):
        M = res["node"][me]
        if not M["up"] or res["mode"] != "8.4":
            continue
        prole, pdisk, done = peer84(res, me, now)
        out.append(" %d: cs:%s ro:%s/%s ds:%s/%s C r-----" % (
            res["minor"], cstate84(res, me, now), M["role"], prole, local_disk(M), pdisk))
        oos = out_of_sync(res, done)
        out.append("    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:%d" % oos)
        if done is not None:
            x = int(done * 10) // 50
            bar = "=" * max(x - 1, 0) + ">" + "." * (20 - max(x, 1))
            left = max(0, int(float(res["resync_seconds"]) * (100 - done) / 100))
            out.append("\t[%s] sync'ed: %.1f%% (%d/%d)K" % (bar, done, oos, res["size_kib"]))
            out.append("\tfinish: %d:%02d:%02d speed: 4,728 (6,616) want: 51,200 K/sec" % (
                left // 3600, left // 60 % 60, left % 60))
    return "\n".join(out) + "\n"


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


# ----------------------------------------------------------------------------- admin (drbdemu)

def parse_size(text):
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    t = text.strip().upper().rstrip("B").rstrip("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t) // 1024


def admin_init(store, args):
    import argparse
    ap = argparse.ArgumentParser(prog="drbdemu init")
    ap.add_argument("name")
    ap.add_argument("--nodes", required=True)
    ap.add_argument("--minor", type=int, default=0)
    ap.add_argument("--size", default="64M")
    ap.add_argument("--mode", choices=("9", "8.4"), default="9")
    ap.add_argument("--device")
    ap.add_argument("--allow-two-primaries", action="store_true")
    ap.add_argument("--fencing", default="dont-care",
                    choices=("dont-care", "resource-only", "resource-and-stonith"))
    ap.add_argument("--resync-seconds", type=float, default=1.0)
    ap.add_argument("--inconsistent", action="store_true",
                    help="start without initial sync: both disks Inconsistent")
    ap.add_argument("--addresses", help="node=ip,... for the path lines of events2")
    ap.add_argument("--port", type=int, default=7789)
    ap.add_argument("--split-brain-handler", metavar="COMMAND",
                    help="drbd.conf handlers { split-brain COMMAND; } (run with /bin/sh -c)")
    ap.add_argument("--fence-peer-handler", metavar="COMMAND",
                    help="drbd.conf handlers { fence-peer COMMAND; }")
    ap.add_argument("--quorum", default="off",
                    help="options { quorum off|majority|all|N; }")
    ap.add_argument("--on-no-quorum", default="suspend-io", choices=("suspend-io", "io-error"))
    ap.add_argument("--diskless", metavar="NODE,...", default="",
                    help="nodes configured with `disk none` (diskless clients)")
    o = ap.parse_args(args)
    if not o.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise Failure("drbdemu: bad resource name %r" % o.name, 2)
    if store.load(o.name):
        raise Failure("drbdemu: resource %s exists (destroy it first)" % o.name, 1)
    nodes = [n for n in o.nodes.split(",") if n]
    if not 1 <= len(nodes) <= 2:
        raise Failure("drbdemu: 1 or 2 nodes supported", 2)
    size = parse_size(o.size)
    uuid = new_uuid()
    res = {"name": o.name, "mode": o.mode, "minor": o.minor, "nodes": nodes,
           "device": o.device or "/dev/drbd%d" % o.minor, "size_kib": size,
           "allow_two_primaries": o.allow_two_primaries, "fencing": o.fencing,
           "resync_seconds": o.resync_seconds, "link_cut": False, "conn": None,
           "quorum": o.quorum, "on_no_quorum": o.on_no_quorum,
           "addresses": dict(kv.split("=", 1) for kv in o.addresses.split(",")) if o.addresses
           else {}, "port": o.port, "events": [], "node": {},
           "handlers": {k: v for k, v in (("split-brain", o.split_brain_handler),
                                          ("fence-peer", o.fence_peer_handler)) if v}}
    for n in nodes:
        img = "%s.%s.img" % (o.name, n)
        with open(image_path(res, img), "wb") as f:
            f.truncate(size * 1024)
        res["node"][n] = {"up": False, "attached": False, "failed": False, "net": False,
                          "discard": False, "standalone_reason": None, "role": "Secondary",
                          "disk": "Inconsistent" if o.inconsistent else "UpToDate",
                          "uuid": uuid, "history": [], "image": img, "loop": None, "rdev": None,
                          "client": n in o.diskless.split(",")}
    store.create(res)


def admin(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: drbdemu init RES --nodes A,B [--minor N] [--size 64M] [--mode 9|8.4]\n"
              "               [--device PATH] [--allow-two-primaries] [--fencing POLICY]\n"
              "               [--resync-seconds S] [--inconsistent] [--addresses A=IP,B=IP]\n"
              "               [--split-brain-handler COMMAND] [--fence-peer-handler COMMAND]\n"
              "               [--diskless NODE,...] [--quorum majority|all|N]\n"
              "               [--on-no-quorum suspend-io|io-error]\n"
              "       drbdemu cut|heal RES\n"
              "       drbdemu fail-disk|repair-disk RES [NODE]\n"
              "       drbdemu unconfigure RES [NODE]  (gone from NODE's drbd.conf: drbdadm\n"
              "                                       refuses it, the kernel keeps it up)\n"
              "       drbdemu crash NODE [RES...]\n"
              "       drbdemu set RES KEY=VALUE...   (resync_seconds, allow_two_primaries, fencing,\n"
              "                                       quorum, on_no_quorum,\n"
              "                                       split_brain_handler, fence_peer_handler)\n"
              "       drbdemu status [RES]           (JSON)\n"
              "       drbdemu image RES [NODE]       (path of NODE's current data image)\n"
              "       drbdemu destroy RES            (release loops, delete state and images)")
        return 0
    cmd, args = argv[0], argv[1:]
    with Store() as store:
        now = time.time()
        if cmd == "init":
            admin_init(store, args)
            store.save_all()
            return 0
        if cmd == "crash":
            node = args[0]
            for name in args[1:] or store.names():
                res = store.load(name)
                if not res or node not in res["nodes"]:
                    continue
                reconcile(res, now)
                M = res["node"][node]
                was_up = M["up"]
                M.update(up=False, attached=False, net=False, discard=False,
                         standalone_reason=None)
                reconcile(res, now)      # the peer loses the connection; images split
                detach_device(res, M)
                M["role"] = "Secondary"
                if was_up:
                    log_event(res, node, "crash")
            store.save_all()
            return 0
        if not args and cmd != "status":
            raise Failure("drbdemu %s: resource name required" % cmd, 2)
        names = args[:1] if args else store.names()
        resources = []
        for name in names:
            res = store.load(name)
            if res is None:
                raise Failure("drbdemu: no such resource %s" % name, 1)
            reconcile(res, now)
            resources.append(res)
        res = resources[0] if resources else None
        node = args[1] if len(args) > 1 else local_node()
        if cmd == "cut":
            res["link_cut"] = True
        elif cmd == "heal":
            res["link_cut"] = False
        elif cmd == "fail-disk":
            M = res["node"][node]
            M["attached"], M["failed"] = False, True
        elif cmd == "unconfigure":
            res.setdefault("unconfigured", [])
            if node not in res["unconfigured"]:
                res["unconfigured"].append(node)
        elif cmd == "repair-disk":
            M = res["node"][node]
            M["failed"] = False
            M["disk"] = "Inconsistent"
        elif cmd == "set":
            for kv in args[1:]:
                k, v = kv.split("=", 1)
                if k == "resync_seconds":
                    res[k] = float(v)
                elif k == "allow_two_primaries":
                    res[k] = v.lower() in ("1", "yes", "true")
                elif k in ("fencing", "quorum", "on_no_quorum"):
                    res[k] = v
                elif k in ("split_brain_handler", "fence_peer_handler"):
                    helper = k[:-len("_handler")].replace("_", "-")
                    res.setdefault("handlers", {})[helper] = v or None
                else:
                    raise Failure("drbdemu set: unknown key %s" % k, 2)
        elif cmd == "status":
            print(json.dumps(resources if len(resources) != 1 else resources[0], indent=1,
                             sort_keys=True))
        elif cmd == "image":
            print(image_path(res, res["node"][node]["image"]))
        elif cmd == "destroy":
            for n in res["nodes"]:
                detach_device(res, res["node"][n])
            images = {res["node"][n]["image"] for n in res["nodes"]}
            for f in os.listdir(store.dir):
                if f.startswith(res["name"] + ".") and f.endswith(".img"):
                    images.add(f)
            for img in images:
                try:
                    os.unlink(image_path(res, img))
                except FileNotFoundError:
                    pass
            store.remove(res["name"])
        else:
            raise Failure("drbdemu: unknown command %s" % cmd, 2)
        reconcile(res, time.time()) if res and cmd != "destroy" else None
        store.save_all()
    return 0


# ----------------------------------------------------------------------------- drbdsetup

def find_resource(store, obj, me):
    """Resolve a drbdsetup object (resource name, minor, or device path) for this node."""
    for name in store.names():
        res = store.load(name)
        if me not in res["nodes"]:
            continue
        if obj in (name, str(res["minor"]), res["device"]):
            return res
    return None


def drbdsetup(argv):
    me = local_node()
    opts = [a for a in argv if a.startswith("-")]
    args = [a for a in argv if not a.startswith("-")]
    if not args:
        raise Failure("USAGE: drbdsetup command {arguments} [options]", 20)
    cmd = args[0]
    # 8.4 old syntax: drbdsetup /dev/drbd0 sh-status
    if (cmd.startswith("/") or cmd.isdigit()) and len(args) > 1:
        args = [args[1], args[0]] + args[2:]
        cmd = args[0]
    with Store() as store:
        now = time.time()
        if cmd in ("events2", "status") and (len(args) < 2 or args[1] == "all"):
            targets = [store.load(n) for n in store.names()]
            targets = [r for r in targets if me in r["nodes"]]
        else:
            if len(args) < 2:
                raise Failure("drbdsetup %s: missing argument" % cmd, 20)
            r = find_resource(store, args[1], me)
            if r is None:
                if cmd == "events2":
                    targets = []
                elif cmd == "down":
                    return 0
                else:
                    raise Failure("%s: No such resource" % args[1], 10)
            else:
                targets = [r]
        for r in targets:
            reconcile(r, now)
        out = []
        rc = 0
        try:
            rc = run_drbdsetup(cmd, args, opts, targets, me, now, out)
        finally:
            store.save_all()
    if out:
        sys.stdout.write("".join(out))
    if cmd == "events2" and "--now" not in opts:
        return stream_events(targets, me)
    return rc


def run_drbdsetup(cmd, args, opts, targets, me, now, out):
    res = targets[0] if targets else None
    M = res["node"][me] if res else None
    v9only = ("events2", "status", "wait-connect-resource", "wait-connect-connection")
    if res and res["mode"] == "8.4" and cmd in v9only:
        raise Failure("drbdsetup: unknown command '%s' (DRBD 8.4 kernel module)" % cmd, 20)
    if res and res["mode"] == "9" and cmd in ("sh-status",):
        raise Failure("drbdsetup: unknown command '%s'" % cmd, 20)
    if cmd == "events2":
        for r in targets:
            out.append(format_events2(r, me, now, "--statistics" in opts))
        if "--now" in opts:
            out.append("exists -\n")
        return 0
    if cmd == "status":
        live = [r for r in targets if r["node"][me]["up"]]
        if len(targets) == 1 and not live:
            raise Failure("%s: No such resource" % res["name"], 10)
        if "--json" in opts:
            out.append(format_status_json(live, me, now))
        elif "--verbose" in opts or "--statistics" in opts:
            out += [format_status_verbose(r, me, now, "--statistics" in opts) for r in live]
        else:
            out += [format_status(r, me, now) for r in live]
        return 0
    if cmd == "sh-status":
        out.append(format_sh_status(res, me, now))
        return 0
    if cmd == "role":
        if not M["up"]:
            if res["mode"] == "8.4":
                out.append("Unconfigured\n")
                return 0
            raise Failure("%s: Unknown resource" % res["name"], 10)
        if res["mode"] == "8.4":
            out.append("%s/%s\n" % (M["role"], peer84(res, me, now)[0]))
        else:
            out.append(M["role"] + "\n")
        return 0
    if cmd == "cstate":
        if res["mode"] == "8.4":
            out.append(cstate84(res, me, now) + "\n")
            return 0
        if not M["up"]:
            raise Failure("%s: Unknown resource" % res["name"], 10)
        peers = peers_of(res, me)
        if len(args) > 2:
            peers = [p for p in peers if str(node_id(res, p)) == args[2]]
        for p in peers:
            out.append(peer_view(res, me, p, now)[0] + "\n")
        return 0
    if cmd == "dstate":
        if not M["up"]:
            if res["mode"] == "8.4":
                out.append("Unconfigured\n")
                return 0
            raise Failure("%d: Failure: (127) Device minor not allocated" % res["minor"], 10)
        parts = [local_disk(M)] + [peer_view(res, me, p, now)[3] for p in peers_of(res, me)]
        if res["mode"] == "8.4" and len(parts) == 1:
            parts.append("DUnknown")
        out.append("/".join(parts) + "\n")
        return 0
    if cmd in ("get-gi", "show-gi"):
        out.append(gi_output(res, me, now, args, pretty=cmd == "show-gi"))
        return 0
    if cmd == "primary":
        act_primary(res, me, now, force="--force" in opts or "--overwrite-data-of-peer" in opts)
        return 0
    if cmd == "secondary":
        act_secondary(res, me, now)
        return 0
    if cmd == "down":
        act_down(res, me, now)
        return 0
    if cmd in ("new-resource", "new-minor", "resource-options"):
        M["up"] = True
        return 0
    if cmd == "attach":
        act_attach(res, me, now)
        return 0
    if cmd == "detach":
        act_detach(res, me, now)
        return 0
    if cmd == "connect":
        act_connect(res, me, now, discard="--discard-my-data" in opts)
        return 0
    if cmd == "disconnect":
        act_disconnect(res, me, now)
        return 0
    if cmd == "outdate":
        act_outdate(res, me, now)
        return 0
    if cmd == "suspend-io":
        act_suspend_io(res, me, now)
        return 0
    if cmd == "resume-io":
        act_resume_io(res, me, now)
        return 0
    if cmd in ("wait-connect-resource", "wait-connect-connection", "wait-connect"):
        return -1   # handled outside the lock by the caller
    raise Failure("drbdsetup: unknown command '%s'" % cmd, 20)


def wfc_timeout(opts):
    for o in opts:
        if o.startswith("--wfc-timeout="):
            try:
                return int(o.split("=", 1)[1])
            except ValueError:
                pass
    return 0


def stream_events(targets, me):
    """events2 without --now: poll the state, print change lines and helper calls."""
    names = [r["name"] for r in targets]
    last = {r["name"]: format_events2(r, me, time.time()) for r in targets}
    seen = {r["name"]: len(r.get("events", [])) for r in targets}
    sys.stdout.write("exists -\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(0.2)
            with Store() as store:
                now = time.time()
                for name in names:
                    res = store.load(name)
                    if res is None:
                        continue
                    reconcile(res, now)
                    cur = format_events2(res, me, now)
                    if cur != last[name]:
                        old = set(last[name].splitlines())
                        for line in cur.splitlines():
                            if line not in old:
                                sys.stdout.write("change" + line[len("exists"):] + "\n")
                        last[name] = cur
                    events = res.get("events", [])
                    for ev in events[min(seen[name], len(events)):]:
                        if ev["node"] == me and ev["line"].startswith("call"):
                            sys.stdout.write(ev["line"] + "\n")
                    seen[name] = len(events)
                store.save_all()
            sys.stdout.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


# ----------------------------------------------------------------------------- drbdadm

def drbdadm_resources(store, spec, me):
    name = spec.split(":", 1)[0]
    if name == "all":
        return [r for r in (store.load(n) for n in store.names()) if me in r["nodes"]]
    res = store.load(name)
    if res is None or me not in res["nodes"] or me in res.get("unconfigured", ()):
        raise Failure("'%s' not defined in your config (for this host)." % name, 10)
    return [res]


SETUP_NAME = {"9": "drbdsetup", "8.4": "drbdsetup-84"}


def drbdadm(argv):
    me = local_node()
    opts, args = [], []
    it = iter(argv)
    for a in it:
        if a in ("-c", "--config-file", "--peer", "-p"):
            next(it, None)
        elif a.startswith("-"):
            opts.append(a)
        else:
            args.append(a)
    if "--version" in opts or (args and args[0] == "--version"):
        return print_version(me)
    if not args:
        raise Failure("USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}", 1)
    cmd = args[0]
    if cmd in ("sh-mod-parms",):
        return 0
    if len(args) < 2:
        raise Failure("drbdadm %s: resource name required" % cmd, 1)
    if cmd in ("wait-connect",):
        for spec in args[1:]:
            rc = wait_connect(spec.split(":")[0], me, wfc_timeout(opts))
            if rc:
                return rc
        return 0
    def attempt():
        out = []
        with Store() as store:
            now = time.time()
            try:
                for spec in args[1:]:
                    for res in drbdadm_resources(store, spec, me):
                        reconcile(res, now)
                        peer = spec.split(":", 1)[1].split("/")[0] if ":" in spec else None
                        run_drbdadm(cmd, res, me, opts, now, out, peer or None)
                        reconcile(res, now)
            finally:
                store.save_all()
                sys.stdout.write("".join(out))
        return 0
    return retry_after_fencing(attempt)


def run_drbdadm(cmd, res, me, opts, now, out, opts_peer=None):
    mode = res["mode"]
    M = res["node"][me]
    obj = res["name"] if mode == "9" else str(res["minor"])
    setup_cmd = {"primary": "primary", "secondary": "secondary", "down": "down",
                 "connect": "connect", "disconnect": "disconnect", "outdate": "outdate",
                 "attach": "attach", "detach": "detach", "suspend-io": "suspend-io",
                 "resume-io": "resume-io"}.get(cmd, cmd)

    def wrapped(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except Failure as e:
            raise Failure("%s\nCommand '%s %s %s' terminated with exit code %d" % (
                e.message, SETUP_NAME[mode], setup_cmd, obj, e.rc), e.rc)

    if "-d" in opts or "--dry-run" in opts:
        if cmd != "dump":
            out.append("%s %s %s\n" % (SETUP_NAME[mode], setup_cmd, obj))
            return
    if cmd == "primary":
        wrapped(act_primary, res, me, now, force="--force" in opts)
    elif cmd == "secondary":
        wrapped(act_secondary, res, me, now)
    elif cmd == "down":
        wrapped(act_down, res, me, now)
    elif cmd == "up":
        wrapped(act_up, res, me, now, adjust=False)
    elif cmd == "adjust":
        wrapped(act_up, res, me, now, skip_net="--skip-net" in opts)
    elif cmd in ("new-resource", "new-minor"):
        M["up"] = True
    elif cmd == "attach":
        wrapped(act_attach, res, me, now)
    elif cmd == "detach":
        wrapped(act_detach, res, me, now)
    elif cmd == "connect":
        wrapped(act_connect, res, me, now, discard="--discard-my-data" in opts)
    elif cmd == "disconnect":
        wrapped(act_disconnect, res, me, now)
    elif cmd == "outdate":
        wrapped(act_outdate, res, me, now)
    elif cmd == "suspend-io":
        wrapped(act_suspend_io, res, me, now)
    elif cmd == "resume-io":
        wrapped(act_resume_io, res, me, now)
    elif cmd in ("role", "cstate", "dstate"):
        o = []
        target = res["name"] if mode == "9" or cmd == "role" else str(res["minor"])
        try:
            run_drbdsetup(cmd, [cmd, target], [], [res], me, now, o)
        except Failure as e:
            raise Failure(e.message, e.rc)
        out += o
    elif cmd == "sh-status":
        out.append(format_sh_status(res, me, now))
    elif cmd == "status":
        if not M["up"]:
            raise Failure("%s: No such resource" % res["name"], 10)
        out.append(format_status(res, me, now))
    elif cmd == "sh-dev":
        out.append(res["device"] + "\n")
    elif cmd == "sh-minor":
        out.append("%d\n" % res["minor"])
    elif cmd == "sh-resource":
        out.append(res["name"] + "\n")
    elif cmd == "dump":
        out.append(format_dump(res))
    elif cmd in ("check-resize", "create-md", "apply-al", "new-current-uuid", "unfence-peer",
                 "invalidate-remote", "hidden-commands", "resize"):
        pass
    elif cmd in ("get-gi", "show-gi"):
        if mode == "9":
            peers = peers_of(res, me)
            peer = opts_peer or (peers[0] if peers else None)
            if peer not in peers:
                raise Failure("%s: no connection to %s" % (res["name"], peer), 10)
            args = [cmd, res["name"], str(node_id(res, peer)), "0"]
        else:
            args = [cmd, str(res["minor"])]
        out.append(gi_output(res, me, now, args, pretty=cmd == "show-gi"))
    else:
        raise Failure("drbdadm: Unknown command '%s'" % cmd, 1)


def format_dump(res):
    L = ["# resource %s on %s: not ignored, not stacked" % (res["name"], local_node()),
         "# defined at /etc/drbd.d/%s.res:1" % res["name"], "resource %s {" % res["name"]]
    for i, n in enumerate(res["nodes"]):
        L += ["    on %s {" % n, "        node-id %d;" % i, "        volume 0 {",
              "            device       minor %d;" % res["minor"],
              "            disk         %s;" % ("none" if res["node"][n].get("client")
                                                 else image_path(res, res["node"][n]["image"])),
              "            meta-disk    internal;", "        }"]
        addr = (res.get("addresses") or {}).get(n)
        if addr:
            L.append("        address          ipv4 %s:%d;" % (addr, res["port"]))
        L.append("    }")
    if res.get("quorum", "off") != "off":
        L += ["    options {", "        quorum             %s;" % res["quorum"],
              "        on-no-quorum       %s;" % res.get("on_no_quorum", "suspend-io"), "    }"]
    L.append("    net {")
    L.append("        protocol           C;")
    if res["allow_two_primaries"]:
        L.append("        allow-two-primaries yes;")
    if res["fencing"] != "dont-care":
        L.append("        fencing            %s;" % res["fencing"])
    L.append("    }")
    handlers = {k: v for k, v in (res.get("handlers") or {}).items() if v}
    if handlers:
        L.append("    handlers {")
        L += ['        %-18s "%s";' % (k, v.replace('"', '\\"')) for k, v in sorted(handlers.items())]
        L.append("    }")
    L.append("}")
    return "\n".join(L) + "\n\n"


def print_version(me):
    mode = "9"
    try:
        with Store() as store:
            for n in store.names():
                r = store.load(n)
                if me in r["nodes"]:
                    mode = r["mode"]
                    break
    except Failure:
        pass
    ver, code, api = KERNEL_VERSION[mode]
    sys.stdout.write("DRBDADM_BUILDTAG=GIT-hash:\\ %s\\ build\\ by\\ drbdemu\n"
                     "DRBDADM_API_VERSION=%s\nDRBD_KERNEL_VERSION_CODE=%s\n"
                     "DRBD_KERNEL_VERSION=%s\nDRBDADM_VERSION_CODE=%s\nDRBDADM_VERSION=%s\n" % (
                         GIT_HASH, api.split("/")[0], code, ver, UTILS_VERSION[1],
                         UTILS_VERSION[0]))
    return 0


# ----------------------------------------------------------------------------- entry points

def _main(fn, argv):
    try:
        rc = fn(argv)
        if rc == -1:
            raise AssertionError
        return rc
    except Failure as e:
        sys.stdout.flush()
        sys.stderr.write(e.message + "\n")
        return e.rc


def main_drbdsetup(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if not a.startswith("-")]
    if args and args[0] in ("wait-connect-resource", "wait-connect-connection", "wait-connect"):
        try:
            with Store() as store:
                res = find_resource(store, args[1] if len(args) > 1 else "", local_node())
            if res is None:
                sys.stderr.write("%s: No such resource\n" % (args[1:2] or [""])[0])
                return 10
            return wait_connect(res["name"], local_node(), wfc_timeout(argv))
        except Failure as e:
            sys.stderr.write(e.message + "\n")
            return e.rc
    return _main(lambda a: retry_after_fencing(lambda: drbdsetup(a)), argv)


def main_drbdadm(argv=None):
    return _main(drbdadm, sys.argv[1:] if argv is None else argv)


def main_drbdemu(argv=None):
    return _main(admin, sys.argv[1:] if argv is None else argv)
