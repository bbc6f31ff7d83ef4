"""The lab's syslog: what the daemons on its machines send to /dev/log, in one file.

MooseFS's daemons, mfsmount, rpc.statd and others log only to syslog, and this
machine runs no syslog daemon: without a listener their messages are lost, and
with them the reason a failover took 14 s instead of 4. The lab's machines share
the host's /dev, so one listener on /dev/log hears them all; the sender's pid
(SO_PASSCRED) tells which machine it runs on (the network namespace it is in).

  python3 -m lab.syslog LOGFILE [SOCKET]     (started by the ns lab, stopped by pid)

Each line: wall-clock time to the millisecond, machine, the message as sent.
The listener only takes a free SOCKET path (a real syslog daemon keeps its own).
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from . import NETNS_PREFIX, REPO_ROOT
from .util import stop_own_process

DEV_LOG = "/dev/log"


def netns_names(prefix=NETNS_PREFIX):
    """{netns inode: machine name} of the lab's network namespaces."""
    names = {}
    for entry in Path("/run/netns").glob(prefix + "*"):
        try:
            names[entry.stat().st_ino] = entry.name[len(prefix):]
        except OSError:
            continue
    return names


def machine_of(pid, names):
    """The lab machine pid runs on, "host" outside them, "pid N" when it is gone (a
    sender that exited at once: daemons stay)."""
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return f"pid {pid}"
    return names.get(inode, "host")


def format_line(when, machine, data):
    stamp = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    text = data.decode(errors="replace").rstrip("\n\0").replace("\n", " ")
    return f"{stamp} {machine:<8} {text}\n"


def serve(logfile, path=DEV_LOG, prefix=NETNS_PREFIX):
    """Receive datagrams on path until killed; returns 1 when path is taken."""
    if os.path.exists(path) or os.path.islink(path):
        sys.stderr.write(f"{path} exists (a syslog daemon?): not listening\n")
        return 1
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    listener.bind(path)
    os.chmod(path, 0o666)
    credentials = socket.CMSG_SPACE(struct.calcsize("3i"))
    names = netns_names(prefix)
    with open(logfile, "a", buffering=1) as out:
        while True:
            data, ancillary, _, _ = listener.recvmsg(65536, credentials)
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:struct.calcsize("3i")])[0]
            machine = "?" if pid is None else machine_of(pid, names)
            if machine == "host":     # a machine made after the listener started?
                names = netns_names(prefix)
                machine = machine_of(pid, names)
            out.write(format_line(time.time(), machine, data))


def start_listener(lab_dir, path=DEV_LOG):
    """Start the listener for the lab in lab_dir (detached) unless path is taken;
    lab_dir/syslog.pid then holds "PID INODE" for stop_listener."""
    if os.path.exists(path) or os.path.islink(path):
        return None
    logfile = Path(lab_dir) / "syslog.log"
    with open(os.devnull, "rb") as devnull, open(logfile, "ab") as errors:
        proc = subprocess.Popen([sys.executable, "-m", "lab.syslog", str(logfile), path],
                                cwd=REPO_ROOT, stdin=devnull, stdout=errors, stderr=errors,
                                start_new_session=True)
    deadline = time.monotonic() + 5
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return None
        time.sleep(0.02)
    (Path(lab_dir) / "syslog.pid").write_text(f"{proc.pid} {os.stat(path).st_ino}\n")
    return proc.pid


def stop_listener(lab_dir, path=DEV_LOG):
    """Stop the listener start_listener started (by its pid, checked to be ours) and
    remove its socket (only the one it made)."""
    pid_file = Path(lab_dir) / "syslog.pid"
    try:
        _, inode = map(int, pid_file.read_text().split())
    except (OSError, ValueError):
        return
    stop_own_process(pid_file, "lab.syslog", signal.SIGTERM)
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
    (Path(lab_dir) / "syslog.pid").unlink(missing_ok=True)


def main(argv):
    if not argv:
        sys.stderr.write("usage: python3 -m lab.syslog LOGFILE [SOCKET]\n")
        return 2
    return serve(argv[0], argv[1] if len(argv) > 1 else DEV_LOG)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
