"""Fixtures of the nfsserver tests: the real rpcbind and rpc.statd in a private network
namespace (rigs/nfs.py's StatdSandbox), for the in-process RPC client."""

import pytest

from rigs.nfs import StatdSandbox


@pytest.fixture
def statd(tmp_path, agents_dir):
    sandbox = StatdSandbox(tmp_path, agents_dir)
    yield sandbox
    sandbox.close()
