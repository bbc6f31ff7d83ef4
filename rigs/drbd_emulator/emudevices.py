"""DRBD emulator, data and devices: each node's data image files (one per volume), the
loop device and /dev/drbdN node of every volume, read-only while writes are refused, and the
splitting/adopting of images as connections come and go.  Pure topology: emutopo.py."""

import os

from emutopo import (
    all_vols, connected, connected_peers, device_of, has_quorum, quorum_suspends, suspension,
    vol, volumes)


class Failure(Exception):
    """A command failed: message for stderr, exit code."""

    def __init__(self, message, rc):
        super().__init__(message)
        self.message = message
        self.rc = rc


def state_dir():
    d = os.environ.get("DRBDEMU_STATE")
    if not d:
        raise Failure("drbdemu: DRBDEMU_STATE is not set", 20)
    return d


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


# ----------------------------------------------------------------------------- devices
# Every volume has its own minor, /dev/drbdN node and loop device; `V` below is one volume's
# state of one node (emutopo.vol), `v` its number.

def _run(argv):
    import subprocess
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)


def device_in_use(st):
    """True when a Primary's device (any volume) is mounted or opened exclusively (like
    DRBD's open count)."""
    for V in all_vols(st):
        if not V.get("loop"):
            continue
        try:
            fd = os.open(V["loop"], os.O_RDONLY | os.O_EXCL)
        except OSError as e:
            import errno
            if e.errno == errno.EBUSY:
                return True
            continue
        os.close(fd)
    return False


def attach_device(res, V, v):
    img = image_path(res, V["image"])
    p = _run(["losetup", "--find", "--show", img])
    if p.returncode != 0:
        raise Failure("%s: losetup failed: %s" % (res["name"], p.stderr.strip()), 20)
    loop = p.stdout.strip()
    rdev = os.stat(loop).st_rdev
    path = device_of(res, v)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    import stat
    os.mknod(path, stat.S_IFBLK | 0o660, rdev)
    V["loop"], V["rdev"], V["loop_image"] = loop, rdev, V["image"]
    set_device_read_only(V, False)     # a reused loop may still carry an old read-only flag


def device_is_ours(res, V, v):
    try:
        return bool(V.get("rdev")) and os.stat(device_of(res, v)).st_rdev == V["rdev"]
    except FileNotFoundError:
        return False


def set_device_read_only(V, read_only):
    if V.get("loop"):
        _run(["blockdev", "--setro" if read_only else "--setrw", V["loop"]])
        V["device_read_only"] = read_only


def device_writable(res, name, v):
    """Writes reach the data only on a Primary whose I/O is not suspended (user, fencing,
    quorum), that has quorum and, for a volume without a disk, a connected peer with one."""
    st = res["node"][name]
    if not (st["up"] and st["role"] == "Primary") or not has_quorum(res, name) or \
            any(suspension(st)):
        return False
    return vol(st, v)["attached"] or any(vol(res["node"][p], v)["attached"]
                                         for p in connected_peers(res, name))


def settle_io(res):
    """Suspension or quorum changed: a Primary without quorum suspends its I/O (on-no-quorum
    suspend-io: suspended:quorum) or fails it (io-error); the device stands in for a freeze
    and for failing I/O alike by refusing writes until quorum returns / I/O resumes."""
    for name in res["nodes"]:
        st = res["node"][name]
        st["susp_quorum"] = quorum_suspends(res, name)
        for v in volumes(res):
            V = vol(st, v)
            if V.get("loop"):
                read_only = not device_writable(res, name, v)
                if V.get("device_read_only") != read_only:
                    set_device_read_only(V, read_only)


def open_device_for_primary(res, me, v):
    """Promote: the device kept since the last demote becomes writable again, unless its
    data file changed (resync, split) or another node's device took the path meanwhile.
    A volume without a disk works on a connected peer's data."""
    V = vol(res["node"][me], v)
    if not V["attached"]:
        servers = [p for p in connected_peers(res, me) if vol(res["node"][p], v)["attached"]]
        if servers:
            V["image"] = vol(res["node"][servers[0]], v)["image"]
    if V.get("loop") and V.get("loop_image") == V["image"] and device_is_ours(res, V, v):
        set_device_read_only(V, False)
        return
    detach_device(res, V, v)
    attach_device(res, V, v)


def refresh_kept_device(res, V, v, primary, up):
    """A Secondary keeps its device (read-only) until down; when its data file is replaced,
    the device follows (if the path is still its own) or is let go."""
    if not V.get("loop") or primary or V.get("loop_image") == V["image"]:
        return
    ours = device_is_ours(res, V, v)
    detach_device(res, V, v)
    if ours and up:
        attach_device(res, V, v)
        set_device_read_only(V, True)


def writes_through_device(st, V):
    return bool(V.get("loop")) and st["role"] == "Primary"


def detach_device(res, V, v):
    """Remove our device node (only if it still is ours) and release the loop device."""
    path = device_of(res, v)
    try:
        if os.stat(path).st_rdev == V.get("rdev"):
            os.unlink(path)
    except FileNotFoundError:
        pass
    if V.get("loop"):
        set_device_read_only(V, False)
        p = _run(["losetup", "-d", V["loop"]])
        if p.returncode != 0:       # busy (crash with a mount): auto-clear on last close
            _run(["losetup", "--detach", V["loop"]])
    V["loop"] = V["rdev"] = V["device_read_only"] = None


def detach_devices(res, st):
    for v in volumes(res):
        detach_device(res, vol(st, v), v)


def split_images(res):
    """After a disconnect, nodes that shared a volume's data file (replicating it) but are
    no longer connected to the node keeping it need their own copy.  The keeper is the
    Primary writing through its loop device (else the first node); the others that are no
    longer connected to it get a sparse copy each (their data is equal at this moment)."""
    for v in volumes(res):
        groups = {}
        for n in res["nodes"]:
            V = vol(res["node"][n], v)
            if V["attached"]:
                groups.setdefault(V["image"], []).append(n)
        for image, names in groups.items():
            if len(names) < 2:
                continue
            writers = [n for n in names if writes_through_device(res["node"][n],
                                                                   vol(res["node"][n], v))]
            keeper = writers[0] if writers else names[0]
            for other in names:
                if other == keeper or connected(res, keeper, other):
                    continue
                O = vol(res["node"][other], v)
                if writes_through_device(res["node"][other], O):
                    continue        # dual-primary: both hold it; nothing sane to do
                res["serial"] = res.get("serial", 0) + 1
                new = "%s.%s.%s%d.img" % (res["name"], other, "v%d." % v if v else "",
                                          res["serial"])
                sparse_copy(image_path(res, image), image_path(res, new))
                O["image"] = new
                st = res["node"][other]
                refresh_kept_device(res, O, v, st["role"] == "Primary", st["up"])


def adopt_image(res, target, source, v):
    """target's volume v now uses source's data; drop its old file if nobody uses it."""
    T, S = vol(res["node"][target], v), vol(res["node"][source], v)
    old = T["image"]
    T["image"] = S["image"]
    st = res["node"][target]
    refresh_kept_device(res, T, v, st["role"] == "Primary", st["up"])
    if old != T["image"] and all(vol(res["node"][n], w)["image"] != old
                                 for n in res["nodes"] for w in volumes(res)):
        try:
            os.unlink(image_path(res, old))
        except FileNotFoundError:
            pass


