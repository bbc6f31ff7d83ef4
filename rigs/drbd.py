"""The DRBD emulator as the drbd agent's tests, its fault tests and the emulator's own tests
drive it: Emu (a private emulator state, commands run "on" a node) and Lab (the emulator plus
the installed agent, a recording crm_attribute and per-node HA_RSCTMP).
"""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile

from .drbd_emulator import BIN as EMU_BIN


def mounts_under(prefix):
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt.startswith(prefix):
                found.append(mnt)
    return found


def local_node_name():
    return os.uname().nodename


class Emu:
    """One emulated DRBD lab: shared state directory, commands run 'on' a node."""

    def __init__(self, base):
        self.base = base
        self.state = os.path.join(base, "state")
        self.dev = os.path.join(base, "dev")
        self.env = dict(os.environ, DRBDEMU_STATE=self.state,
                        PATH="%s:%s" % (EMU_BIN, os.environ.get("PATH", "/usr/sbin:/usr/bin")))
        self.env.pop("DRBDEMU_NODE", None)

    def node_env(self, node):
        env = dict(self.env)
        if node:
            env["DRBDEMU_NODE"] = node
        return env

    def run(self, node, *argv, check=False, timeout=30):
        return subprocess.run([str(a) for a in argv], env=self.node_env(node), text=True,
                              capture_output=True, check=check, timeout=timeout)

    def admin(self, *argv):
        p = self.run(None, "drbdemu", *argv)
        assert p.returncode == 0, p.stderr
        return p.stdout

    def init(self, res="r0", nodes="node1,node2", minor=0, size="16M", **opts):
        argv = ["init", res, "--nodes", nodes, "--minor", str(minor), "--size", size,
                "--device", opts.pop("device", os.path.join(self.dev, "drbd%d" % minor))]
        for k, v in opts.items():
            flag = "--" + k.replace("_", "-")
            argv += [flag] if v is True else [flag, str(v)]
        self.admin(*argv)
        return os.path.join(self.dev, "drbd%d" % minor)

    def proc_drbd(self, node):
        """The emulator's stand-in for node's /proc/drbd (written at every state change)."""
        return os.path.join(self.state, "proc", node or local_node_name(), "drbd")

    def state_of(self, res="r0"):
        return json.loads(self.admin("status", res))

    def image(self, res, node):
        return self.admin("image", res, node).strip()

    def write(self, node, res="r0", offset=0, data=b"written\n" * 512):
        """A write by `node`'s Primary: through its block device (the loop device behind
        /dev/drbdN), flushed, as an application's fsync would."""
        loop = self.state_of(res)["node"][node]["loop"]
        assert loop, "%s is not Primary on %s" % (res, node)
        fd = os.open(loop, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def mount(self, device, name):
        mnt = os.path.join(self.base, name)
        os.makedirs(mnt, exist_ok=True)
        subprocess.run(["mount", device, mnt], check=True, capture_output=True)
        return mnt

    def cleanup(self):
        for mnt in sorted(mounts_under(self.base), reverse=True):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        if os.path.isdir(self.state):
            for f in os.listdir(self.state):
                if f.endswith(".json"):
                    self.run(None, "drbdemu", "destroy", f[:-5])
        # a crashed node's loop with a lingering mount detaches itself (autoclear); make sure
        p = subprocess.run(["losetup", "-a"], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            if self.base in line:
                subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


FAKE_CRM_ATTRIBUTE = """#!/bin/sh
# records every call, and keeps node attributes as files $FAKE_CRM_DIR/<node>/<name> so a
# --query answers like crm_attribute (value on stdout, rc 105 when the attribute is not set)
printf '%s\\n' "$*" >> "$FAKE_CRM_LOG"
node=$(uname -n) name= value= mode=query
while [ $# -gt 0 ]; do
    case "$1" in
        --node|-N) node=$2; shift ;;
        --name|-n) name=$2; shift ;;
        --update|-v) value=$2; mode=update; shift ;;
        --delete|-D) mode=delete ;;
    esac
    shift
done
file="$FAKE_CRM_DIR/$node/$name"
case $mode in
    update) mkdir -p "$FAKE_CRM_DIR/$node" && printf '%s\\n' "$value" > "$file" ;;
    delete) rm -f "$file" ;;
    query) [ -f "$file" ] || { echo "Error performing operation: No such device or address" >&2
                               exit 105; }
           cat "$file" ;;
esac
"""


class Lab(Emu):
    """The emulator plus the installed agent, a recording crm_attribute and per-node HA_RSCTMP."""

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, agent, prefix="pyha-drbd-"):
        """A Lab in a fresh directory, cleaned up (unmounted, loops released) afterwards."""
        base = tempfile.mkdtemp(prefix=prefix)
        os.chmod(base, 0o755)
        lab = cls(base, agent)
        try:
            yield lab
        finally:
            lab.cleanup()

    def __init__(self, base, agent):
        super().__init__(base)
        self.agent_path = agent
        self.fake_bin = os.path.join(base, "fakebin")
        os.makedirs(self.fake_bin)
        path = os.path.join(self.fake_bin, "crm_attribute")
        with open(path, "w") as f:
            f.write(FAKE_CRM_ATTRIBUTE)
        os.chmod(path, 0o755)
        self.crm_log = os.path.join(base, "crm_attribute.log")
        open(self.crm_log, "w").close()
        self.env["PATH"] = "%s:%s" % (self.fake_bin, self.env["PATH"])
        self.env["FAKE_CRM_LOG"] = self.crm_log
        self.env["FAKE_CRM_DIR"] = os.path.join(base, "attributes")

    def agent_env(self, node, params=None, meta=None, instance="p_drbd_r0:0"):
        env = self.node_env(node)
        env.update(OCF_ROOT="/usr/lib/ocf", OCF_RESOURCE_INSTANCE=instance,
                   OCF_RESOURCE_TYPE="drbd", HA_RSCTMP=os.path.join(self.base, "rsc-" + node),
                   OCF_RESKEY_CRM_meta_on_node=node)
        p = {"drbd_resource": "r0", "wfc_timeout": "1",
             "proc_drbd": self.proc_drbd(node)}
        p.update(params or {})
        m = {"clone_max": "2", "clone_node_max": "1", "promoted_max": "1",
             "promoted_node_max": "1", "notify": "true", "promotable": "true"}
        m.update(meta or {})
        for k, v in p.items():
            if v is None:
                env.pop("OCF_RESKEY_" + k, None)
            else:
                env["OCF_RESKEY_" + k] = str(v)
        for k, v in m.items():
            if v is not None:
                env["OCF_RESKEY_CRM_meta_" + k] = str(v)
        return env

    def agent(self, node, action, params=None, meta=None, timeout=60):
        if action == "monitor":     # a recurring monitor unless the test asks for a probe
            meta = dict({"interval": "10000"}, **(meta or {}))
        return subprocess.run([self.agent_path, action], env=self.agent_env(node, params, meta),
                              capture_output=True, text=True, timeout=timeout)

    def ocf_tester(self):
        """ocf-tester's whole sequence against this lab's agent on a single-node
        resource r0 (nothing degraded), as Pacemaker would run it: only the parameters
        ocf-tester passes (its own OCF_RESKEY_*), the emulator first on PATH."""
        self.init("r0", nodes=local_node_name())
        env = self.agent_env(local_node_name())
        for k in list(env):
            if k.startswith("OCF_RESKEY") or k == "OCF_RESOURCE_INSTANCE":
                del env[k]
        env.pop("DRBDEMU_NODE", None)
        return subprocess.run(["ocf-tester", "-n", "p_drbd_r0", "-o", "drbd_resource=r0",
                               "-o", "wfc_timeout=0", "-o", "proc_drbd=" + self.proc_drbd(None),
                               self.agent_path],
                              env=env, capture_output=True, text=True, timeout=120)

    def crm_calls(self, since=0):
        with open(self.crm_log) as f:
            return f.read().splitlines()[since:]

    def attribute(self, node, name):
        """Last value written for a node attribute (None when deleted / never set)."""
        value = None
        for line in self.crm_calls():
            words = line.split()
            if "--name" in words and words[words.index("--name") + 1] == name and \
                    words[words.index("--node") + 1] == node:
                value = words[words.index("--update") + 1] if "--update" in words else None
        return value


def start_pair(lab, params=None, **init):
    """The tests' usual start: resource r0 made (init options), the agent started on
    node1 and node2."""
    lab.init("r0", **init)
    for n in ("node1", "node2"):
        p = lab.agent(n, "start", params)
        assert p.returncode == 0, p.stderr
    return lab
