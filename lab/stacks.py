"""The service stacks the lab configures and fails over.

A stack knows how to configure itself with pcs, where its service is active,
how to prove the service works on a node, what data to write before a failure
and how to check that data afterwards.  Scenarios (scenarios.py) drive them.
"""
import hashlib
import os
import time
from pathlib import Path

from rigs import drbd_emulator

from . import REPO_ROOT, SUBNET, FIRST_VIP, CLIENT_BASE
from .util import LabError, run, step, wait_for

# Where the DRBD emulator lives (rigs/drbd_emulator of this checkout unless
# PYHA_LAB_DRBD_EMULATOR points elsewhere).
EMULATOR_DIR = Path(os.environ.get("PYHA_LAB_DRBD_EMULATOR", drbd_emulator.HOME))
# DRBD's split-brain handler as pcs-examples/drbd.sh advises (ocf:pyha:drbd's command).
SPLIT_BRAIN_HANDLER = "/usr/lib/ocf/resource.d/pyha/drbd split-brain-handler"


class Stack:
    name = "?"
    service_process = None      # comm of the process a kill -9 scenario kills
    promotable = None           # primitive id of the promotable clone, if any
    # The failure scenarios that apply (kill9 needs a service process).
    scenarios = ("standby", "kill9", "crash", "linkdown")
    vm_clients = ("client",)    # client VMs the stack wants on the VM backend

    def prepare(self, cluster):
        """Before the cluster starts: what every node needs (cluster.setup)."""

    def configure(self, cluster):
        raise NotImplementedError

    def active_node(self, cluster, via=None):
        """Name of the node the service runs on, or None."""
        raise NotImplementedError

    def service_ok(self, cluster, node):
        """True when the service is verified working on node (a Node)."""
        raise NotImplementedError

    def write_data(self, cluster, tag):
        """Write data tagged `tag` through the service; remember it."""

    def check_data(self, cluster, node):
        """Raise LabError unless everything written so far is there."""

    def rejoined_ok(self, cluster, node):
        """True when a recovered node is back as a healthy standby."""
        return node.name in (cluster.status(quiet=True) or {"online": ()})["online"]

    def wait_active(self, cluster, timeout=None):
        if timeout is None:
            # Under TCG each Pacemaker operation takes 5-20 s (Filesystem's and IPaddr2's
            # starts 17 s each, measured here): the MooseFS stack's first start took 190 s
            # here on a quiet machine, and CI's machine is slower. Only a failure waits this long.
            timeout = 480 if cluster.backend == "vm" else 120
        def active():
            name = self.active_node(cluster)
            return name if name and self.service_ok(cluster, cluster.node(name)) else None
        return cluster.node(wait_for(active, timeout, f"the {self.name} service to start",
                                     interval=cluster.poll_s))


# The service resources' monitor interval on the VM backend.  Under emulation one monitor
# of a shell agent costs its node 3-4 s of CPU (IPaddr2: 3.6 s, Filesystem: 4.4 s measured
# in a node VM): at 5-10 s intervals the monitors alone kept a node's CPU busy and every
# start and stop waited behind them.  The VM tests fail nodes by power loss, link cut and
# standby, which corosync and the cluster see without a monitor.
VM_MONITOR = "30s"


def probe_read_limit(cluster):
    """Seconds a client's probe read may take before it counts as "not yet": under emulation
    with applications fsyncing a healthy read took > 3 s (10 s); in the namespace lab a read
    started while the master or server was gone can stay blocked past its return, and a
    long limit would add itself to the measured failover (2 s, as the README's tables)."""
    return 10 if cluster.backend == "vm" else 2


class StatefulStack(Stack):
    """Pacemaker's own test agents: a Stateful promotable clone and a Dummy
    service that follows the Promoted instance.  Proves the lab itself."""

    name = "stateful"
    promotable = "state"

    def configure(self, cluster):
        with step("configuring Dummy + Stateful promotable clone", cluster.explain):
            pcs = cluster.pcs
            pcs("resource", "defaults", "update", "resource-stickiness=100")
            pcs("resource", "create", "state", "ocf:pacemaker:Stateful",
                "op", "monitor", "interval=5s", "role=Promoted",
                "op", "monitor", "interval=6s", "role=Unpromoted",
                "promotable", "notify=true", "--disabled")
            pcs("resource", "create", "service", "ocf:pacemaker:Dummy",
                "op", "monitor", "interval=5s", "--disabled")
            pcs("constraint", "colocation", "add", "service", "with", "Promoted",
                "state-clone", "INFINITY")
            pcs("constraint", "order", "promote", "state-clone", "then", "start", "service")
            pcs("resource", "enable", "state-clone", "service")
        self.wait_active(cluster)

    def active_node(self, cluster, via=None):
        status = cluster.status(quiet=True, via=via)
        started = cluster.where("service", status=status)
        promoted = cluster.where("state", "Promoted", status=status)
        if len(started) == 1 and started == promoted:
            return started[0]
        return None

    def service_ok(self, cluster, node):
        # The Dummy agent's state file is the "service": it exists only where
        # the agent really started it.
        proc = node.run(["crm_resource", "--force-check", "-r", "service"], check=False,
                        quiet=True)
        return proc.returncode == 0

    def rejoined_ok(self, cluster, node):
        return node.name in cluster.where("state", "Unpromoted")


