"""Fault, concurrency and safe-file tests for every agent (issue 6).

Each scenario is marked ``fault("<agent>")`` so bench/reliability.py can count
scenarios run and survived per agent (see recorder.py). Fixtures from
tests/conftest.py (make_node, agents_dir), tests/test_nfsnotify.py (the statd
sandbox), tests/drbd (the DRBD emulator lab) and tests/mfs (a real MooseFS in a
network namespace) are reused.
"""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for extra in (TESTS, TESTS / "drbd", TESTS / "mfs"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(agent): a fault scenario of that agent, counted "
                                       "by bench/reliability.py")


@pytest.fixture
def not_a_program(tmp_path):
    """An empty, non-executable file to bind-mount over a tool: "not installed"."""
    path = tmp_path / "pyha-rel-not-a-program"
    path.write_text("")
    path.chmod(0o644)
    return path


@pytest.fixture(scope="session")
def drbd_agent_path(agents_dir):
    return str(agents_dir / "drbd")


@pytest.fixture
def drbd_lab(drbd_agent_path):
    """The DRBD emulator with the installed agent (tests/drbd's Lab), two nodes, r0."""
    from drbd_support import Lab
    with Lab.temporary(drbd_agent_path, prefix="pyha-rel-drbd-") as lab:
        yield lab


@pytest.fixture
def statd_sandbox(tmp_path, agents_dir):
    """tests/test_nfsnotify.py's sandbox: rpcbind + rpc.statd in a private netns."""
    from test_nfsnotify import StatdSandbox
    sandbox = StatdSandbox(tmp_path, agents_dir)
    yield sandbox
    sandbox.close()


MFS_FAKEBIN = TESTS / "mfs" / "fakebin"


class MfsAgent:
    """Runs the installed ocf:pyha:mfsmaster inside an MfsLab's network namespace,
    with tests/mfs's file-backed crm_attribute."""

    def __init__(self, lab, path):
        self.lab = lab
        self.path = path
        self.state = lab.root / "rsctmp"
        self.state.mkdir(exist_ok=True)
        self.cib = lab.root / "cib.json"

    def env(self, params, timeout=60, interval=0, path_first=None):
        env = {"PATH": f"{MFS_FAKEBIN}:/usr/sbin:/usr/bin:/sbin:/bin",
               "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "mfs",
               "OCF_RESOURCE_TYPE": "mfsmaster",
               "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000)),
               "OCF_RESKEY_CRM_meta_interval": str(interval),
               "HA_RSCTMP": str(self.state), "PYHA_MFS_CIB": str(self.cib)}
        if path_first:
            env["PATH"] = f"{path_first}:{env['PATH']}"
        env.update({f"OCF_RESKEY_{k}": str(v) for k, v in params.items()})
        return env

    def argv(self, action, wrap=None):
        argv = [str(self.path), action]
        return self.lab.ns(wrap(argv) if wrap else argv)

    def __call__(self, action, timeout=60, interval=0, wrap=None, **params):
        import subprocess
        return subprocess.run(self.argv(action, wrap), env=self.env(params, timeout, interval),
                              capture_output=True, text=True, timeout=timeout + 30)


@pytest.fixture
def mfs(agents_dir):
    """(lab, agent): a private MooseFS namespace and the agent to run in it."""
    import shutil as _shutil
    if not (_shutil.which("mfsmaster") and _shutil.which("mfsmount")
            and os.path.exists("/dev/fuse")):
        pytest.skip("MooseFS (moosefs-master, moosefs-client) and /dev/fuse needed")
    from mfslab import MfsLab
    lab = MfsLab()
    try:
        yield lab, MfsAgent(lab, agents_dir / "mfsmaster")
    finally:
        lab.destroy()
