"""Fixtures for the DRBD agent and emulator tests.

`emu` gives a private emulator state directory (/tmp/pyha-drbd-*), an environment whose PATH
starts with the emulator's bin/, and a cleanup that unmounts, releases loop devices and
deletes everything it created.
"""

import tempfile

import pytest

from drbd_support import Emu


@pytest.fixture
def emu():
    e = Emu(tempfile.mkdtemp(prefix="pyha-drbd-"))
    try:
        yield e
    finally:
        e.cleanup()
