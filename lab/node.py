"""One lab machine: a network namespace on the lab bridge plus a mount/UTS
namespace held open by a holder process, with private /run, /dev/shm, /tmp and
private copies of the state directories the cluster stack writes.

"Power" is modelled honestly: power_off() takes the link down, drops every
address and SIGKILLs every process of the machine's mount namespace, so the
kernel unmounts whatever it had mounted - exactly what a crash leaves behind.
boot() brings it back with the same disks (the per-node directories).

This module is also imported by the fence agent (fence_pyha_lab), which runs
inside another node and only needs power_off()/is_on(), so it stays stdlib-only.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import BRIDGE, LAB_DIR, NETNS_PREFIX, PREFIXLEN, REPO_ROOT
from .util import LabError, run, say, wait_for

HOLDER_MARK = "pyha-lab-holder"

# target inside the machine -> (seed directory copied from the host or None,
#                               owner "user:group" or None, mode)
CLUSTER_DIRS = {
    "/etc/corosync": ("/etc/corosync", None, 0o755),
    "/var/lib/corosync": (None, None, 0o755),
    "/var/log/corosync": (None, None, 0o755),
    "/var/lib/pacemaker": ("/var/lib/pacemaker", None, 0o755),
    "/var/log/pacemaker": ("/var/log/pacemaker", "hacluster:haclient", 0o770),
    "/var/lib/nfs": ("/var/lib/nfs", None, 0o755),
    # Mount points of the stacks' filesystems go BELOW this, never onto a
    # bind mount of ours: ocf:heartbeat:Filesystem takes a bind mount at its
    # directory for its own mount and, failing to unmount it, fuser-kills
    # every process on the host's root filesystem.
    "/srv": (None, None, 0o755),
}
PACEMAKER_SUBDIRS = ("cib", "pengine", "blackbox", "cores")
# root's login profile, read empty on a node: `su -` (ocf:heartbeat:anything's start) runs
# it, and a host's profile may do anything there, e.g. `pyenv rehash`, which takes a lock in
# the shared ~/.pyenv; a node powered off during it left the lock behind, and every later
# `su -` on any node waited 60 s for it (the metalogger's start timed out at 20 s on both
# nodes). /root itself stays visible: the repository may live below it.
EMPTIED_FILES = ("/root/.profile", "/root/.bash_profile", "/root/.bash_login", "/root/.bashrc")


def _mnt_ns(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def pids_in_mount_ns(ns_ino):
    """Every live process whose mount namespace is ns_ino."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(entry) == ns_ino:
            pids.append(int(entry))
    return pids


def kill_mount_ns(ns_ino, timeout=10.0):
    """SIGKILL every process of a mount namespace until none is left (processes
    may fork while we kill, so loop)."""
    if ns_ino == _mnt_ns("self") or ns_ino == _mnt_ns(os.getppid()):
        # Never the namespace we (or our caller) live in: that would be the
        # host's, or a node fencing itself.
        raise LabError("refusing to kill our own mount namespace")
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in pids_in_mount_ns(ns_ino) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise LabError(f"processes survive SIGKILL: {pids}")
        time.sleep(0.05)


def start_daemons(machine, services, timeout=15, interval=0.1):
    """Start the services of a machine that are not running, in order, each ready
    before the next (rpc.statd gives up when rpcbind does not answer yet).  A
    service is an argv, or {"argv": [...], "ready": [...]} where ready is a command
    that succeeds once it serves."""
    for service in services:
        argv, ready = (service, None) if isinstance(service, list) else \
            (service["argv"], service.get("ready"))
        if argv in machine.cmdlines():
            continue
        machine.spawn(argv)
        what = f"{argv[0]} on {machine.name}"
        if ready:
            wait_for(lambda: machine.run(ready, check=False, quiet=True).returncode == 0,
                     timeout, f"{what} to serve", interval=interval)
        else:
            wait_for(lambda: argv in machine.cmdlines(), timeout, what, interval=interval)


