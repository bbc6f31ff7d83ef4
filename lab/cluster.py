"""The cluster: nodes on a bridge, corosync.conf, bring-up, quorum, pcs.

The lab's definition (node count, timings, per-node environment) is kept in
LAB_DIR/lab.json so that `down`, `status` and the fence agent in another
process find the same lab.
"""
import json
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import os

from . import BRIDGE, CLIENT_BASE, FIRST_VIP, LAB_DIR, REPO_ROOT, SUBNET, fencing, syslog
from .node import Machine, Node
from .util import LabError, run, say, step, tail, wait_for

CLUSTER_NAME = "pyha-lab"
FENCE_DEVICE = "lab-fence"


def corosync_conf(nodes, token_ms, consensus_ms):
    """corosync.conf text (corosync wants each `{` at the end of a line)."""
    lines = ["totem {", "\tversion: 2", f"\tcluster_name: {CLUSTER_NAME}",
             "\ttransport: knet", "\tcrypto_cipher: none", "\tcrypto_hash: none",
             f"\ttoken: {token_ms}", f"\tconsensus: {consensus_ms}", "}",
             "nodelist {"]
    for node in nodes:
        lines += ["\tnode {", f"\t\tring0_addr: {node.address}", f"\t\tname: {node.name}",
                  f"\t\tnodeid: {node.index}", "\t}"]
    lines += ["}", "quorum {", "\tprovider: corosync_votequorum"]
    if len(nodes) == 2:
        lines.append("\ttwo_node: 1")
    lines += ["}", "logging {", "\tto_logfile: yes",
              "\tlogfile: /var/log/corosync/corosync.log", "\tto_stderr: no",
              "\tto_syslog: no", "\ttimestamp: hires", "}", ""]
    return "\n".join(lines)


class LabNode(Node):
    def __init__(self, index, lab_dir=LAB_DIR, setup=None):
        super().__init__(f"node{index}", f"{SUBNET}.{index}", lab_dir, setup)
        self.index = index


