"""Fixtures of the nfsnotify tests: the real rpcbind and rpc.statd in a private network
namespace (rigs/nfs.py's StatdSandbox)."""

import pytest

from rigs.nfs import StatdSandbox


@pytest.fixture
def statd(tmp_path, agents_dir):
    sandbox = StatdSandbox(tmp_path, agents_dir)
    yield sandbox
    sandbox.close()


@pytest.fixture
def statd_sandbox(statd):
    """The same sandbox, under the name the fault tests use."""
    return statd
