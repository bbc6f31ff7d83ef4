"""Helpers shared by the DRBD tests (a uniquely named module: tests/conftest.py exists too)."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parents[1]
EMU_BIN = REPO / "tests" / "drbd_emulator" / "bin"
SAMPLES = TESTS / "samples"


def mounts_under(prefix):
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt.startswith(prefix):
                found.append(mnt)
    return found


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

    def state_of(self, res="r0"):
        return json.loads(self.admin("status", res))

    def image(self, res, node):
        return self.admin("image", res, node).strip()

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
