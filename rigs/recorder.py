"""pytest plugin for bench/reliability.py: one JSON line per fault scenario.

A scenario is a test marked ``@pytest.mark.fault("<agent>")`` (each agent's fault and
safe-file tests in tests/<agent>/, and the fault tests among its other tests). A scenario
"survived" when the test passed. Tests measure the data they guard and report it with
``record_property("data_lost", n)`` before asserting it is zero.

Enable with ``-p rigs.recorder`` and PYHA_RELIABILITY_RESULTS=<file>.
"""

import json
import os

import pytest


def scenario_agent(item):
    marker = item.get_closest_marker("fault")
    return marker.args[0] if marker is not None else None


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
