"""A real MooseFS cluster in a private network namespace, for tests and benchmarks.

Chunkservers refuse a master on 127.0.0.0/8, so everything runs inside a
network namespace of our own (``pyha-mfs-<random>``) whose ``lo`` also carries
10.213.0.200.  Daemons are entered with ``nsenter --net`` only, so they share
our mount namespace: the FUSE mount made by ``mfsmount`` is visible to the
test process, and files can be written and checksummed through it.

Daemons started here run in the foreground (``-f``) with stdout/stderr in a
log file per daemon (there is no /dev/log).  ``MfsLab.destroy`` kills every
process in the namespace, unmounts, deletes the namespace and the directory,
and is safe to call on a half-built lab.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import PROBE, TREE

ADDRESS = "10.213.0.200"
CLIENT_PORT = 9421
EMPTY_METADATA = Path("/var/lib/mfs/metadata.mfs.empty")
MFS_USER = "mfs"


def _exited(pid: int) -> bool:
    """True once ``pid`` has released its files: a zombie, or reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class MfsLab:
    def __init__(self, address: str = ADDRESS):
        self.address = address
        self.netns = f"pyha-mfs-{secrets.token_hex(4)}"
        self.root = Path(tempfile.mkdtemp(prefix="pyha-mfs-", dir="/tmp"))
        # Daemons drop to the mfs user: every directory on their way must be traversable.
        self.root.chmod(0o755)
        self.daemons: dict[str, subprocess.Popen] = {}
        self.mounts: list[Path] = []
        self.exports = self.root / "mfsexports.cfg"
        self.exports.write_text(f"* / rw,alldirs,admin,maproot=0:0\n")
        self.topology = self.root / "mfstopology.cfg"
        self.topology.write_text("")
        _run(["ip", "netns", "add", self.netns])
        self.ns_run(["ip", "link", "set", "lo", "up"])
        self.ns_run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])

    # -- running things inside the namespace -------------------------------------------
    def ns(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *map(str, argv)]

    def ns_run(self, argv, timeout=60, check=True, env=None) -> subprocess.CompletedProcess:
        return _run(self.ns(argv), timeout=timeout, check=check, env=env)

    def spawn(self, name: str, argv: list) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen(self.ns(argv), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.daemons[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- configuration ------------------------------------------------------------------
    def data_dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        shutil.chown(path, MFS_USER, MFS_USER)
        return path

    def master_cfg(self, name: str = "master", **extra) -> Path:
        """Write ``<name>.cfg`` with its own DATA_PATH ``<root>/<name>``; return its path."""
        settings = {
            "DATA_PATH": self.data_dir(name),
            "EXPORTS_FILENAME": self.exports,
            "TOPOLOGY_FILENAME": self.topology,
            "SYSLOG_IDENT": f"pyha-mfs-{name}",
            **extra,
        }
        return self._write_cfg(name, settings)

    def _write_cfg(self, name: str, settings: dict) -> Path:
        path = self.root / f"{name}.cfg"
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        return path

    @staticmethod
    def cfg_value(cfg: Path, key: str) -> str:
        for line in cfg.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == key:
                return value.strip()
        raise KeyError(key)

    # -- daemons --------------------------------------------------------------------------
    def start_master(self, name: str = "master", new_filesystem: bool = True, **extra) -> Path:
        """Start a master in the foreground on its own DATA_PATH; return its cfg file."""
        cfg = self.master_cfg(name, **extra)
        data = Path(self.cfg_value(cfg, "DATA_PATH"))
        if new_filesystem and not any(data.iterdir()):
            shutil.copy(EMPTY_METADATA, data / "metadata.mfs")
            shutil.chown(data / "metadata.mfs", MFS_USER, MFS_USER)
        self.spawn(name, ["mfsmaster", "-f", "-c", cfg, "start"])
        self.wait_for(lambda: self.master_info() is not None, f"master {name} answering")
        return cfg

    def start_metalogger(self, name: str = "metalogger") -> Path:
        cfg = self._write_cfg(name, {
            "DATA_PATH": self.data_dir(name),
            "MASTER_HOST": self.address,
            "MASTER_RECONNECTION_DELAY": 1,
            "SYSLOG_IDENT": f"pyha-mfs-{name}",
        })
        self.spawn(name, ["mfsmetalogger", "-f", "-c", cfg, "start"])
        return self.root / name

    def start_chunkserver(self, index: int) -> None:
        name = f"chunkserver{index}"
        disk = self.data_dir(f"{name}-hdd")
        hdd_cfg = self.root / f"{name}-hdd.cfg"
        hdd_cfg.write_text(f"{disk}\n")
        cfg = self._write_cfg(name, {
            "DATA_PATH": self.data_dir(name),
            "HDD_CONF_FILENAME": hdd_cfg,
            "MASTER_HOST": self.address,
            "MASTER_RECONNECTION_DELAY": 1,
            "CSSERV_LISTEN_PORT": 9422 + 2 * index,
            # The default 256 MiB reserve would be fine here, but keep small disks usable.
            "HDD_LEAVE_SPACE_DEFAULT": "64MiB",
            "SYSLOG_IDENT": f"pyha-mfs-{name}",
        })
        self.spawn(name, ["mfschunkserver", "-f", "-c", cfg, "start"])

    def mount(self, name: str = "mnt") -> Path:
        mountpoint = self.root / name
        mountpoint.mkdir()
        self.spawn(f"mfsmount-{name}", ["mfsmount", "-f", "-H", self.address, "-P", CLIENT_PORT,
                                        "-o", "mfscachemode=NO", mountpoint])
        self.mounts.append(mountpoint)
        self.wait_for(lambda: _is_mounted(mountpoint), f"mfsmount on {mountpoint}")
        return mountpoint

    def start_cluster(self, chunkservers: int = 2) -> dict:
        """Master, metalogger, chunkservers and a client; wait until writes can succeed."""
        cfg = self.start_master()
        metalogger = self.start_metalogger()
        for index in range(1, chunkservers + 1):
            self.start_chunkserver(index)
        self.wait_ready(chunkservers)
        mountpoint = self.mount()
        return {"cfg": cfg, "metalogger": metalogger, "mnt": mountpoint}

    def wait_ready(self, chunkservers: int = 2, timeout: float = 30) -> dict:
        def ready():
            info = self.master_info()
            return info if info and info["chunkservers"] >= chunkservers \
                and info["avail_space"] > 0 else None
        return self.wait_for(ready, f"{chunkservers} chunkservers registered", timeout)

    def master_info(self, port: int = CLIENT_PORT) -> dict | None:
        """The master's state over the client port (stdlib probe, not the agent's code)."""
        result = self.ns_run([sys.executable, PROBE, self.address, port],
                             check=False, timeout=15)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    def master_pids(self, data_path: Path) -> list[int]:
        """Every mfsmaster process of our namespace working in ``data_path``."""
        pids = []
        for pid in self.pids():
            try:
                if (os.readlink(f"/proc/{pid}/exe").endswith("/mfsmaster")
                        and os.readlink(f"/proc/{pid}/cwd") == str(data_path)):
                    pids.append(pid)
            except OSError:
                continue
        return pids

    def kill_master(self, data_path: Path) -> None:
        """kill -9 the master (and its data writer) running on ``data_path``."""
        pids = self.master_pids(data_path)
        assert pids, f"no master running on {data_path}"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # /proc/PID/exe vanishes when the memory goes, before the sockets are closed: wait
        # until each process is a zombie or gone, i.e. holds no port any more.
        self.wait_for(lambda: all(_exited(pid) for pid in pids), "killed master gone")

    def stop_daemon(self, name: str, sig=signal.SIGTERM, timeout: float = 20) -> None:
        proc = self.daemons[name]
        proc.send_signal(sig)
        proc.wait(timeout)

    def pids(self) -> list[int]:
        result = _run(["ip", "netns", "pids", self.netns], check=False)
        return [int(pid) for pid in result.stdout.split()]

    # -- files through the client --------------------------------------------------------
    def write_files(self, mountpoint: Path, count: int, prefix: str = "f",
                    size: int = 65536, timeout: float = 60) -> dict[str, str]:
        """Write ``count`` random files (in subdirectories) through the client.

        Runs in a child process with a timeout so a hung FUSE call cannot hang the
        tests.  Returns {relative path: sha256}.
        """
        return self._tree_tool("write", mountpoint, str(count), prefix, str(size), timeout=timeout)

    def checksums(self, mountpoint: Path, timeout: float = 60) -> dict[str, str]:
        """{relative path: sha256} of every regular file under the mountpoint."""
        return self._tree_tool("sum", mountpoint, timeout=timeout)

    def _tree_tool(self, *args, timeout):
        result = _run([sys.executable, TREE, *map(str, args)], timeout=timeout)
        return json.loads(result.stdout)

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def wait_for(condition, what: str, timeout: float = 30, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)

    def destroy(self) -> None:
        """Kill everything in the namespace, unmount, delete namespace and files."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for proc in self.daemons.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for mountpoint in self.mounts:
            if _is_mounted(mountpoint):
                _run(["umount", "-l", mountpoint], check=False)
        _run(["ip", "netns", "del", self.netns], check=False)
        if not any(_is_mounted(m) for m in self.mounts):
            shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"==== {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                         for path in sorted(self.root.glob("*.log")))


def _run(argv, timeout=60, check=True, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, check=check, env=env)


def _is_mounted(mountpoint: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(mountpoint) for line in mounts)
