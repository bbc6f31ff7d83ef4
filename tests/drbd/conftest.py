"""Fixtures for the DRBD agent and emulator tests.

`emu` gives a private emulator state directory (/tmp/pyha-drbd-*), an environment whose PATH
starts with the emulator's bin/, and a cleanup that unmounts, releases loop devices and
deletes everything it created. `lab` adds the installed agent and a recording crm_attribute.
"""

import tempfile

import pytest

from drbd_support import Emu, Lab


@pytest.fixture
def emu():
    e = Emu(tempfile.mkdtemp(prefix="pyha-drbd-"))
    try:
        yield e
    finally:
        e.cleanup()


@pytest.fixture(scope="session")
def agent_path(agents_dir):
    """The drbd agent of the shared installation (tests/conftest.py)."""
    return str(agents_dir / "drbd")


@pytest.fixture
def lab(agent_path):
    with Lab.temporary(agent_path) as e:
        yield e
