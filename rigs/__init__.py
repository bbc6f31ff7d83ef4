"""Shared test rigs: what tests/, lab/ and bench/ import (the DRBD emulator, the
MooseFS harness, the NFS sandbox, the VM machinery). Never imports tests/."""
