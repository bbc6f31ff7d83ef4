"""Fixtures for the DRBD agent tests and its fault tests.

`lab` (and `drbd_lab`, the fault tests' name for it) gives the DRBD emulator with the
installed agent, a recording crm_attribute and per-node HA_RSCTMP (rigs/drbd.py's Lab) in a
private directory, unmounted, its loop devices released and deleted afterwards.
"""

import pytest

from rigs.drbd import Lab


@pytest.fixture(scope="session")
def agent_path(agents_dir):
    """The drbd agent of the shared installation (tests/conftest.py)."""
    return str(agents_dir / "drbd")


@pytest.fixture
def lab(agent_path):
    with Lab.temporary(agent_path) as e:
        yield e


@pytest.fixture
def drbd_lab(agent_path):
    """The same, for the fault tests (in /tmp/pyha-rel-drbd-*)."""
    with Lab.temporary(agent_path, prefix="pyha-rel-drbd-") as lab:
        yield lab
