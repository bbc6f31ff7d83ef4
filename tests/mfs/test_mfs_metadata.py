"""The committed meta-data is the one the code generates."""
from pathlib import Path

WORKTREE = Path(__file__).resolve().parents[2]


def test_committed_metadata_equals_the_generated_xml():
    from ocf_agents.mfsmaster import AGENT
    assert (WORKTREE / "metadata" / "mfsmaster.xml").read_text() == AGENT.metadata_xml()
