"""The lab's VM backend: cluster nodes and clients are qemu VMs with Debian's kernel.

Same interface as the namespace backend (node.py, cluster.py): a VmMachine runs
commands, spawns daemons, powers off and on, pulls its cable; a VmCluster writes
corosync.conf, boots, forms the cluster, fences through the power switch and tears it
all down.  What differs is what is real: DRBD is the kernel module, nfsd and the NFS
client are the kernel's, systemd is PID 1 on every VM, a crash is a SIGKILL of qemu
(the guest's page cache is lost) and fencing goes through a power switch on the lab
network (rigs/vm/power.py), as fence_virsh reaches a hypervisor.

pcs is slow under emulation (a Python start of ~10 s per call), so configuration is
built on the host with `pcs -f` on a copy of the live CIB and pushed with cibadmin on a
node, as pcs-examples/ do with `pcs cluster cib`/`cib-push`.
"""
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from ocf_agents.ocf import parse_time
from rigs import debian_package
from rigs.vm import kernel as vmkernel, machine as vmmachine, net as vmnet, power
from rigs.vm.channel import ChannelError

from . import CLIENT_BASE, FIRST_VIP, REPO_ROOT, SUBNET
from .cluster import FENCE_DEVICE, Cluster, corosync_conf
from .node import start_daemons
from .util import LabError, run, say, step, stop_own_process, wait_for

FENCE_AGENT_PATH = Path("/usr/sbin") / power.AGENT_NAME
CONSOLE = "/var/log/pyha-lab-console.log"   # inside a VM: output of spawned daemons
PYHA_OCF_DIR = "/usr/lib/ocf/resource.d/pyha"


class VmMachine:
    """One VM of the lab (a client; VmNode adds the cluster stack)."""

    data_disk_mb = 0
    memory_mb = 512

    def __init__(self, name, address, lab_dir, setup=None):
        self.name = name
        self.address = address
        self.lab_dir = Path(lab_dir)
        self.setup = setup if setup is not None else {}
        self.dir = self.lab_dir / name
        self._vm = None

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {self.address}>"

    @property
    def vm(self):
        if self._vm is None:
            self._vm = vmmachine.VM(self.dir)
        return self._vm

    @property
    def console(self):
        return self.dir / "console.log"

    # ---- creation and power -----------------------------------------------------------
    def create(self, kernel, accel):
        if (self.dir / "vm.json").exists():
            return
        self._vm = vmmachine.VM.create(self.dir, self.name, self.address, kernel, accel,
                                       self.lab_dir, hosts_text="",
                                       memory_mb=self.memory_mb,
                                       data_disk_mb=self.data_disk_mb)

    def write_seed(self):
        """The files the lab and its stacks give every machine, into the first-boot
        seed (later changes go through the guest agent)."""
        seed = self.dir / "seed"
        for target, spec in self.setup.get("files", {}).items():
            dest = seed / target.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if "link" in spec:
                if dest.is_symlink() or dest.exists():
                    dest.unlink()
                dest.symlink_to(spec["link"])
                # whatever the host has there (e.g. a directory) goes first
                with open(self.dir / "seed.remove", "a") as remove:
                    remove.write(target + "\n")
                continue
            dest.write_text(spec["text"])
            os.chmod(dest, int(spec.get("mode", "644"), 8))
            if spec.get("owner"):
                shutil.chown(dest, *spec["owner"].split(":"))

    def is_on(self):
        return (self.dir / "vm.json").exists() and self.vm.is_on()

    def power_on(self):
        if not self.vm.is_on():
            if not (self.dir / "booted").exists():
                self.write_seed()
            self.vm.power_on()
            (self.dir / "booted").touch()

    def wait_ready(self, timeout=300):
        try:
            self.vm.wait_ready(timeout)
        except vmmachine.VMError as exc:
            raise LabError(str(exc)) from None

    def boot(self):
        self.power_on()
        self.wait_ready()
        self.start_services()

    def power_off(self):
        """Power loss: qemu SIGKILLed, nothing written after that moment."""
        if (self.dir / "vm.json").exists():
            self.vm.power_off()

    def cable(self, plugged):
        self.vm.link(plugged)

    # ---- commands ---------------------------------------------------------------------
    def env(self):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}
        env.update(self.setup.get("env", {}))
        return env

    def run(self, argv, check=True, timeout=120, input=None, quiet=False):
        argv = [str(a) for a in argv]
        try:
            proc = self.vm.channel.run(argv, env=self.env(), input=input, timeout=timeout)
        except ChannelError as exc:
            raise LabError(f"{self.name}: {exc}") from None
        if check and proc.returncode != 0:
            raise LabError(f"command failed on {self.name} (rc={proc.returncode}): "
                           f"{shlex.join(argv)}", (proc.stdout + proc.stderr).strip())
        return proc

    def spawn(self, argv, extra_env=None):
        try:
            self.vm.channel.spawn([str(a) for a in argv], env=dict(self.env(), **(extra_env or {})),
                                  log=CONSOLE)
        except ChannelError as exc:
            raise LabError(f"{self.name}: {exc}") from None

    def write_file(self, path, text, mode=0o644):
        self.vm.channel.write(path, text, mode)

    def cmdlines(self):
        out = self.run(["ps", "-eo", "args="], check=False, quiet=True).stdout
        return [line.split() for line in out.splitlines()]

    def processes(self):
        out = self.run(["ps", "-eo", "pid=,comm="], check=False, quiet=True).stdout
        return [(int(p), c) for p, c in (line.split(None, 1) for line in out.splitlines())]

    def pids_of(self, comm):
        return [p for p, c in self.processes() if c == comm]

    def start_services(self):
        """Boot-time services of the machine: systemd units (setup["units"]), then
        plain daemons (setup["services"]) as in the namespace backend (slower under
        emulation: longer waits)."""
        for unit in self.setup.get("units", []):
            self.run(["systemctl", "start", unit], timeout=120)
        start_daemons(self, self.setup.get("services", []), timeout=60, interval=0.5)

    def log_tail(self, path, lines=15, grep=None):
        if not self.is_on():
            return [f"({self.name} is off)"]
        try:
            text = self.vm.channel.read(path).decode(errors="replace")
        except ChannelError as exc:
            return [f"({exc})"]
        content = text.splitlines()
        if grep:
            content = [line for line in content if any(g in line for g in grep)]
        return content[-lines:]

    def destroy(self):
        self.power_off()
        shutil.rmtree(self.dir, ignore_errors=True)


