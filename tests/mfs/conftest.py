"""Fixtures for the MooseFS master agent: a real MooseFS in a private network namespace."""
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mfslab import MfsLab  # noqa: E402

REQUIRED = ["mfsmaster", "mfsmetalogger", "mfschunkserver", "mfsmount", "mfsmetadump",
            "nsenter", "ip"]


def pytest_collection_modifyitems(config, items):
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
            if Path(str(item.fspath)).resolve().is_relative_to(here):
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
