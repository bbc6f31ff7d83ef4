"""Shared fixtures: installed agents, and private NFS state so tests never
touch the host's /var/lib/nfs.

Agents run as real processes, the way Pacemaker runs them. A test "node" is
a private copy of /var/lib/nfs bind-mounted over the real path inside a
throw-away mount namespace for each agent call (unshare -m), plus its own
HA_RSCTMP.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
NFS_SKELETON = Path("/var/lib/nfs")


def install_agents(ocf_root):
    subprocess.run([PYTHON, "-m", "ocf_agents", "install", "--ocf-root", str(ocf_root)],
                   env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
                   stdout=subprocess.DEVNULL)
    return Path(ocf_root) / "resource.d" / "pyha"


@pytest.fixture(scope="session")
def agents_dir():
    """The agents installed into a private OCF root readable by everyone
    (ocf-tester runs meta-data as the user nobody)."""
    root = tempfile.mkdtemp(prefix="pyha-ocf-")
    os.chmod(root, 0o755)
    yield install_agents(root)
    shutil.rmtree(root, ignore_errors=True)


class Node:
    """One simulated NFS server node: private /var/lib/nfs, HA_RSCTMP, PATH."""

    def __init__(self, base, agents_dir, name):
        self.name = name
        self.base = Path(base) / name
        self.nfs = self.base / "nfs"
        self.rsctmp = self.base / "run"
        self.bin = self.base / "bin"
        self.agents_dir = agents_dir
        self.nfs.mkdir(parents=True)
        self.rsctmp.mkdir()
        self.bin.mkdir()
        for name in ("etab", "rmtab"):
            (self.nfs / name).write_text("")
            (self.nfs / name).chmod(0o644)
        for name in ("sm", "sm.bak"):
            (self.nfs / name).mkdir()
        self.extra_mounts = []  # (source, target) bind mounts inside the namespace
        self.prelude = ""  # more shell run inside the namespace before the agent

    def env(self, params, instance="export1", **extra):
        env = {
            "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": instance,
            "HA_RSCTMP": str(self.rsctmp),
        }
        env.update({f"OCF_RESKEY_{k}": str(v) for k, v in params.items()})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def command(self, argv):
        """argv wrapped to run with this node's /var/lib/nfs."""
        mounts = [(str(self.nfs), "/var/lib/nfs")] + self.extra_mounts
        script = "".join(f'mount --bind "${i * 2 + 1}" "${i * 2 + 2}"\n'
                         for i in range(len(mounts)))
        script += self.prelude + f"shift {len(mounts) * 2}\nexec \"$@\"\n"
        flat = [part for pair in mounts for part in pair]
        return ["unshare", "-m", "--propagation", "private", "sh", "-ec", script, "sh",
                *flat, *argv]

    def agent(self, agent, action, params, instance="export1", timeout=60, **extra):
        argv = self.command([str(self.agents_dir / agent), action])
        return subprocess.run(argv, env=self.env(params, instance, **extra), text=True,
                              capture_output=True, timeout=timeout)

    def read(self, name):
        return (self.nfs / name).read_text()

    def write(self, name, text):
        (self.nfs / name).write_text(text)


@pytest.fixture
def make_node(tmp_path, agents_dir):
    def make(name="nodeA"):
        return Node(tmp_path, agents_dir, name)
    return make

