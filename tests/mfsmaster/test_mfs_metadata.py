"""The committed meta-data is the one the code generates."""
from rigs.agents import REPO


def test_committed_metadata_equals_the_generated_xml():
    from ocf_agents.mfsmaster import AGENT
    assert (REPO / "metadata" / "mfsmaster.xml").read_text() == AGENT.metadata_xml()