class VmNode(VmMachine):
    """A cluster node VM: corosync and pacemaker as systemd units, a disk for DRBD."""

    data_disk_mb = 64
    # mfsmaster alone takes ~400 MB resident (it was OOM-killed in 768 MB)
    memory_mb = 1280

    def __init__(self, index, lab_dir, setup=None):
        super().__init__(f"node{index}", f"{SUBNET}.{index}", lab_dir, setup)
        self.index = index

    def install_package(self, deb):
        """The ocf-agents-pyha package, as a user installs it: dpkg -i in the node's own
        root (its overlay), once per built package (the copy kept in the node says which)."""
        installed = "/var/lib/pyha-lab/ocf-agents-pyha.deb"
        self.run(["sh", "-ec", 'cmp -s "$1" "$2" && exit 0\n'
                  # a node seeded by an older lab linked the provider directory to the share
                  'if [ -L "$3" ]; then rm "$3"; fi\n'
                  'dpkg -i "$1" >/dev/null\n'
                  'mkdir -p "${2%/*}" && cp "$1" "$2"',
                  "sh", deb, installed, PYHA_OCF_DIR], timeout=600)

    def start_stack(self):
        self.run(["systemctl", "start", "corosync"], timeout=120)

    def start_pacemaker(self):
        self.run(["systemctl", "start", "pacemaker"], timeout=120)

    corosync_log = "/var/log/corosync/corosync.log"
    pacemaker_log = "/var/log/pacemaker/pacemaker.log"