class DrbdMixin:
    """The DRBD emulator on the nodes: shared state in LAB_DIR/drbd, its bin
    dir first on every node's PATH (so the agent's drbdadm/drbdsetup are the
    emulator's), and the hooks that tell it about crashes and cable cuts (it
    has no daemon that could notice them)."""

    drbd_resource = "r0"
    drbd_minor = 213            # /dev/drbd213: unlikely to collide with anything
    drbd_size = "64M"
    drbd_port = 7789

    @property
    def drbd_device(self):
        return f"/dev/drbd{self.drbd_minor}"

    def prepare_drbd(self, cluster):
        if cluster.backend == "vm":
            return self.prepare_real_drbd(cluster)
        emu_bin = EMULATOR_DIR / "bin"
        if not (emu_bin / "drbdadm").exists():
            raise LabError(f"DRBD emulator not found in {EMULATOR_DIR}")
        state = cluster.lab_dir / "drbd"
        state.mkdir(parents=True, exist_ok=True)
        cluster.setup.setdefault("env", {})["DRBDEMU_STATE"] = str(state)
        cluster.setup["path_prefix"] = [str(emu_bin)]
        emu = str(emu_bin / "drbdemu")
        # A crash (power off, fencing) must reach the emulator: its state
        # still says "up, Primary" otherwise.  A cable cut is NOT passed on:
        # with DRBD's `fencing resource-and-stonith` the cut Primary freezes
        # its I/O until the peer fenced it, so it never starts a new data
        # generation and resyncs cleanly on return; the lab's emulated resource
        # runs without DRBD's fencing handlers (the emulator could freeze, given a
        # fence-peer handler), so the lab lets the fence's crash hook end the connection.
        # The split-brain test (fencing off) cuts the emulator's link itself.
        hooks = cluster.setup.setdefault("hooks", {})
        hooks["power_off"] = [[emu, "crash", "{node}"]]
        # The emulator keeps a /proc/drbd stand-in per node in state/proc/<node>/drbd;
        # each node sees its own at one path (a bind of its directory), which the pcs
        # scripts hand to the agent as proc_drbd (the real file cannot be made here).
        here = state / "proc-here"
        here.mkdir(exist_ok=True)
        for node in cluster.nodes[:2]:
            (state / "proc" / node.name).mkdir(parents=True, exist_ok=True)
        cluster.setup.setdefault("binds", {})[str(here)] = str(state / "proc" / "{node}")
        cluster.save()
        nodes = [n.name for n in cluster.nodes[:2]]
        self.drbdemu(cluster, "init", self.drbd_resource, "--nodes", ",".join(nodes),
                     "--minor", str(self.drbd_minor), "--size", self.drbd_size,
                     "--addresses", ",".join(f"{n.name}={n.address}" for n in cluster.nodes[:2]))

    def prepare_real_drbd(self, cluster):
        """The VM backend: the kernel's DRBD 8.4 on each node's second disk (/dev/vdb),
        the module loaded at boot, the resource in /etc/drbd.d on both nodes."""
        files = cluster.setup.setdefault("files", {})
        files[f"/etc/drbd.d/{self.drbd_resource}.res"] = {
            "text": self.real_drbd_conf(cluster)}
        # No usage-count: the lab has no route to LINBIT's counter.
        files["/etc/drbd.d/global_common.conf"] = {"text": "global { usage-count no; }\n"
                                                            "common { }\n"}
        files["/etc/modules-load.d/pyha-lab-drbd.conf"] = {"text": "drbd\n"}
        cluster.save()

    def real_drbd_conf(self, cluster, fencing=True, after_sb_1pri="discard-secondary"):
        """drbd.conf's resource section for the VM nodes.  LINBIT's advice with Pacemaker
        (the default): resource-level fencing through the CIB (crm-fence-peer places a
        constraint, crm-unfence-peer removes it after the resync) on top of STONITH, and
        a returning Secondary's changes after a cut (written before the power switch
        reached it) discarded.  The split-brain handler is ocf:pyha:drbd's, as
        pcs-examples/drbd.sh advises.  fencing=False and after_sb_1pri="disconnect"
        (DRBD's default) let the split-brain test make a real one."""
        hosts = "".join(f"    on {n.name} {{ address {n.address}:{self.drbd_port}; }}\n"
                        for n in cluster.nodes[:2])
        fence = ("    disk { fencing resource-and-stonith; }\n" if fencing
                 else "    disk { fencing dont-care; }\n")
        return (f"resource {self.drbd_resource} {{\n    device {self.drbd_device};\n"
                "    disk /dev/vdb;\n    meta-disk internal;\n" + fence +
                "    handlers {\n"
                '        fence-peer "/usr/lib/drbd/crm-fence-peer.sh";\n'
                '        after-resync-target "/usr/lib/drbd/crm-unfence-peer.sh";\n'
                f'        split-brain "{SPLIT_BRAIN_HANDLER}";\n'
                "    }\n"
                "    net {\n        protocol C;\n        after-sb-0pri discard-zero-changes;\n"
                f"        after-sb-1pri {after_sb_1pri};\n        after-sb-2pri disconnect;\n"
                "    }\n"
                f"{hosts}}}\n")

    def apply_real_drbd_conf(self, cluster, text):
        """A changed resource section on both nodes, applied to the running resource
        (drbdadm adjust), as an administrator edits drbd.conf."""
        path = f"/etc/drbd.d/{self.drbd_resource}.res"
        for node in cluster.nodes[:2]:
            node.write_file(path, text)
        for node in cluster.nodes[:2]:
            node.run(["drbdadm", "adjust", self.drbd_resource], timeout=60)

    def cut_replication(self, cluster, node):
        """Only DRBD's replication link of `node` goes down (its TCP port, both
        directions, dropped on eth0 by tc: a firewall rule); corosync keeps talking."""
        node.run(["tc", "qdisc", "add", "dev", "eth0", "clsact"])
        for direction in ("ingress", "egress"):
            for port in ("sport", "dport"):
                node.run(["tc", "filter", "add", "dev", "eth0", direction, "protocol", "ip",
                          "u32", "match", "ip", port, str(self.drbd_port), "0xffff",
                          "action", "drop"])

    def heal_replication(self, cluster, node):
        node.run(["tc", "qdisc", "del", "dev", "eth0", "clsact"])

    def proc_drbd(self, cluster, node):
        """The resource's line of the kernel's /proc/drbd on node: cs:… ro:… ds:…"""
        text = cluster.node(node).run(["cat", "/proc/drbd"], quiet=True).stdout
        prefix = f"{self.drbd_minor}: "
        return next((line.strip()[len(prefix):] for line in text.splitlines()
                     if line.strip().startswith(prefix)), "")

    def init_real_drbd(self, cluster, mountpoint, subdirs=(), populate=""):
        """One-time: metadata on both disks, connected, the initial sync skipped (both
        disks are empty), a filesystem made on node1 and replicated, everything down
        again for Pacemaker."""
        r, dev = self.drbd_resource, self.drbd_device
        nodes = cluster.nodes[:2]
        with step("creating the DRBD resource on the real module (one-time)", cluster.explain):
            for node in nodes:
                node.run(["drbdadm", "--", "--force", "create-md", r], timeout=60)
                node.run(["drbdadm", "up", r], timeout=60)
            wait_for(lambda: nodes[0].run(["drbdadm", "cstate", r], check=False,
                                          quiet=True).stdout.strip() == "Connected",
                     60, "DRBD to connect")
            nodes[0].run(["drbdadm", "--", "--clear-bitmap", "new-current-uuid", r])
            wait_for(lambda: all(self.drbd_state(cluster, n.name)[1] == "UpToDate"
                                 for n in nodes), 60, "both disks UpToDate")
            mk = " ".join(f"{mountpoint}/{d}" for d in subdirs)
            nodes[0].run(["sh", "-c", f"set -e; drbdadm primary {r}; mkfs.ext4 -q -F {dev}; "
                          f"mkdir -p {mountpoint}; mount {dev} {mountpoint}; "
                          + (f"mkdir -p {mk}; " if mk else "") + (populate + "; " if populate else "")
                          + f"umount {mountpoint}; drbdadm secondary {r}"], timeout=120)
            for node in nodes:
                node.run(["mkdir", "-p", mountpoint])
                node.run(["drbdadm", "down", r], timeout=60)

    def proc_drbd_variables(self, cluster):
        """PROC_DRBD for the pcs scripts: the emulator's stand-in on the namespace lab."""
        return {} if cluster.backend == "vm" else \
            {"PROC_DRBD": str(cluster.lab_dir / "drbd" / "proc-here" / "drbd")}

    def drbdemu(self, cluster, *args):
        return run([EMULATOR_DIR / "bin" / "drbdemu", *args],
                   env=dict(cluster.nodes[0].env()))

    def drbd_state(self, cluster, node):
        """(role, disk) of node's side of the resource."""
        proc = cluster.node(node).run(["drbdadm", "role", self.drbd_resource], check=False,
                                      quiet=True)
        role = proc.stdout.strip().split("/")[0]   # DRBD 8.4 prints ours/peer's
        proc = cluster.node(node).run(["drbdadm", "dstate", self.drbd_resource], check=False,
                                      quiet=True)
        return role, proc.stdout.strip().split("/")[0]


