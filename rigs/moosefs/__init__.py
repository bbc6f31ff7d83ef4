"""The MooseFS harness: a real MooseFS (master, metalogger, chunkservers, FUSE client) in a
private network namespace (mfslab.MfsLab), the installed ocf:pyha:mfsmaster run inside it
(agent.py), and the stand-alone programs they run by path: mfsprobe.py (asks a master for
its state over the client port), mfstree.py (writes or checksums files through the client)
and fakebin/crm_attribute (a file-backed stand-in for Pacemaker's, first on the agent's PATH).
"""

from pathlib import Path

HOME = Path(__file__).resolve().parent
PROBE = HOME / "mfsprobe.py"
TREE = HOME / "mfstree.py"
FAKEBIN = HOME / "fakebin"
