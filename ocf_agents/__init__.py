"""ocf-agents: Pacemaker OCF resource agents in Python (provider "pyha").

Kept empty on purpose: every agent run imports this package, so nothing
here may cost start-up time.
"""