class DrbdStack(DrbdMixin, Stack):
    """pcs-examples/drbd.sh: the DRBD promotable clone with an ext4 filesystem on the
    Promoted node.  On the VM backend, the kernel's DRBD."""

    name = "drbd"
    promotable = "drbd_r0"
    scenarios = ("standby", "crash", "linkdown")   # no process: DRBD is the kernel's
    mountpoint = "/srv/data"

    def __init__(self):
        self.written = {}

    def prepare(self, cluster):
        self.prepare_drbd(cluster)

    def configure(self, cluster):
        script = REPO_ROOT / "pcs-examples" / "drbd.sh"
        variables = {"DRBD_RESOURCE": self.drbd_resource, "DEVICE": self.drbd_device,
                     "MOUNTPOINT": self.mountpoint}
        if cluster.backend == "vm":
            self.init_real_drbd(cluster, self.mountpoint)
            with step(f"configuring the DRBD stack with {script.name}", cluster.explain):
                cluster.run_pcs_script(script, variables)
        else:
            node = cluster.nodes[0]
            r, dev, mp = self.drbd_resource, self.drbd_device, self.mountpoint
            node.run(["sh", "-c", f"set -e; mkdir -p {mp}; drbdadm up {r}; "
                      f"drbdadm primary --force {r}; mkfs.ext4 -q -F {dev}; "
                      f"drbdadm secondary {r}; drbdadm down {r}"], timeout=120)
            variables.update(self.proc_drbd_variables(cluster))
            with step(f"configuring the DRBD stack with {script.name}", cluster.explain):
                node.run(["env", *[f"{k}={v}" for k, v in variables.items()], "sh", script],
                         timeout=180)
        with step("waiting for the filesystem on the Primary", cluster.explain):
            self.wait_active(cluster)

    def active_node(self, cluster, via=None):
        status = cluster.status(quiet=True, via=via)
        promoted = cluster.where("drbd_r0", "Promoted", status=status)
        if len(promoted) == 1 and cluster.where("fs_r0", status=status) == promoted:
            return promoted[0]
        return None

    def service_ok(self, cluster, node):
        mnt = node.run(["findmnt", "-n", "-o", "SOURCE", self.mountpoint], check=False,
                       quiet=True).stdout.split()
        return mnt == [self.drbd_device]

    def write_data(self, cluster, tag):
        node = cluster.node(self.active_node(cluster))
        content = f"{tag} {time.time()} {os.urandom(8).hex()}\n" * 1000
        name = f"data-{tag}"
        node.run(["sh", "-c", f"cat > {self.mountpoint}/{name} && sync"], input=content,
                 quiet=True)
        self.written[name] = hashlib.sha256(content.encode()).hexdigest()

    def check_data(self, cluster, node):
        for name, digest in self.written.items():
            proc = node.run(["sha256sum", f"{self.mountpoint}/{name}"], check=False,
                            quiet=True)
            if proc.returncode != 0 or proc.stdout.split()[0] != digest:
                raise LabError(f"{name} lost or changed on {node.name}",
                               proc.stdout + proc.stderr)

    def rejoined_ok(self, cluster, node):
        if node.name not in cluster.where("drbd_r0", "Unpromoted"):
            return False
        return self.drbd_state(cluster, node.name) == ("Secondary", "UpToDate")


