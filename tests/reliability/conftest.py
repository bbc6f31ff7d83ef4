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
def drbd_agent_path():
    import shutil
    import tempfile
    from drbd_support import install_agent
    root = tempfile.mkdtemp(prefix="pyha-rel-ocf-")
    os.chmod(root, 0o755)
    try:
        yield install_agent(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def drbd_lab(drbd_agent_path):
    """The DRBD emulator with the installed agent (tests/drbd's Lab), two nodes, r0."""
    import tempfile
    from drbd_support import Lab
    base = tempfile.mkdtemp(prefix="pyha-rel-drbd-")
    os.chmod(base, 0o755)
    lab = Lab(base, drbd_agent_path)
    try:
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture
def statd_sandbox(tmp_path, agents_dir):
    """tests/test_nfsnotify.py's sandbox: rpcbind + rpc.statd in a private netns."""
    from test_nfsnotify import StatdSandbox
    sandbox = StatdSandbox(tmp_path, agents_dir)
    yield sandbox
    sandbox.close()
