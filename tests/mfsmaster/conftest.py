"""Fixtures for the MooseFS master agent: a real MooseFS in a private network namespace
(rigs/moosefs)."""
import os
import shutil
from pathlib import Path

import pytest

from rigs.moosefs.agent import AgentRunner, MfsAgent
from rigs.moosefs.mfslab import MfsLab

REQUIRED = ["mfsmaster", "mfsmetalogger", "mfschunkserver", "mfsmount", "mfsmetadump",
            "nsenter", "ip"]


def pytest_collection_modifyitems(config, items):
    """The tests here that run a MooseFS (every one using `lab`) skip, with the reason, where
    it cannot run (the hook sees every directory's items)."""
    missing = [tool for tool in REQUIRED if not shutil.which(tool)]
    reason = None
    if os.geteuid() != 0:
        reason = "MooseFS tests need root (network namespaces, FUSE)"
    elif missing:
        reason = f"missing {', '.join(missing)} (apt-get install moosefs-master " \
                 "moosefs-metalogger moosefs-chunkserver moosefs-client moosefs-cli fuse3)"
    elif not os.path.exists("/dev/fuse"):
        reason = "no /dev/fuse"
    if reason:
        here = Path(__file__).resolve().parent
        for item in items:
            if Path(str(item.fspath)).resolve().is_relative_to(here) and \
                    "lab" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def lab(request):
    """An empty lab: namespace with lo up and 10.213.0.200, a 0755 directory. Torn down always."""
    the_lab = MfsLab()
    yield the_lab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(the_lab.logs())
    the_lab.destroy()


@pytest.fixture
def cluster(lab):
    """Master, metalogger, two chunkservers and a FUSE client, ready for writes."""
    parts = lab.start_cluster(chunkservers=2)
    return lab, parts


@pytest.fixture
def agent(lab, agents_dir):
    """Runs the installed ocf:pyha:mfsmaster inside the lab's network namespace."""
    return AgentRunner(lab, agents_dir / "mfsmaster")


@pytest.fixture(params=["single-pass", "staged"])
def restoring_agent(lab, agents_dir, request):
    """The agent, once per restore_method."""
    return AgentRunner(lab, agents_dir / "mfsmaster", restore_method=request.param)


@pytest.fixture
def mfs(agents_dir):
    """(lab, agent) for the fault tests: a private MooseFS namespace and the agent to run in
    it."""
    if not (shutil.which("mfsmaster") and shutil.which("mfsmount")
            and os.path.exists("/dev/fuse")):
        pytest.skip("MooseFS (moosefs-master, moosefs-client) and /dev/fuse needed")
    lab = MfsLab()
    try:
        yield lab, MfsAgent(lab, agents_dir / "mfsmaster")
    finally:
        lab.destroy()
