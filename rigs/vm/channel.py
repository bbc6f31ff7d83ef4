"""The host side of the guest agent (guest.py): requests over the VM's virtio-serial ports.

Each port is a unix socket qemu listens on and takes one client at a time, so a caller
first takes the port's lock file (flock): processes of the lab, the tests and the power
switch share a VM's ports without mixing their conversations.  A request that outlives
its caller's patience leaves the port; the reply that comes later is skipped by id.
"""
import base64
import fcntl
import itertools
import json
import os
import socket
import time
from pathlib import Path


class ChannelError(RuntimeError):
    pass


class Completed:
    """What subprocess.run returns, for a command run in a guest."""

    def __init__(self, argv, returncode, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr


_ids = itertools.count(int(time.time() * 1000) % 10**9 * 100 + os.getpid() % 100)


class Channel:
    def __init__(self, vm_dir, ports):
        self.dir = Path(vm_dir)
        self.ports = ports

    def socket_path(self, i):
        return self.dir / f"port{i}.sock"

    def _take_port(self, wait):
        """(lock fd, port index) of a free port; waits up to `wait` s for one."""
        end = time.monotonic() + wait
        while True:
            for i in range(self.ports):
                fd = os.open(self.dir / f"port{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd, i
                except BlockingIOError:
                    os.close(fd)
            if time.monotonic() > end:
                raise ChannelError(f"every command port of {self.dir.name} stayed busy")
            time.sleep(0.05)

    def request(self, op, wait=60, **fields):
        """Send one request, wait for its reply (a dict); ChannelError on failure."""
        req = dict(fields, op=op, id=next(_ids))
        lock, port = self._take_port(wait)
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(wait)
            try:
                sock.connect(str(self.socket_path(port)))
            except OSError as exc:
                raise ChannelError(f"{self.dir.name} does not answer "
                                   f"(powered off?): {exc}") from None
            try:
                sock.sendall((json.dumps(req) + "\n").encode())
                buf = b""
                while True:
                    while b"\n" not in buf:
                        chunk = sock.recv(1 << 16)
                        if not chunk:
                            raise ChannelError(f"{self.dir.name}: connection closed "
                                               f"(the VM stopped?)")
                        buf += chunk
                    line, buf = buf.split(b"\n", 1)
                    reply = json.loads(line)
                    if reply.get("id") == req["id"]:
                        return reply
            except socket.timeout:
                raise ChannelError(f"{self.dir.name}: no reply to {op} within "
                                   f"{wait:.0f}s") from None
            finally:
                sock.close()
        finally:
            os.close(lock)

    # ---- the operations ----------------------------------------------------------
    def ping(self, timeout=5):
        return self.request("ping", wait=timeout)

    def run(self, argv, env=None, input=None, timeout=120, cwd=None):
        # The guest ends the command at `timeout`; the host waits a little longer.
        reply = self.request("run", wait=timeout + 15, argv=[str(a) for a in argv],
                             env=env, input=input, timeout=timeout, cwd=cwd)
        if "error" in reply:
            raise ChannelError(f"{self.dir.name}: {reply['error']}")
        if reply.get("timed_out"):
            raise ChannelError(f"{self.dir.name}: timed out after {timeout}s: "
                               f"{' '.join(map(str, argv))}")
        return Completed(argv, reply["rc"], reply["stdout"], reply["stderr"])

    def spawn(self, argv, env=None, log=None, cwd=None):
        reply = self.request("spawn", argv=[str(a) for a in argv], env=env, log=log, cwd=cwd)
        if "error" in reply:
            raise ChannelError(f"{self.dir.name}: {reply['error']}")
        return reply["pid"]

    def read(self, path):
        reply = self.request("read", path=str(path))
        if "error" in reply:
            raise ChannelError(f"{self.dir.name}: {reply['error']}")
        return base64.b64decode(reply["data"])

    def write(self, path, data, mode=0o644):
        if isinstance(data, str):
            data = data.encode()
        reply = self.request("write", path=str(path), data=base64.b64encode(data).decode(),
                             mode=mode)
        if "error" in reply:
            raise ChannelError(f"{self.dir.name}: {reply['error']}")
