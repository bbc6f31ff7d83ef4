"""metadata/drbd.xml is exactly what the agent generates, and it validates."""

import os
import subprocess

from rigs.agents import PYTHON, REPO


def test_committed_metadata_equals_generated():
    p = subprocess.run([PYTHON, "-m", "ocf_agents", "metadata", "--check",
                        str(REPO / "metadata"), "drbd"],
                       env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_metadata_validates_against_ra_api_dtd():
    dtd = "/usr/share/resource-agents/ra-api-1.dtd"
    p = subprocess.run(["xmllint", "--noout", "--dtdvalid", dtd, str(REPO / "metadata" / "drbd.xml")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