class NfsDrbdStack(DrbdMixin, Stack):
    """pcs-examples/nfs-drbd.sh: DRBD -> ext4 -> nfsserver (VMs) -> nfsexport -> VIP ->
    nfsnotify."""

    name = "nfs"
    promotable = "nfs-drbd"
    service_process = "rpc.statd"   # the NFS server's process the stack depends on
    vip = f"{SUBNET}.{FIRST_VIP}"
    mountpoint = "/srv/nfs"
    export_dir = "/srv/nfs/export"

    client_mnt = "/mnt/nfs"     # the NFSv3 mount on the client VMs (VM backend)
    v4_mnt = "/mnt/nfs4"        # client 2's NFSv4.1 mount of the same export (VM backend)
    vm_clients = ("client", "client2")   # a writer and lock holder, a second locker
    # nfsd's grace and lease on the VMs. It must outlast nfsserver's start -> nfsnotify
    # (exports, VIP, notify): ~12 s under emulation with 4 VMs on a quiet machine (10 s lost
    # locks there), several times that on a loaded one (30 s lost the NFSv3 lock: lockd
    # refused the late reclaim, "spurious grace period reject").  The tests wait for the
    # grace's end only after the failed node has rejoined, so a long one costs little.
    grace = 60

    def __init__(self):
        self.written = {}   # file name -> sha256
        self.rmtab = []     # rmtab lines that must survive

    def prepare(self, cluster):
        self.prepare_drbd(cluster)
        if cluster.backend == "vm":
            # The kernel's NFS server is the cluster's (ocf:pyha:nfsserver): nothing
            # NFS starts at boot (rpcbind is socket-activated).
            cluster.setup["units"] = []
            cluster.save()
            return
        # The NFS server's own services, started at boot like systemd would.
        cluster.setup["services"] = [
            {"argv": ["rpcbind", "-f", "-w"], "ready": ["rpcinfo", "-p", "127.0.0.1"]},
            {"argv": ["rpc.statd", "-F", "--no-notify"],
             "ready": ["rpcinfo", "-T", "udp", "127.0.0.1", "status"]}]
        cluster.save()

    def configure(self, cluster):
        if cluster.backend == "vm":
            return self.configure_vm(cluster)
        node = cluster.nodes[0]
        script = REPO_ROOT / "pcs-examples" / "nfs-drbd.sh"
        with step(f"configuring the NFS stack with {script.name}", cluster.explain):
            node.run(["env", f"NODES={cluster.nodes[0].name} {cluster.nodes[1].name}",
                      f"DRBD_RESOURCE={self.drbd_resource}", f"DRBD_DEVICE={self.drbd_device}",
                      f"MOUNTPOINT={self.mountpoint}", f"EXPORT_DIR={self.export_dir}",
                      f"VIP={self.vip}", "MONITOR=5s", "MKFS=yes",
                      # no kernel nfsd in the namespace lab: statd runs from boot
                      "MANAGE_NFS_SERVER=no",
                      *[f"{k}={v}" for k, v in self.proc_drbd_variables(cluster).items()],
                      "bash", script],
                     timeout=180)
        with step("waiting for the NFS service", cluster.explain):
            self.wait_active(cluster, timeout=90)

    vm_script = REPO_ROOT / "pcs-examples" / "nfs-drbd.sh"

    def vm_script_variables(self, cluster):
        return {"NODES": f"{cluster.nodes[0].name} {cluster.nodes[1].name}",
                "DRBD_RESOURCE": self.drbd_resource, "DRBD_DEVICE": self.drbd_device,
                "MOUNTPOINT": self.mountpoint, "EXPORT_DIR": self.export_dir,
                "VIP": self.vip, "MONITOR": VM_MONITOR, "MKFS": "no", "FSID": "0",
                "GRACE": str(self.grace), "LEASE": str(self.grace)}

    def configure_vm(self, cluster):
        """Real DRBD, the stack pushed from the host, kernel NFS clients mounting
        through the floating address."""
        self.init_real_drbd(cluster, self.mountpoint, subdirs=["export"])
        script = self.vm_script
        with step(f"configuring the NFS stack with {script.name}", cluster.explain):
            cluster.run_pcs_script(script, self.vm_script_variables(cluster))
        # Under emulation the whole stack's first start takes 2-3 minutes (measured: the
        # resource-agents recipe's was still starting its export after 120 s in CI).
        with step("waiting for the NFS service", cluster.explain):
            self.wait_active(cluster)
        for client in cluster.clients:
            with step(f"mounting {self.vip}:{self.export_dir} on {client.name} (NFSv3, hard)",
                      cluster.explain):
                client.run(["mkdir", "-p", self.client_mnt])
                client.run(["mount", "-t", "nfs", "-o", "vers=3,hard,timeo=20",
                            f"{self.vip}:{self.export_dir}", self.client_mnt], timeout=60)
        if len(cluster.clients) > 1:
            # The export is the NFSv4 pseudo-root (fsid 0): NFSv4 clients mount vip:/.
            client = cluster.clients[1]
            with step(f"mounting {self.vip}:/ on {client.name} (NFSv4.1, hard)",
                      cluster.explain):
                client.run(["mkdir", "-p", self.v4_mnt])
                client.run(["mount", "-t", "nfs", "-o", "vers=4.1,hard,timeo=20",
                            f"{self.vip}:/", self.v4_mnt], timeout=60)
        cluster.clients[0].run(["sh", "-c", f"echo ok > {self.client_mnt}/.probe && sync"],
                               timeout=60)

    def client_mounted(self, cluster):
        client = cluster.clients[0] if cluster.backend == "vm" and cluster.clients else None
        if client is None or not client.is_on():
            return None
        proc = client.run(["mountpoint", "-q", self.client_mnt], check=False, quiet=True)
        return client if proc.returncode == 0 else None

    def active_node(self, cluster, via=None):
        status = cluster.status(quiet=True, via=via)
        promoted = cluster.where("nfs-drbd", "Promoted", status=status)
        members = ("nfs-fs", "nfs-vip", "nfs-export", "nfs-notify") + \
            (("nfs-server",) if cluster.backend == "vm" else ())
        places = [cluster.where(r, status=status) for r in members]
        if len(promoted) == 1 and all(p == promoted for p in places):
            return promoted[0]
        return None

    def service_ok(self, cluster, node):
        """VIP on the node, the DRBD disk mounted, the directory exported."""
        addr = node.run(["ip", "-o", "addr", "show"], check=False, quiet=True).stdout
        if f" {self.vip}/" not in addr:
            return False
        mnt = node.run(["findmnt", "-n", "-o", "SOURCE", self.mountpoint], check=False,
                       quiet=True).stdout.split()
        if not mnt:
            return False
        exports = node.run(["exportfs", "-v"], check=False, quiet=True).stdout
        if self.export_dir not in exports:
            return False
        client = self.client_mounted(cluster)
        if client is None:
            return True
        # Verified = the client reads through the floating address.  While its hard
        # mount retries against the new server a read blocks: "not yet".
        limit = probe_read_limit(cluster)
        proc = client.run(["timeout", "-s", "KILL", str(limit), "cat",
                           f"{self.client_mnt}/.probe"],
                          check=False, quiet=True, timeout=limit + 10)
        return proc.returncode == 0 and proc.stdout.strip() == "ok"

    def write_data(self, cluster, tag):
        client = self.client_mounted(cluster)
        if client is not None:
            return self.write_data_through_client(cluster, client, tag)
        node = cluster.node(self.active_node(cluster))
        content = f"{tag} {time.time()} {os.urandom(8).hex()}\n" * 1000
        name = f"data-{tag}"
        node.run(["tee", f"{self.export_dir}/{name}"], input=content, quiet=True)
        node.run(["sync", "-f", f"{self.export_dir}/{name}"], quiet=True)
        self.written[name] = hashlib.sha256(content.encode()).hexdigest()
        # A client mount as rpc.mountd records it; the agent's monitor keeps
        # the directory's rmtab lines in its backup on the DRBD disk.
        client = f"{SUBNET}.{CLIENT_BASE + len(self.rmtab) % 40}"
        line = f"{client}:{self.export_dir}:0x00000001"
        node.run(["sh", "-c", f"echo '{line}' >> /var/lib/nfs/rmtab"], quiet=True)
        self.rmtab.append(line)
        backup = f"{self.export_dir}/.rmtab"
        wait_for(lambda: line in node.run(["cat", backup], check=False, quiet=True).stdout,
                 30, "the rmtab backup (nfsexport monitor)")
        node.run(["sync", "-f", backup], quiet=True)

    def write_data_through_client(self, cluster, client, tag):
        """The client writes and fsyncs through the mount; the server's rmtab has the
        client's line (from rpc.mountd), which nfsexport keeps in its backup."""
        content = f"{tag} {time.time()} {os.urandom(8).hex()}\n" * 1000
        name = f"data-{tag}"
        client.run(["dd", f"of={self.client_mnt}/{name}", "conv=fsync", "status=none"],
                   input=content, quiet=True, timeout=60)
        self.written[name] = hashlib.sha256(content.encode()).hexdigest()
        node = cluster.node(self.active_node(cluster))
        prefix = f"{client.address}:{self.export_dir}:"
        rmtab = node.run(["cat", "/var/lib/nfs/rmtab"], quiet=True).stdout
        line = next((x for x in rmtab.splitlines() if x.startswith(prefix)), None)
        if line is None:
            raise LabError(f"rpc.mountd on {node.name} did not record {client.name}'s mount",
                           rmtab)
        if prefix not in self.rmtab:
            self.rmtab.append(prefix)
        backup = f"{self.export_dir}/.rmtab"
        wait_for(lambda: prefix in node.run(["cat", backup], check=False, quiet=True).stdout,
                 30, "the rmtab backup (nfsexport monitor)")
        node.run(["sync", "-f", backup], quiet=True)

    def check_data(self, cluster, node):
        client = self.client_mounted(cluster)
        if client is not None:
            for name, digest in self.written.items():
                def readable():
                    proc = client.run(["timeout", "-s", "KILL", "20", "sha256sum",
                                       f"{self.client_mnt}/{name}"], check=False,
                                      quiet=True, timeout=30)
                    return proc if proc.returncode == 0 else None
                proc = wait_for(readable, 60, f"{name} readable through the client")
                if proc.stdout.split()[0] != digest:
                    raise LabError(f"{name} changed (read through the NFS client)",
                                   proc.stdout)
            rmtab = node.run(["cat", "/var/lib/nfs/rmtab"], quiet=True).stdout
            missing = [p for p in self.rmtab if p not in rmtab]
            if missing:
                raise LabError(f"rmtab entries lost on {node.name}: {missing}", rmtab)
            self.check_mount_list(cluster, client, rmtab)
            return
        for name, digest in self.written.items():
            proc = node.run(["sha256sum", f"{self.export_dir}/{name}"], check=False, quiet=True)
            if proc.returncode != 0 or proc.stdout.split()[0] != digest:
                raise LabError(f"{name} lost or changed on {node.name}",
                               proc.stdout + proc.stderr)
        rmtab = node.run(["cat", "/var/lib/nfs/rmtab"], quiet=True).stdout
        missing = [line for line in self.rmtab if line not in rmtab]
        if missing:
            raise LabError(f"rmtab entries lost on {node.name}: {missing}")

    def check_mount_list(self, cluster, client, rmtab):
        """showmount -a through the floating address lists exactly the client VMs
        (each mounted once), and rmtab holds one line per client: no client lost, none
        duplicated, however many failovers came before."""
        wanted = sorted(f"{c.address}:{self.export_dir}" for c in cluster.clients)
        shown = client.run(["showmount", "--no-headers", "-a", self.vip], quiet=True,
                           timeout=60).stdout.split()
        if sorted(shown) != wanted:
            raise LabError(f"showmount -a {self.vip} lists {shown}, not {wanted}")
        lines = [x for x in rmtab.splitlines() if x.strip()]
        if len(lines) != len(cluster.clients):
            raise LabError(f"rmtab has {len(lines)} lines for {len(cluster.clients)} "
                           "mounted clients", rmtab)

    def rejoined_ok(self, cluster, node):
        if node.name not in cluster.where("nfs-drbd", "Unpromoted"):
            return False
        return self.drbd_state(cluster, node.name) == ("Secondary", "UpToDate")


