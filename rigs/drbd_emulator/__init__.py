"""The DRBD emulator: drop-in drbdadm/drbdsetup for a machine without the DRBD module
(drbdemu.py: the front ends; emustate.py: the state model; emuformats.py: the output
formats). BIN holds the launchers to put first on PATH; SAMPLES the output of real
DRBD 9 and 8.4 the emulator's formats follow (and the drbd agent's parsers are tested on)."""

from pathlib import Path

HOME = Path(__file__).resolve().parent
BIN = HOME / "bin"
SAMPLES = HOME / "samples"