class Cluster:
    backend = "ns"
    # How often the lab asks the cluster while it waits: each question is a crm_mon run
    # on a node, cheap in a namespace.
    poll_s = 0.2

    def __init__(self, n_nodes=2, lab_dir=LAB_DIR, token_ms=1000, consensus_ms=None,
                 clients=()):
        self.lab_dir = Path(lab_dir)
        self.token_ms = token_ms
        self.consensus_ms = consensus_ms or int(token_ms * 1.2)
        # What every node gets on top of the bare cluster: env, path_prefix,
        # binds {target: host dir}, services [argv], hooks {kind: [argv]}.
        self.setup = {}
        self.client_setup = {}
        self.nodes = [LabNode(i, self.lab_dir, self.setup) for i in range(1, n_nodes + 1)]
        self.clients = [Machine(name, f"{SUBNET}.{CLIENT_BASE + i}", self.lab_dir,
                                self.client_setup) for i, name in enumerate(clients)]
        self.stack = None  # name of the configured service stack, if any

    # ---- persistence -------------------------------------------------------
    @property
    def state_file(self):
        return self.lab_dir / "lab.json"

    def save(self):
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({
            "nodes": len(self.nodes), "token_ms": self.token_ms,
            "consensus_ms": self.consensus_ms,
            "clients": [c.name for c in self.clients], "stack": self.stack,
            "backend": self.backend,
            "setup": self.setup, "client_setup": self.client_setup,
        }, indent=1))

    @classmethod
    def load(cls, lab_dir=LAB_DIR):
        """The lab described by lab.json, or None if no lab exists."""
        path = Path(lab_dir) / "lab.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if data.get("backend") == "vm" and cls is Cluster:
            from .vm import VmCluster
            cls = VmCluster
        cluster = cls(data["nodes"], lab_dir, data["token_ms"], data["consensus_ms"],
                      data.get("clients", ()))
        cluster.stack = data.get("stack")
        cluster.setup.update(data.get("setup", {}))
        cluster.client_setup.update(data.get("client_setup", {}))
        return cluster

    # ---- lookups -------------------------------------------------------------
    def node(self, name):
        for node in self.nodes + self.clients:
            if node.name == name:
                return node
        raise LabError(f"no lab node {name}")

    @property
    def floor_s(self):
        """Corosync's detection floor: token timeout + consensus (corosync adds
        token_coefficient, 650 ms, per node beyond two to the token)."""
        token = self.token_ms + 650 * max(0, len(self.nodes) - 2)
        return (token + self.consensus_ms) / 1000.0

    def running_nodes(self):
        return [n for n in self.nodes if n.is_on()]

    def any_node(self, exclude=()):
        for node in self.running_nodes():
            if node.name not in exclude:
                return node
        raise LabError("no running node")

    # ---- bring-up ------------------------------------------------------------
    def create(self):
        with step(f"creating bridge {BRIDGE} and {len(self.nodes)} nodes"):
            if run(["ip", "link", "show", BRIDGE], check=False, quiet=True).returncode != 0:
                run(["ip", "link", "add", BRIDGE, "type", "bridge"])
            run(["ip", "link", "set", BRIDGE, "up"])
            self.save()
            conf = corosync_conf(self.nodes, self.token_ms, self.consensus_ms)
            for node in self.nodes:
                node.create()
                (node.path("/etc/corosync") / "corosync.conf").write_text(conf)
                self._seed_cib(node)
            for client in self.clients:
                client.create()
            fencing.install()
            self.install_agents()
            self.write_hosts()
            self.save()
            # The daemons' syslog (MooseFS, mfsmount, rpc.statd log nowhere else).
            syslog.start_listener(self.lab_dir)

    def write_hosts(self):
        """One /etc/hosts for every lab machine: nodes, clients and the
        floating IPs by name (sm-notify needs a name for its source address)."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{m.address}\t{m.name}" for m in self.nodes + self.clients]
        lines += [f"{SUBNET}.{FIRST_VIP + i}\tvip{i}" for i in range(10)]
        hosts = self.lab_dir / "hosts"
        hosts.write_text("\n".join(lines) + "\n")
        self.setup.setdefault("binds", {})["/etc/hosts"] = str(hosts)
        self.client_setup.setdefault("binds", {})["/etc/hosts"] = str(hosts)

    def install_agents(self):
        """ocf:pyha agents from this checkout (or $PYHA_LAB_AGENTS_FROM) into
        LAB_DIR/ocf, bound over /usr/lib/ocf/resource.d/pyha on every node:
        the nodes run exactly these, whatever the host has installed."""
        source = Path(os.environ.get("PYHA_LAB_AGENTS_FROM", REPO_ROOT))
        if not (source / "ocf_agents" / "__main__.py").exists():
            say(f"no ocf_agents in {source}: ocf:pyha agents not installed")
            return
        ocf_root = self.lab_dir / "ocf"
        run(["/usr/bin/python3", "-m", "ocf_agents", "install", "--ocf-root", ocf_root],
            env={"PYTHONPATH": str(source), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, cwd=source)
        host_dir = Path("/usr/lib/ocf/resource.d/pyha")
        if not host_dir.exists():
            host_dir.mkdir(parents=True)
            self.setup["made_host_dir"] = str(host_dir)  # removed again by destroy()
        self.setup.setdefault("binds", {})[str(host_dir)] = str(ocf_root / "resource.d" / "pyha")

    def _seed_cib(self, node):
        """A first CIB with a short dc-deadtime: the default 20 s is spent
        waiting for peers at every cold start; ours start together."""
        cib = node.path("/var/lib/pacemaker") / "cib" / "cib.xml"
        if cib.exists():
            return
        cib.write_text(run(["cibadmin", "--empty"]).stdout)
        run(["crm_attribute", "--type", "crm_config", "--name", "dc-deadtime",
             "--update", "5s"], env={"CIB_file": str(cib), "PATH": "/usr/sbin:/usr/bin"})
        run(["chown", "hacluster:haclient", cib])
        cib.chmod(0o600)

    def start(self, nodes=None, timeout=60):
        """Boot nodes and start corosync, then pacemakerd; wait until every
        started node is online in Pacemaker."""
        nodes = list(nodes or self.nodes)
        names = " ".join(n.name for n in nodes)
        with step(f"booting {names}", lambda: self.explain(nodes)):
            for node in nodes:
                node.boot()
            for client in self.clients:
                client.boot()
        with step(f"starting corosync on {names}", lambda: self.explain(nodes)):
            for node in nodes:
                node.start_stack()
            for node in nodes:
                wait_for(lambda: node.run(["corosync-cfgtool", "-s"], check=False,
                                          quiet=True).returncode == 0,
                         15, f"corosync on {node.name}")
        with step(f"starting pacemaker on {names}", lambda: self.explain(nodes)):
            for node in nodes:
                node.start_pacemaker()
        self.wait_online(nodes, timeout)

    def wait_online(self, nodes, timeout=60):
        names = {n.name for n in nodes}
        start = time.monotonic()
        with step(f"waiting for {' '.join(sorted(names))} online with a DC",
                  lambda: self.explain(nodes)):
            def online():
                status = self.status(quiet=True, via=nodes[0])
                if status is None or not status["dc"]:
                    return False
                return names <= status["online"]
            wait_for(online, timeout, "the cluster to form", interval=1.0)
        say(f"cluster formed in {time.monotonic() - start:.1f}s")

    # ---- status --------------------------------------------------------------
    def crm_mon_xml(self, via=None):
        node = via or self.any_node()
        proc = node.run(["crm_mon", "-1", "--output-as=xml"], check=False, quiet=True,
                        timeout=30)
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        return ET.fromstring(proc.stdout)

    def status(self, quiet=False, via=None):
        """{'dc': name|None, 'online': {names}, 'unclean': {names},
        'resources': {rsc_id: [(node, role)]}} from crm_mon, or None."""
        try:
            root = self.crm_mon_xml(via)
        except (LabError, ET.ParseError):
            return None
        if root is None:
            return None
        dc = root.find("./summary/current_dc")
        result = {"dc": dc.get("name") if dc is not None and dc.get("present") == "true" else None,
                  "online": set(), "unclean": set(), "resources": {}, "failures": []}
        for n in root.iterfind("./nodes/node"):
            if n.get("online") == "true" and n.get("standby") != "true":
                result["online"].add(n.get("name"))
            if n.get("unclean") == "true":
                result["unclean"].add(n.get("name"))
        for r in root.iter("resource"):
            where = [(x.get("name"), r.get("role")) for x in r.iterfind("node")]
            result["resources"].setdefault(r.get("id"), []).extend(where)
        for f in root.iterfind("./failures/failure"):
            result["failures"].append(dict(f.attrib))
        return result

    def where(self, rsc, role=None, via=None, status=None):
        """Node names where rsc (a primitive id, clone instances merged) runs
        [in role], from status (one crm_mon answer for several questions: under
        emulation each crm_mon costs a VM seconds of CPU) or a new crm_mon."""
        if status is None:
            status = self.status(quiet=True, via=via)
        status = status or {"resources": {}}
        found = []
        for rid, places in status["resources"].items():
            if rid == rsc or rid.split(":")[0] == rsc:
                found += [n for n, r in places if role is None or r == role]
        return sorted(set(found))

    def fence_count(self, node):
        """How often the fence device powered node off (fence.log)."""
        try:
            text = (self.lab_dir / "fence.log").read_text()
        except OSError:
            return 0
        return sum(text.count(f"{action} {node.name}: powered off")
                   for action in ("reboot", "off"))

    # ---- pcs -----------------------------------------------------------------
    def pcs(self, *args, via=None, check=True, timeout=120):
        node = via or self.any_node()
        return node.run(["pcs", *args], check=check, timeout=timeout)

    def configure_fencing(self, enabled=True):
        with step("configuring the lab fence device", lambda: self.explain()):
            hosts = " ".join(n.name for n in self.nodes)
            self.pcs("stonith", "create", FENCE_DEVICE, fencing.AGENT_NAME,
                     f"pcmk_host_list={hosts}", f"lab_dir={self.lab_dir}",
                     "op", "monitor", "interval=60s")
            self.pcs("property", "set", f"stonith-enabled={'true' if enabled else 'false'}")

    # ---- diagnostics ---------------------------------------------------------
    def explain(self, nodes=None, lines=15):
        """The log lines that usually explain a failure, per node."""
        out = []
        for node in nodes or self.nodes:
            out.append(f"--- {node.name} corosync.log")
            out += tail(node.corosync_log, lines)
            out.append(f"--- {node.name} pacemaker.log (errors/warnings)")
            out += tail(node.pacemaker_log, lines,
                        grep=("error:", "warning:", "crit:", "ocf-exit-reason", "notice: Result of",
                              "(log_op_output)"))
            out.append(f"--- {node.name} console")
            out += tail(node.console, lines // 2)
        for client in self.clients:
            out.append(f"--- {client.name} console")
            out += tail(client.console, lines)
        for name, count in (("fence.log", lines // 2), ("syslog.log", lines)):
            log = self.lab_dir / name
            if log.exists():
                out.append(f"--- {name}")
                out += tail(log, count)
        return "\n".join(out)

    # ---- teardown ------------------------------------------------------------
    def destroy(self):
        syslog.stop_listener(self.lab_dir)
        for machine in self.nodes + self.clients:
            machine.destroy()
        leftovers(self.lab_dir)
        release_loop_devices(self.lab_dir)
        fencing.uninstall()
        made = self.setup.get("made_host_dir")
        if made:
            try:
                os.rmdir(made)
            except OSError:
                pass
        if run(["ip", "link", "show", BRIDGE], check=False, quiet=True).returncode == 0:
            run(["ip", "link", "del", BRIDGE], check=False)
        shutil.rmtree(self.lab_dir, ignore_errors=True)


def build(cluster, stack=None, fencing=True):
    """Create and start a (not yet created) cluster of either backend, turn fencing on
    (or off) and configure the stack; returns the cluster."""
    cluster.stack = stack.name if stack else None
    cluster.create()
    if stack:
        stack.prepare(cluster)
    cluster.start()
    cluster.configure_fencing(enabled=fencing)
    if stack:
        stack.configure(cluster)
    return cluster


def release_loop_devices(lab_dir=LAB_DIR):
    """Detach every loop device whose backing file lies in the lab directory.  The DRBD
    emulator detaches the devices it knows of when a node powers off, but a drbdemu that
    the power-off SIGKILLed between its losetup and saving its state leaves one nobody
    records (seen in CI: a "(deleted)" image still attached after `lab down`).  A device
    still mounted somewhere is only marked auto-clear by the kernel and goes on last close."""
    prefix = str(Path(lab_dir)) + "/"
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            target = backing.read_text().strip()
        except OSError:
            continue                 # detached meanwhile
        if target.startswith(prefix):
            run(["losetup", "-d", "/dev/" + backing.parent.parent.name], check=False, quiet=True)


def leftovers(lab_dir=LAB_DIR):
    """Remove whatever carries the lab prefix but is not in lab.json (a lab
    whose state file was lost, or a half-made one)."""
    from . import NETNS_PREFIX
    netns = run(["ip", "netns", "list"], check=False, quiet=True).stdout.split()
    links = [line.split()[0].split("@")[0] for line in
             run(["ip", "-br", "link"], check=False, quiet=True).stdout.splitlines()]
    names = {n[len(NETNS_PREFIX):] for n in netns + links if n.startswith(NETNS_PREFIX)}
    for name in names:
        Machine(name, None, lab_dir).destroy()