class NfsResourceAgentsStack(NfsDrbdStack):
    """The published resource-agents recipe (lab/nfs-resource-agents.sh: linbit:drbd,
    Filesystem, heartbeat nfsserver with nfs_shared_infodir, exportfs, IPaddr2, heartbeat
    nfsnotify) on the VMs, to compare with nfs-drbd.sh under the same failures. Grace and
    lease are set as its users set them, in /etc/nfs.conf.d, to the same values."""

    name = "nfs-ra"
    vm_script = Path(__file__).resolve().parent / "nfs-resource-agents.sh"

    def prepare(self, cluster):
        if cluster.backend != "vm":
            raise LabError("the resource-agents recipe needs kernel nfsd: use --backend vm")
        super().prepare(cluster)
        cluster.setup["files"]["/etc/nfs.conf.d/pyha-lab.conf"] = {
            "text": f"[nfsd]\ngrace-time={self.grace}\nlease-time={self.grace}\n"}
        cluster.save()


class MfsDrbdStack(DrbdMixin, Stack):
    """pcs-examples/mfs.sh (STORAGE=drbd): DRBD -> ext4 on DATA_PATH ->
    ocf:pyha:mfsmaster -> VIP.  Two chunkservers and a FUSE client run on a third
    machine ("client") and reach the master only through the VIP."""

    name = "mfs"
    promotable = "drbd-r0"
    service_process = "mfsmaster"
    vip = f"{SUBNET}.{FIRST_VIP}"
    server_vip = None           # MASTER_HOST of the chunkservers, when not the VIP
    data_path = "/srv/mfs"      # = DATA_PATH and the DRBD filesystem's mount point
    mnt = "/tmp/mfs"            # the FUSE mount, inside the client machine

    def __init__(self):
        self.written = {}

    def prepare(self, cluster):
        from .node import Machine
        if not cluster.clients:   # the VM backend always has its client VM
            cluster.clients.append(Machine("client", f"{SUBNET}.{CLIENT_BASE}",
                                           cluster.lab_dir, cluster.client_setup))
            cluster.clients[0].create()
            cluster.write_hosts()
        self.prepare_storage(cluster)
        etc = cluster.lab_dir / "mfs-etc"
        etc.mkdir(exist_ok=True)
        # On real kernels a power loss takes the master's page cache with it: with the
        # default CHANGELOG_SAVE_MODE (0, written in the background, never synced) files
        # a client had written and synced just before vanished after failover
        # (measured on the VM backend).  Mode 2 fsyncs every changelog write, so what
        # the master acknowledged is on the replicated disk.
        save_mode = "CHANGELOG_SAVE_MODE = 2\n" if cluster.backend == "vm" else ""
        (etc / "mfsmaster.cfg").write_text(
            f"DATA_PATH = {self.data_path}\nEXPORTS_FILENAME = /etc/mfs/mfsexports.cfg\n"
            "TOPOLOGY_FILENAME = /etc/mfs/mfstopology.cfg\n" + save_mode)
        (etc / "mfsexports.cfg").write_text("* / rw,alldirs,admin,maproot=0:0\n")
        self.write_more_config(etc)
        (etc / "mfstopology.cfg").write_text("")
        if cluster.backend == "vm":
            # The lab directory is shared with the VMs at the same path.
            cluster.setup.setdefault("files", {})["/etc/mfs"] = {"link": str(etc)}
        else:
            cluster.setup.setdefault("binds", {})["/etc/mfs"] = str(etc)
        # The client machine: chunkservers on host directories (VMs: through the lab
        # share), configs there too.
        cdir = cluster.lab_dir / "client-mfs"
        cdir.mkdir(exist_ok=True)
        os.chmod(cluster.lab_dir, 0o755)
        services = []
        for i in (1, 2):
            for sub in (f"cs{i}", f"cs{i}-hdd"):
                (cdir / sub).mkdir(exist_ok=True)
                run(["chown", "mfs:mfs", cdir / sub])
            (cdir / f"cs{i}-hdd.cfg").write_text(f"{cdir / f'cs{i}-hdd'}\n")
            (cdir / f"cs{i}.cfg").write_text(
                f"DATA_PATH = {cdir / f'cs{i}'}\nHDD_CONF_FILENAME = {cdir / f'cs{i}-hdd.cfg'}\n"
                f"MASTER_HOST = {self.server_vip or self.vip}\nMASTER_RECONNECTION_DELAY = 1\n"
                f"CSSERV_LISTEN_PORT = {9422 + 2 * i}\nHDD_LEAVE_SPACE_DEFAULT = 64MiB\n")
            services.append({"argv": ["mfschunkserver", "-f", "-c", str(cdir / f"cs{i}.cfg"),
                                      "start"]})
        cluster.client_setup["services"] = services
        cluster.save()

    def prepare_storage(self, cluster):
        self.prepare_drbd(cluster)

    def write_more_config(self, etc):
        """More of /etc/mfs (shared by every node)."""

    def configure(self, cluster):
        if cluster.backend == "vm":
            mp = self.data_path
            self.init_real_drbd(cluster, mp, populate=(
                f"cp /var/lib/mfs/metadata.mfs.empty {mp}/metadata.mfs; "
                f"chown -R mfs:mfs {mp}"))
            script = REPO_ROOT / "pcs-examples" / "mfs.sh"
            with step(f"configuring the MooseFS stack with {script.name}", cluster.explain):
                cluster.run_pcs_script(script, {
                    "STORAGE": "drbd", "DRBD_RESOURCE": self.drbd_resource,
                    "DEVICE": self.drbd_device, "VIP": self.vip, "MOUNTPOINT": mp,
                    "SERVER_VIP": self.server_vip or "", "MONITOR": VM_MONITOR})
            return self.start_client(cluster)
        node = cluster.nodes[0]
        with step("creating the MooseFS filesystem on DRBD (one-time)", cluster.explain):
            r, dev, mp = self.drbd_resource, self.drbd_device, self.data_path
            node.run(["sh", "-c",
                      f"set -e; cp /var/lib/mfs/metadata.mfs.empty /tmp/empty; mkdir -p {mp}; drbdadm up {r}; "
                      f"drbdadm primary --force {r}; mkfs.ext4 -q -F {dev}; mount {dev} {mp}; "
                      f"cp /tmp/empty {mp}/metadata.mfs; chown -R mfs:mfs {mp}; umount {mp}; "
                      f"drbdadm secondary {r}; drbdadm down {r}"], timeout=120)
        script = REPO_ROOT / "pcs-examples" / "mfs.sh"
        with step(f"configuring the MooseFS stack with {script.name}", cluster.explain):
            node.run(["env", "STORAGE=drbd", f"DRBD_RESOURCE={self.drbd_resource}",
                      f"DEVICE={self.drbd_device}", f"VIP={self.vip}",
                      f"SERVER_VIP={self.server_vip or ''}", f"MOUNTPOINT={self.data_path}",
                      *[f"{k}={v}" for k, v in self.proc_drbd_variables(cluster).items()],
                      "sh", script], timeout=180)
        self.start_client(cluster)

    def start_client(self, cluster):
        with step("waiting for the MooseFS master", cluster.explain):
            self.wait_active(cluster)
        client = cluster.clients[0]
        with step("starting chunkservers and the FUSE client on the client machine",
                  cluster.explain):
            client.start_services()
            client.run(["mkdir", "-p", self.mnt])
            wait_for(lambda: self._mounted(client), 60, "mfsmount", interval=1.0)
            wait_for(lambda: self._client_write_ok(cluster), 60,
                     "the filesystem to accept writes (chunkservers registered)")

    def _mounted(self, client):
        """True once the FUSE mount is up; (re)starts mfsmount while it is not
        running (it gives up when the master does not answer at mount time)."""
        if client.run(["mountpoint", "-q", self.mnt], check=False, quiet=True).returncode == 0:
            return True
        if not client.pids_of("mfsmount"):
            # mfslogretry=0: every retry inside mfsmount is logged (the console log shows
            # why a read waited during a failover)
            client.spawn(["mfsmount", "-f", "-o", "mfslogretry=0", "-H", self.vip, "-P", "9421",
                          self.mnt])
        return False

    def _client_write_ok(self, cluster):
        client = cluster.clients[0]
        proc = client.run(["sh", "-c", f"echo ok > {self.mnt}/.probe && cat {self.mnt}/.probe"],
                          check=False, quiet=True, timeout=30)
        return proc.returncode == 0 and proc.stdout.strip() == "ok"

    def active_node(self, cluster, via=None):
        status = cluster.status(quiet=True, via=via)
        promoted = cluster.where("drbd-r0", "Promoted", status=status)
        resources = ("mfs-fs", "mfs-ip", "mfs-master") + (("mfs-server-ip",) if self.server_vip
                                                          else ())
        places = [cluster.where(r, status=status) for r in resources]
        if len(promoted) == 1 and all(p == promoted for p in places):
            return promoted[0]
        return None

    def service_ok(self, cluster, node):
        """The VIP and a live master on node, and (once the client is up)
        the client reads the filesystem's root through the VIP."""
        addr = node.run(["ip", "-o", "addr", "show"], check=False, quiet=True).stdout
        vips = [v for v in (self.vip, self.server_vip) if v]
        if any(f" {v}/" not in addr for v in vips) or not node.pids_of("mfsmaster"):
            return False
        client = cluster.clients[0] if cluster.clients else None
        if client is None or not client.is_on() or \
                client.run(["mountpoint", "-q", self.mnt], check=False, quiet=True).returncode:
            return True
        # Verified = a file written through the old master reads back.  While
        # the FUSE client reconnects to the new master behind the VIP a read
        # can hang: that is "not yet", and the caller polls until its deadline.
        # SIGKILL: a read waiting on the FUSE daemon ignores TERM.
        try:
            limit = probe_read_limit(cluster)
            proc = client.run(["timeout", "-s", "KILL", str(limit), "cat",
                               f"{self.mnt}/.probe"],
                              check=False, quiet=True, timeout=limit + 10)
        except LabError:
            return False
        return proc.returncode == 0 and proc.stdout.strip() == "ok"

    def write_data(self, cluster, tag):
        client = cluster.clients[0]
        content = f"{tag} {time.time()} {os.urandom(8).hex()}\n" * 2000
        name = f"data-{tag}"
        client.run(["sh", "-c", f"cat > {self.mnt}/{name} && sync"], input=content, quiet=True)
        self.written[name] = hashlib.sha256(content.encode()).hexdigest()

    def check_data(self, cluster, node):
        client = cluster.clients[0]
        for name, digest in self.written.items():
            def readable():
                proc = client.run(["sha256sum", f"{self.mnt}/{name}"], check=False,
                                  quiet=True, timeout=30)
                return proc if proc.returncode == 0 else None
            proc = wait_for(readable, 30, f"{name} readable through the client")
            if proc.stdout.split()[0] != digest:
                raise LabError(f"{name} changed (read through the client)", proc.stdout)

    def rejoined_ok(self, cluster, node):
        if node.name not in cluster.where("drbd-r0", "Unpromoted"):
            return False
        return self.drbd_state(cluster, node.name) == ("Secondary", "UpToDate")