class Machine:
    """A namespace set on the lab bridge: net + mount + UTS, held by one process."""

    private_dirs = {}        # see CLUSTER_DIRS
    emptied_files = ()       # see EMPTIED_FILES
    iface = "eth0"           # name of the machine's interface, inside it

    def __init__(self, name, address, lab_dir=LAB_DIR, setup=None):
        self.name = name
        self.address = address
        self.lab_dir = Path(lab_dir)
        # What stacks add to every node (see Cluster.setup): environment,
        # PATH prefix, shared bind mounts, services started at boot, and hooks
        # run when a node loses power or its cable.  A dict shared with the
        # Cluster; read from lab.json when we are e.g. the fence agent.
        self.setup = setup if setup is not None else self._read_setup()
        self.dir = self.lab_dir / name
        self.netns = NETNS_PREFIX + name
        self.host_if = NETNS_PREFIX + name
        if len(self.host_if) > 15:
            raise LabError(f"interface name too long: {self.host_if}")

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {self.address}>"

    def _read_setup(self):
        try:
            return json.loads((self.lab_dir / "lab.json").read_text()).get("setup", {})
        except (OSError, ValueError):
            return {}

    def _hooks(self, kind):
        for template in self.setup.get("hooks", {}).get(kind, []):
            argv = [a.replace("{node}", self.name) for a in template]
            proc = subprocess.run(argv, capture_output=True, text=True, env=self.env())
            if proc.returncode != 0:
                say(f"hook {' '.join(argv)} failed: {proc.stderr.strip()}")

    # ---- paths -------------------------------------------------------------
    def path(self, target):
        """Host path of a private directory (e.g. /var/log/pacemaker)."""
        return self.dir / target.strip("/").replace("/", "-")

    @property
    def pidfile(self):
        return self.dir / "holder.pid"

    @property
    def console(self):
        """stdout/stderr of the daemons started on this machine."""
        return self.dir / "console.log"

    # ---- creation ----------------------------------------------------------
    def create(self):
        """Directories and network (idempotent)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for target, (seed, owner, mode) in self.private_dirs.items():
            dest = self.path(target)
            if not Path(target).is_dir():
                continue  # nothing to hide on this machine (package not installed)
            if dest.exists():
                continue
            if seed and Path(seed).is_dir():
                run(["cp", "-a", seed, dest])
            else:
                dest.mkdir(parents=True)
            os.chmod(dest, mode)
            if owner:
                run(["chown", owner, dest])
        self._create_network()

    def _create_network(self):
        if not Path(f"/run/netns/{self.netns}").exists():
            run(["ip", "netns", "add", self.netns])
        if run(["ip", "link", "show", self.host_if], check=False, quiet=True).returncode != 0:
            run(["ip", "link", "add", self.host_if, "type", "veth",
                 "peer", "name", self.iface, "netns", self.netns])
        run(["ip", "link", "set", self.host_if, "master", BRIDGE, "up"])
        self.netns_exec(["ip", "link", "set", "lo", "up"])
        self.link_power(True)

    def netns_exec(self, argv, check=True):
        return run(["ip", "netns", "exec", self.netns, *argv], check=check)

    def link_power(self, on):
        """The machine's own NIC: up with its address, or down and emptied."""
        if on:
            self.netns_exec(["ip", "addr", "replace", f"{self.address}/{PREFIXLEN}",
                             "dev", self.iface])
            self.netns_exec(["ip", "link", "set", self.iface, "up"])
        else:
            self.netns_exec(["ip", "link", "set", self.iface, "down"], check=False)
            self.netns_exec(["ip", "addr", "flush", "dev", self.iface], check=False)

    def cable(self, plugged):
        """The switch side of the cable: a network cut that the machine itself
        sees only as lost carrier (its addresses and processes stay)."""
        run(["ip", "link", "set", self.host_if, "up" if plugged else "down"])
        self._hooks("cable_up" if plugged else "cable_down")

    # ---- the holder --------------------------------------------------------
    def holder_pid(self):
        """PID of the live holder process, or None when the machine is off."""
        try:
            pid = int(self.pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if HOLDER_MARK.encode() in cmdline else None

    def _find_holder(self):
        """The holder by its command line (when holder.pid is gone)."""
        mark = f"{HOLDER_MARK}-{self.name}\0".encode()
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes().startswith(mark):
                    return int(entry)
            except OSError:
                pass
        return None

    def is_on(self):
        return self.holder_pid() is not None

    def boot(self):
        """Power on: NIC up, fresh private tmpfs mounts, state dirs bound in."""
        if self.is_on():
            return
        self.link_power(True)
        self.pidfile.unlink(missing_ok=True)
        mounts = {t: str(self.path(t)) for t in self.private_dirs if self.path(t).exists()}
        mounts.update({f: "/dev/null" for f in self.emptied_files if Path(f).is_file()})
        # a source may name the machine: {node} (e.g. the DRBD emulator's per-node /proc/drbd)
        mounts.update({target: source.replace("{node}", self.name)
                       for target, source in self.setup.get("binds", {}).items()})
        spec = {"name": self.name, "pidfile": str(self.pidfile), "mounts": mounts}
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        with open(self.console, "ab") as log:
            subprocess.run(
                ["setsid", "-f", "ip", "netns", "exec", self.netns,
                 "unshare", "--mount", "--uts", "--propagation", "private",
                 sys.executable, "-m", "lab.node", "boot", json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, check=True)
        wait_for(self.is_on, 15, f"{self.name} to boot")
        self.start_services()

    def start_services(self):
        """Start the machine's boot-time services that are not running (see
        start_daemons)."""
        start_daemons(self, self.setup.get("services", []))

    def cmdlines(self):
        """Command lines (argv lists) of the machine's processes."""
        result = []
        for pid, _ in self.processes():
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            result.append([a.decode(errors="replace") for a in raw.split(b"\0")[:-1]])
        return result

    def power_off(self):
        """Crash: NIC dark, every process of the machine SIGKILLed."""
        pid = self.holder_pid() or self._find_holder()
        if pid is None:
            return
        ns = _mnt_ns(pid)
        subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "link", "set",
                        self.iface, "down"], capture_output=True)
        subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "addr", "flush",
                        "dev", self.iface], capture_output=True)
        if ns is not None:
            kill_mount_ns(ns)
        self._hooks("power_off")

    def processes(self):
        """[(pid, comm)] of the machine's processes."""
        pid = self.holder_pid()
        if pid is None:
            return []
        result = []
        for p in pids_in_mount_ns(_mnt_ns(pid)):
            try:
                result.append((p, Path(f"/proc/{p}/comm").read_text().strip()))
            except OSError:
                pass
        return result

    def pids_of(self, comm):
        return [p for p, c in self.processes() if c == comm]

    # ---- running things inside ----------------------------------------------
    def _enter(self):
        pid = self.holder_pid()
        if pid is None:
            raise LabError(f"{self.name} is powered off")
        return ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--"]

    def env(self):
        """Environment of commands and daemons on this machine."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}
        env.update(self.setup.get("env", {}))
        if self.setup.get("path_prefix"):
            env["PATH"] = ":".join([*self.setup["path_prefix"], env["PATH"]])
        return env

    def run(self, argv, check=True, timeout=120, input=None, quiet=False):
        """Run argv on the machine and wait; returns CompletedProcess."""
        return run(self._enter() + ["env", "-i", *[f"{k}={v}" for k, v in self.env().items()],
                                    *argv],
                   check=check, timeout=timeout, input=input, quiet=quiet)

    def spawn(self, argv, extra_env=None):
        """Start a long-lived process on the machine, detached from us; its
        output goes to the machine's console log."""
        env = dict(self.env(), **(extra_env or {}))
        with open(self.console, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} start {' '.join(argv)}\n".encode())
            log.flush()
            subprocess.run(["setsid", "-f", *self._enter(), "env", "-i",
                            *[f"{k}={v}" for k, v in env.items()], *argv],
                           stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True)

    # ---- removal -----------------------------------------------------------
    def destroy(self):
        """Remove everything this machine made: processes, mounts (they die
        with the namespace), links, the netns and its directory."""
        self.power_off()
        if Path(f"/run/netns/{self.netns}").exists():
            run(["ip", "netns", "del", self.netns], check=False)
        if run(["ip", "link", "show", self.host_if], check=False, quiet=True).returncode == 0:
            run(["ip", "link", "del", self.host_if], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Node(Machine):
    """A cluster node: corosync + pacemakerd run inside."""

    private_dirs = CLUSTER_DIRS
    emptied_files = EMPTIED_FILES

    def create(self):
        super().create()
        base = self.path("/var/lib/pacemaker")
        for sub in PACEMAKER_SUBDIRS:
            (base / sub).mkdir(exist_ok=True)
            run(["chown", "hacluster:haclient", base / sub])
            os.chmod(base / sub, 0o750)

    def start_stack(self):
        self.spawn(["corosync", "-f"])

    def start_pacemaker(self):
        # The daemons' environment is inherited by every resource agent
        # Pacemaker runs (e.g. the DRBD emulator first on PATH).
        self.spawn(["pacemakerd", "-f"], {"PCMK_logfile": "/var/log/pacemaker/pacemaker.log"})

    @property
    def corosync_log(self):
        return self.path("/var/log/corosync") / "corosync.log"

    @property
    def pacemaker_log(self):
        return self.path("/var/log/pacemaker") / "pacemaker.log"


# ---- the holder itself (runs inside the fresh namespaces) --------------------
def _boot_inside(spec):
    socket.sethostname(spec["name"])
    mounts = [["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"],
              ["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/dev/shm"],
              ["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp"]]
    for target, source in spec["mounts"].items():
        mounts.append(["mount", "--bind", source, target])
    for argv in mounts:
        subprocess.run(argv, check=True)
    for d, mode in (("/run/lock", 0o1777), ("/run/crm", 0o750)):
        os.makedirs(d, exist_ok=True)
        os.chmod(d, mode)
    shutil.chown("/run/crm", "hacluster", "haclient")
    Path(spec["pidfile"]).write_text(str(os.getpid()))
    # Become the holder: a sleep whose argv names the machine.
    os.execv("/bin/sleep", [f"{HOLDER_MARK}-{spec['name']}", "infinity"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["boot"]:
        _boot_inside(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python3 -m lab.node boot SPEC")
