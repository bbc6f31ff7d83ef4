"""Fixtures for the rigs' own tests.

`emu` gives a private DRBD emulator state directory (/tmp/pyha-drbd-*), an environment whose
PATH starts with the emulator's bin/, and a cleanup that unmounts, releases loop devices and
deletes everything it created (rigs/drbd.py's Emu).
"""

import tempfile

import pytest

from rigs.drbd import Emu


@pytest.fixture
def emu():
    e = Emu(tempfile.mkdtemp(prefix="pyha-drbd-"))
    try:
        yield e
    finally:
        e.cleanup()
