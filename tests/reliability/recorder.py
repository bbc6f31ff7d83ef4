"""pytest plugin for bench/reliability.py: one JSON line per fault scenario.

A scenario is a test marked ``@pytest.mark.fault("<agent>")`` (or, for the
fault tests that predate this directory, a test in a file named after its
agent: test_nfsexport_faults.py). A scenario "survived" when the test passed.
Tests measure the data they guard and report it with
``record_property("data_lost", n)`` before asserting it is zero.

Enable with ``-p recorder`` (tests/reliability on PYTHONPATH) and
PYHA_RELIABILITY_RESULTS=<file>.
"""

import json
import os
from pathlib import Path

import pytest

AGENTS = ("nfsexport", "nfsnotify", "mfsmaster", "drbd")


def scenario_agent(item):
    marker = item.get_closest_marker("fault")
    if marker is not None:
        return marker.args[0]
    stem = Path(str(item.fspath)).stem
    for agent in AGENTS:
        if stem.startswith(f"test_{agent}") and ("fault" in stem or "fault" in item.name
                                                 or "concurrent" in item.name
                                                 or "symlink" in item.name):
            return agent
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    path = os.environ.get("PYHA_RELIABILITY_RESULTS")
    agent = scenario_agent(item)
    if not path or agent is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        lost = sum(int(v) for k, v in item.user_properties if k == "data_lost")
        with open(path, "a") as f:
            f.write(json.dumps({"agent": agent, "test": item.nodeid,
                                "outcome": report.outcome, "data_lost": lost}) + "\n")
