"""Fixtures every agent's tests share: the agents installed once per session, and the
stand-in for a missing program. The rigs they use live in rigs/ (rigs/agents.py,
rigs/nfs.py, rigs/drbd.py, rigs/moosefs/); each agent's own fixtures are in its
directory's conftest.py.
"""

import os
import shutil
import tempfile

import pytest

# Before any rig is imported: their asserts explain themselves as a test's do.
pytest.register_assert_rewrite("rigs.agents", "rigs.nfs", "rigs.drbd", "rigs.faults",
                               "rigs.fuzz", "rigs.moosefs")

from rigs.agents import install_agents  # noqa: E402


@pytest.fixture(scope="session")
def agents_dir():
    """The agents installed into a private OCF root readable by everyone
    (ocf-tester runs meta-data as the user nobody)."""
    root = tempfile.mkdtemp(prefix="pyha-ocf-")
    os.chmod(root, 0o755)
    yield install_agents(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def not_a_program(tmp_path):
    """An empty, non-executable file to bind-mount over a tool: "not installed"."""
    path = tmp_path / "pyha-rel-not-a-program"
    path.write_text("")
    path.chmod(0o644)
    return path