class VmCluster(Cluster):
    backend = "vm"
    # Under emulation one crm_mon costs a node 1-2 s of CPU: polled every 0.2-0.5 s it
    # kept a node's CPU busy and slowed every Pacemaker operation there (measured: 0 %
    # idle, crm_mon the top process, the MooseFS stack not up within 180 s).
    poll_s = 2.0
    # Corosync's token under emulation: with 1 s, a loaded 2-core host delayed the
    # token past the timeout (membership flaps, a node "lost" for a moment).
    default_token_ms = 3000

    def __init__(self, n_nodes=2, lab_dir=None, token_ms=None, consensus_ms=None,
                 clients=("client",)):
        token_ms = token_ms or self.default_token_ms
        from . import LAB_DIR
        lab_dir = Path(lab_dir or LAB_DIR)
        super().__init__(0, lab_dir, token_ms, consensus_ms)
        self.nodes = [VmNode(i, self.lab_dir, self.setup) for i in range(1, n_nodes + 1)]
        self.clients = [VmMachine(name, f"{SUBNET}.{CLIENT_BASE + i}", self.lab_dir,
                                  self.client_setup) for i, name in enumerate(clients)]

    # ---- bring-up ---------------------------------------------------------------------
    def create(self):
        with step(f"preparing {len(self.nodes)} node VMs and {len(self.clients)} client VM(s)"):
            self.lab_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.lab_dir, 0o755)
            kernel = vmkernel.ensure_kernel(log=say)
            accel = vmmachine.detect_accel(kernel, log=say)
            vmnet.create()
            secret = self.lab_dir / "power.secret"
            if not secret.exists():
                secret.write_text(secrets.token_hex(8) + "\n")
            vmmachine.install_guest_agent(self.lab_dir)
            power.install_fence_agent(FENCE_AGENT_PATH, REPO_ROOT)
            self.start_power_switch()
            self.install_agents()
            self.write_hosts()
            conf = corosync_conf(self.nodes, self.token_ms, self.consensus_ms)
            files = self.setup.setdefault("files", {})
            files["/etc/corosync/corosync.conf"] = {"text": conf}
            files["/var/lib/pacemaker/cib/cib.xml"] = {"text": self._seed_cib_text(),
                                                        "owner": "hacluster:haclient",
                                                        "mode": "600"}
            # Our nodes start together: don't wait 20 s for peers at every cold start.
            for machine in self.nodes + self.clients:
                machine.create(kernel, accel)
            self.save()

    def _seed_cib_text(self):
        with tempfile.TemporaryDirectory() as tmp:
            cib = Path(tmp) / "cib.xml"
            cib.write_text(run(["cibadmin", "--empty"]).stdout)
            run(["crm_attribute", "--type", "crm_config", "--name", "dc-deadtime",
                 "--update", "5s"], env={"CIB_file": str(cib), "PATH": "/usr/sbin:/usr/bin"})
            return cib.read_text()

    def write_hosts(self):
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{m.address}\t{m.name}" for m in self.nodes + self.clients]
        lines += [f"{SUBNET}.{FIRST_VIP + i}\tvip{i}" for i in range(10)]
        hosts = {"text": "\n".join(lines) + "\n"}
        self.setup.setdefault("files", {})["/etc/hosts"] = hosts
        self.client_setup.setdefault("files", {})["/etc/hosts"] = hosts

    def install_agents(self):
        """The nodes get the Debian package built from this checkout (LAB/package/*.deb,
        installed with dpkg -i at each start: issue 14); pcs on the host reads the agents'
        meta-data from a checkout install in LAB/ocf (host_pcs)."""
        ocf_root = self.lab_dir / "ocf"
        run(["/usr/bin/python3", "-m", "ocf_agents", "install", "--ocf-root", ocf_root],
            env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            cwd=REPO_ROOT)
        workdir = self.lab_dir / "package"
        workdir.mkdir(exist_ok=True)
        try:
            debian_package.build(workdir)
        except debian_package.BuildError as exc:
            raise LabError(f"building the Debian package: {exc}") from None

    def start_power_switch(self):
        pidfile = self.lab_dir / "power.pid"
        if self._switch_pid():
            return
        pidfile.unlink(missing_ok=True)
        env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        with open(self.lab_dir / "power.log", "ab") as log:
            subprocess.run(["setsid", "-f", *vmnet.in_netns(
                ["/usr/bin/python3", "-m", "rigs.vm.power", "serve", str(self.lab_dir)])],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
                cwd=REPO_ROOT)
        wait_for(self._switch_pid, 15, "the power switch")

    def _switch_pid(self):
        try:
            pid = int((self.lab_dir / "power.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"rigs.vm.power" in cmdline else None

    def start(self, nodes=None, timeout=120):
        """Power the VMs on together, wait for each, then corosync and pacemaker."""
        nodes = list(nodes or self.nodes)
        clients = [c for c in self.clients if not c.is_on()]
        names = " ".join(n.name for n in nodes + clients)
        t0 = time.monotonic()
        with step(f"booting VMs {names}", lambda: self.explain(nodes)):
            for machine in nodes + clients:
                machine.power_on()
            for machine in nodes + clients:
                machine.wait_ready()
            self.install_package(nodes)
            for machine in nodes + clients:
                machine.start_services()
        say(f"VMs up in {time.monotonic() - t0:.1f}s")
        with step(f"starting corosync and pacemaker on {' '.join(n.name for n in nodes)}",
                  lambda: self.explain(nodes)):
            for node in nodes:
                node.start_stack()
            for node in nodes:
                node.start_pacemaker()
        self.wait_online(nodes, timeout)

    def install_package(self, nodes):
        """dpkg -i of LAB/package's .deb on the nodes, side by side (a minute each under
        emulation, most of it byte-compiling)."""
        from concurrent.futures import ThreadPoolExecutor
        deb = self.lab_dir / "package" / debian_package.DEB_NAME
        if not deb.exists():
            raise LabError(f"{deb} is missing: recreate the lab (python3 -m lab down; up)")
        with ThreadPoolExecutor(len(nodes)) as pool:
            for done in [pool.submit(node.install_package, deb) for node in nodes]:
                done.result()

    # ---- pcs: built on the host, pushed on a node ---------------------------------------
    def cib_fetch(self, dest, via=None):
        node = via or self.any_node()
        Path(dest).write_text(node.run(["cibadmin", "--query"], quiet=True).stdout)

    def cib_push(self, src, via=None):
        """Replace the live configuration with src's (pcs cluster cib-push --config)."""
        node = via or self.any_node()
        config = ET.parse(src).getroot().find("configuration")
        if config is None:
            raise LabError(f"{src} has no configuration section")
        node.run(["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"],
                 input=ET.tostring(config, encoding="unicode"), quiet=True)

    def pcs(self, *args, via=None, check=True, timeout=120):
        if args[:2] == ("resource", "cleanup"):   # needs the live cluster, not a file
            node = via or self.any_node()
            which = ["--resource", args[2]] if len(args) > 2 else []
            return node.run(["crm_resource", "--cleanup", *which], check=check,
                            timeout=timeout)
        with tempfile.TemporaryDirectory(prefix="pyha-lab-cib-") as tmp:
            cib = Path(tmp) / "cib.xml"
            self.cib_fetch(cib, via)
            before = cib.read_text()
            proc = self.host_pcs(["pcs", "-f", str(cib), *args], check=check, timeout=timeout)
            if cib.read_text() != before:
                self.cib_push(cib, via)
            return proc

    def host_pcs(self, argv, check=True, timeout=120, env=None):
        """A command on the host in a private mount namespace where the pyha agents are
        installed where pcs looks for them."""
        agents = self.lab_dir / "ocf" / "resource.d" / "pyha"
        script = (f'mkdir -p {PYHA_OCF_DIR} && mount --bind "$1" {PYHA_OCF_DIR} && '
                  'shift && exec "$@"')
        return run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                    agents, *argv], check=check, timeout=timeout,
                   env=env or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})

    def run_pcs_script(self, script, variables, via=None, timeout=300):
        """A pcs-examples script run on the host: its `pcs cluster cib FILE` and
        `pcs cluster cib-push FILE` reach the live cluster through a node, every other
        pcs call works on the file (they all use -f)."""
        node = via or self.any_node()
        with tempfile.TemporaryDirectory(prefix="pyha-lab-pcs-") as tmp:
            shim = Path(tmp) / "pcs"
            shim.write_text(PCS_SHIM.format(fetch=shlex.quote(str(Path(tmp) / "fetch")),
                                            push=shlex.quote(str(Path(tmp) / "push"))))
            shim.chmod(0o755)
            live = Path(tmp) / "live.xml"
            self.cib_fetch(live, node)
            (Path(tmp) / "fetch").write_text(str(live))
            env = {"PATH": f"{tmp}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                   **variables}
            proc = self.host_pcs(["bash", str(script)], timeout=timeout, env=env)
            pushed = Path(tmp) / "push"
            if pushed.exists():
                raise_operation_timeouts(pushed, OPERATION_TIMEOUT_FLOORS_S)
                self.cib_push(pushed, node)
            return proc

    def configure_fencing(self, enabled=True):
        with step("configuring the VM power switch as fence device", lambda: self.explain()):
            hosts = " ".join(n.name for n in self.nodes)
            secret = (self.lab_dir / "power.secret").read_text().strip()
            self.pcs("stonith", "create", FENCE_DEVICE, power.AGENT_NAME,
                     f"pcmk_host_list={hosts}", f"ipaddr={vmnet.SWITCH_ADDRESS}",
                     f"password={secret}", "op", "monitor", "interval=60s",
                     f"timeout={FENCE_MONITOR_TIMEOUT_S}s")
            self.pcs("property", "set", f"stonith-enabled={'true' if enabled else 'false'}")

    # ---- diagnostics and teardown -------------------------------------------------------
    def explain(self, nodes=None, lines=15):
        out = []
        for node in nodes or self.nodes:
            out.append(f"--- {node.name} corosync.log")
            out += node.log_tail(node.corosync_log, lines)
            out.append(f"--- {node.name} pacemaker.log (errors/warnings)")
            out += node.log_tail(node.pacemaker_log, lines, grep=(
                "error:", "warning:", "crit:", "ocf-exit-reason", "notice: Result of"))
            out.append(f"--- {node.name} console")
            out.append(node.vm.console_tail(lines // 2) if node.console.exists() else "")
        fence_log = self.lab_dir / "fence.log"
        if fence_log.exists():
            out.append("--- fence.log")
            out += fence_log.read_text().splitlines()[-lines // 2:]
        return "\n".join(out)

    def destroy(self):
        vm_leftovers(self.lab_dir)
        shutil.rmtree(self.lab_dir, ignore_errors=True)
        if self.lab_dir.exists():
            raise LabError(f"could not remove {self.lab_dir}")


def vm_leftovers(lab_dir):
    """Stop the power switch first (it could power a VM on again), power off every VM
    below lab_dir by its pid file, delete the lab network and the fence agent."""
    lab_dir = Path(lab_dir)
    stop_own_process(lab_dir / "power.pid", "rigs.vm.power", signal.SIGKILL, timeout=10)
    for spec in lab_dir.glob("*/vm.json"):
        try:
            vmmachine.VM(spec.parent).power_off()
        except (OSError, ValueError):
            pass
    vmnet.destroy()
    FENCE_AGENT_PATH.unlink(missing_ok=True)


# Under TCG on a loaded 2-core machine an operation can take more than its 20 s default:
# CI's runs had ocf:heartbeat:Filesystem's monitor and IPaddr2's stop time out while clients
# wrote through the stack (the failed stop fenced the node), and on a slower machine
# ocf:pyha:drbd's monitor and the fence device's while a rebooted node rejoined (the
# survivor's stack restarted).  The lab runs the pcs-examples scripts as users would, then
# gives every operation at least these (seconds, by agent provider).  pyha's stay lower: a
# monitor's timeout also lengthens Pacemaker's wait for a cancel before it fences (action
# timeout + cluster-delay, lab/README.md), which the DRBD power-loss test meets.
OPERATION_TIMEOUT_FLOORS_S = {"heartbeat": 90, "pyha": 60}
FENCE_MONITOR_TIMEOUT_S = 90


def raise_operation_timeouts(cib_path, floors_s):
    """Give every operation of an OCF agent in the CIB file a timeout of at least the floor
    of its provider (floors_s: provider -> seconds; others untouched). Idempotent: pushing
    the same configuration twice changes nothing more."""
    tree = ET.parse(cib_path)
    for primitive in tree.getroot().iter("primitive"):
        floor_s = floors_s.get(primitive.get("provider"))
        if primitive.get("class") != "ocf" or floor_s is None:
            continue
        for op in primitive.iter("op"):
            try:
                current = parse_time(op.get("timeout", ""))
            except ValueError:     # none set (the agent's default) or not a time
                current = None
            if current is None or current < floor_s:
                op.set("timeout", f"{floor_s}s")
    tree.write(cib_path, encoding="unicode")


# `pcs` on the PATH of a pcs-examples script run on the host (see run_pcs_script).
PCS_SHIM = """#!/bin/sh
if [ "$1" = cluster ] && [ "$2" = cib ] && [ -n "$3" ]; then
    exec cp "$(cat {fetch})" "$3"
fi
if [ "$1" = cluster ] && [ "$2" = cib-push ] && [ -n "$3" ]; then
    cp "$3" {push}
    echo "CIB updated"
    exit 0
fi
exec /usr/sbin/pcs "$@"
"""
