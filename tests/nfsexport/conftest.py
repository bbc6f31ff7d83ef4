"""Fixtures of the nfsexport tests: simulated NFS server nodes (rigs/nfs.py's Node)."""

import pytest

from rigs.nfs import Node


@pytest.fixture
def make_node(tmp_path, agents_dir):
    def make(name="nodeA"):
        return Node(tmp_path, agents_dir, name)
    return make
