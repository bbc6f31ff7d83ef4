"""What an application on an NFS client does, as argv lists to run on a client VM: a
writer that appends and fsyncs without end, a process that holds a POSIX lock, a
non-blocking lock attempt. The code travels in the argv (python3 -c), so a guest runs
exactly this version whatever its view of the checkout."""

import json

# Takes an exclusive POSIX lock on the file (fcntl: NLM on NFSv3, LOCK on NFSv4), then
# appends "n time\n" and fsyncs through the same open file, forever; after each fsync
# that returned, records n and the time in ACK (on the client's local disk): every
# acknowledged line must be on the server. An error is recorded in ERR and the writer
# stops (an application would see it). Four writes a second: a wait over 1 s is a gap, and
# faster writers (20/s) loaded the emulated VMs enough to time operations out on CI.
_WRITER = r"""
import fcntl, os, sys, time, json
path, ack, err = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
n, last, gaps = 0, time.time(), []
while True:
    n += 1
    try:
        os.write(fd, f"{n} {time.time():.3f}\n".encode())
        os.fsync(fd)
    except OSError as e:
        open(err, "w").write(f"{n} {e!r}\n")
        raise SystemExit(1)
    now = time.time()
    if now - last > 1.0:
        gaps.append([round(last, 3), round(now - last, 3)])
    last = now
    tmp = ack + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), "n": n, "time": now, "gaps": gaps[-20:]}, f)
    os.replace(tmp, ack)
    time.sleep(0.25)
"""

# Exit 0: the lock was granted (and released); 1: refused (someone holds it);
# 2: another error (printed).
_TRY = r"""
import errno, fcntl, sys
try:
    f = open(sys.argv[1], "a")
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES):
        raise SystemExit(1)
    print(repr(e))
    raise SystemExit(2)
fcntl.lockf(f, fcntl.LOCK_UN)
"""


# Takes and releases a new lock on PATH every 0.5 s; OUT records the longest waits
# between two granted locks (during a server's grace period a new lock waits).
_PROBE = r"""
import fcntl, json, os, sys, time
path, out = sys.argv[1:3]
last, gaps, error = time.time(), [], None
while True:
    try:
        with open(path, "a") as f:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(f, fcntl.LOCK_UN)
        now = time.time()
        if now - last > 1.0:
            gaps.append([round(last, 3), round(now - last, 3)])
        last = now
    except OSError as e:
        error = repr(e)
    with open(out + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "time": last, "gaps": gaps[-20:], "error": error}, f)
    os.replace(out + ".tmp", out)
    time.sleep(0.5)
"""


def lock_probe_argv(path, out):
    return ["python3", "-c", _PROBE, path, out]


def writer_argv(path, ack, err):
    return ["python3", "-c", _WRITER, path, ack, err]


def try_lock_argv(path):
    return ["timeout", "-s", "KILL", "20", "python3", "-c", _TRY, path]


def decode_ack(text):
    """The writer's ACK file: {"n": last acknowledged line, "time": when, "gaps": ...}."""
    return json.loads(text) if text.strip() else {"n": 0, "time": 0, "gaps": []}


def decode_written(text):
    """Line numbers present in the writer's file, in order."""
    numbers = []
    for line in text.splitlines():
        head = line.split(" ", 1)[0]
        if head.isdigit():
            numbers.append(int(head))
    return numbers