class MfsTwoAddressStack(MfsDrbdStack):
    """The MooseFS stack with SERVER_VIP: the chunkservers' own address before the master,
    the clients' after it (start lets the clients in before their address comes up)."""

    name = "mfs-2vip"
    server_vip = f"{SUBNET}.{FIRST_VIP + 1}"


class MfsMetaloggerStack(MfsDrbdStack):
    """pcs-examples/mfs.sh with its default STORAGE=metalogger: DATA_PATH local on each
    node, a metalogger on every node following the master through the VIP, and the master
    restored from the local metalogger's files on the node taking over. No DRBD.
    Namespace backend only."""

    name = "mfs-ml"
    promotable = None
    metalogger_data = "/srv/mfs-metalogger"     # per node: /srv is private to each node

    def prepare_storage(self, cluster):
        if cluster.backend == "vm":
            raise LabError("the mfs-ml stack runs on the namespace backend only")

    def write_more_config(self, etc):
        (etc / "mfsmetalogger.cfg").write_text(
            f"DATA_PATH = {self.metalogger_data}\nMASTER_HOST = {self.vip}\n"
            "MASTER_RECONNECTION_DELAY = 1\n")

    def configure(self, cluster):
        with step("giving every node an empty DATA_PATH and metalogger directory",
                  cluster.explain):
            for node in cluster.nodes:
                node.run(["sh", "-c",
                          f"set -e; mkdir -p {self.data_path} {self.metalogger_data}; "
                          f"cp /var/lib/mfs/metadata.mfs.empty {self.data_path}/metadata.mfs; "
                          f"chown -R mfs:mfs {self.data_path} {self.metalogger_data}"])
        script = REPO_ROOT / "pcs-examples" / "mfs.sh"
        with step(f"configuring the MooseFS stack with {script.name}", cluster.explain):
            cluster.nodes[0].run(["env", "STORAGE=metalogger", f"VIP={self.vip}",
                                  f"METALOGGER_DATA={self.metalogger_data}", "sh", script],
                                 timeout=180)
        self.start_client(cluster)

    def active_node(self, cluster, via=None):
        status = cluster.status(quiet=True, via=via)
        places = [cluster.where(r, status=status) for r in ("mfs-ip", "mfs-master")]
        if len(places[0]) == 1 and places[0] == places[1]:
            return places[0][0]
        return None

    def rejoined_ok(self, cluster, node):
        return node.name in cluster.where("mfs-metalogger")


STACKS = {"stateful": StatefulStack, "drbd": DrbdStack, "nfs": NfsDrbdStack,
          "nfs-ra": NfsResourceAgentsStack,
          "mfs": MfsDrbdStack, "mfs-2vip": MfsTwoAddressStack, "mfs-ml": MfsMetaloggerStack}
