"""The kernel NFS server and its daemons, as one node sees them.

What ocf:pyha:nfsserver manages, read and driven without decisions: nfsd's
thread count, the user-space daemons (rpc.statd, rpc.mountd, nfsdcld), the
state directory /var/lib/nfs and a shared directory bind-mounted over it, the
UTS namespace that gives nfsd its NFSv4 server scope, and systemd's units.
Reads never fork (monitor runs them forever); changes fork the real tools.
"""

import os
import time

from ocf_agents.ocf import read_head

NFS_STATE_DIR = "/var/lib/nfs"
ROOT = "/"                    # the node's own root filesystem
NFSD_FS = "/proc/fs/nfsd"
THREADS = NFSD_FS + "/threads"
SYSTEMD_RUNTIME = "/run/systemd/system"
# The daemons that serve NFS beside the kernel, by /proc/<pid>/comm (15 characters).
STATD, MOUNTD, CLD, IDMAPD, RPCBIND = "rpc.statd", "rpc.mountd", "nfsdcld", "rpc.idmapd", "rpcbind"
SM_NOTIFY = "sm-notify"
SIGTERM, SIGKILL = 15, 9   # the signal module imports enum: milliseconds per monitor


# --- processes (no fork) ---------------------------------------------------------
def safe_name(text):
    """text as one file name: letters, digits, '-', '_', '.'; anything else '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def process_name(pid):
    return read_head(f"/proc/{pid}/comm", 64).strip()


def net_namespace(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def pids_named(*names):
    """Processes with one of these names that serve this node: several nodes
    (containers, test labs) may share a PID namespace but each has its own network."""
    own_net = net_namespace("self")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and process_name(entry) in names and net_namespace(entry) == own_net:
            found.append(int(entry))
    return found


def process_cwd(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def stop_processes(pids, wait=5.0):
    """SIGTERM, up to wait seconds, then SIGKILL; returns the pids that were signalled."""
    names = {pid: process_name(pid) for pid in pids}
    for pid in pids:
        try:
            os.kill(pid, SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if process_name(p) == names[p]]
    for pid in alive:
        try:
            os.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def holders_of(path):
    """Processes whose working directory, root or an open file is under path."""
    prefix = path.rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        links = [f"/proc/{entry}/cwd", f"/proc/{entry}/root"]
        try:
            links += [f"/proc/{entry}/fd/{fd}" for fd in os.listdir(f"/proc/{entry}/fd")]
        except OSError:
            pass
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target == path or target.startswith(prefix):
                found.append((int(entry), process_name(entry)))
                break
    return found


# --- the kernel server -------------------------------------------------------------
def kernel_has_nfsd():
    """The kernel knows nfsd's filesystem, or has the module to load (an empty
    /proc/fs/nfsd alone proves nothing: some kernels create it without nfsd)."""
    if any(line.split()[-1:] == ["nfsd"]
           for line in read_head("/proc/filesystems", 1 << 16).splitlines()):
        return True
    release = os.uname().release
    return os.path.isdir(f"/lib/modules/{release}/kernel/fs/nfsd") or \
        "/nfsd.ko" in (read_text(f"/lib/modules/{release}/modules.builtin") or "")


def read_threads():
    """nfsd's running thread count (0: not running; None: nfsd's filesystem is not mounted)."""
    text = read_text(THREADS)
    if text is None:
        return None
    try:
        return int(text.strip() or 0)
    except ValueError:
        return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


# --- the state directory -------------------------------------------------------------
def same_directory(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def is_mount_point(path):
    """Whether path is a mount point (mountinfo: a bind mount of a directory of the same
    filesystem has the same st_dev as its parent, so stat alone cannot tell)."""
    target = _mountinfo_escape(os.path.normpath(path))
    for line in (read_text("/proc/self/mountinfo") or "").splitlines():
        fields = line.split(" ", 5)
        if len(fields) > 4 and fields[4] == target:
            return True
    return False


def mounts_below(path):
    """Mount points strictly inside path (e.g. rpc_pipefs under /var/lib/nfs)."""
    prefix = _mountinfo_escape(os.path.normpath(path)) + "/"
    found = []
    for line in (read_text("/proc/self/mountinfo") or "").splitlines():
        fields = line.split(" ", 5)
        if len(fields) > 4 and fields[4].startswith(prefix):
            found.append(_mountinfo_unescape(fields[4]))
    return found


def _mountinfo_escape(path):
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def _mountinfo_unescape(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def statd_owner():
    """uid, gid that rpc.statd runs as: it takes them from its sm directory's owner."""
    for path in (os.path.join(NFS_STATE_DIR, "sm"), NFS_STATE_DIR):
        try:
            st = os.stat(path)
            return st.st_uid, st.st_gid
        except OSError:
            continue
    return 0, 0


def prepare_state_dir(directory, owner):
    """The layout nfs-utils expects in /var/lib/nfs, created where missing; what is
    there (records, rmtab, client tracking) is kept."""
    uid, gid = owner
    for name, mode, owned in (("sm", 0o700, True), ("sm.bak", 0o700, True),
                              ("v4recovery", 0o700, False)):
        path = os.path.join(directory, name)
        if not os.path.isdir(path):
            os.mkdir(path, mode)
            if owned:
                os.chown(path, uid, gid)
    for name in ("etab", "rmtab"):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            with open(path, "a"):
                pass
            os.chmod(path, 0o644)
    # etab lists what this node exported: the new node's exportfs rewrites it, and
    # an old one from the other node would make exports look present before they are.
    with open(os.path.join(directory, "etab"), "w"):
        pass


# --- systemd ---------------------------------------------------------------------------
def systemd_runs():
    """systemd is PID 1 (sd_booted's test)."""
    return os.path.isdir(SYSTEMD_RUNTIME)


def write_if_changed(path, text, mode=0o644):
    """Write text to path unless it already holds it; True when it changed."""
    if read_text(path) == text:
        return False
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def mask_at_runtime(unit):
    """systemctl mask --runtime without the daemon-reload: True when it changed."""
    path = os.path.join(SYSTEMD_RUNTIME, unit)
    try:
        if os.readlink(path) == "/dev/null":
            return False
    except OSError:
        pass
    tmp = f"{path}.tmp{os.getpid()}"
    os.symlink("/dev/null", tmp)
    os.replace(tmp, path)
    return True
