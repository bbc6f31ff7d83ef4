"""The service stacks the lab configures and fails over.

A stack knows how to configure itself with pcs, where its service is active,
how to prove the service works on a node, what data to write before a failure
and how to check that data afterwards.  Scenarios (scenarios.py) drive them.
"""
import time

from .util import LabError, say, step, wait_for


class Stack:
    name = "?"
    service_process = None      # comm of the process a kill -9 scenario kills
    promotable = None           # primitive id of the promotable clone, if any

    def configure(self, cluster):
        raise NotImplementedError

    def active_node(self, cluster, via=None):
        """Name of the node the service runs on, or None."""
        raise NotImplementedError

    def service_ok(self, cluster, node):
        """True when the service is verified working on node (a Node)."""
        raise NotImplementedError

    def write_data(self, cluster, tag):
        """Write data tagged `tag` through the service; remember it."""

    def check_data(self, cluster, node):
        """Raise LabError unless everything written so far is there."""

    def rejoined_ok(self, cluster, node):
        """True when a recovered node is back as a healthy standby."""
        return node.name in (cluster.status(quiet=True) or {"online": ()})["online"]

    def wait_active(self, cluster, timeout=60):
        def active():
            name = self.active_node(cluster)
            return name if name and self.service_ok(cluster, cluster.node(name)) else None
        return cluster.node(wait_for(active, timeout, f"the {self.name} service to start"))


class StatefulStack(Stack):
    """Pacemaker's own test agents: a Stateful promotable clone and a Dummy
    service that follows the Promoted instance.  Proves the lab itself."""

    name = "stateful"
    promotable = "state"

    def configure(self, cluster):
        with step("configuring Dummy + Stateful promotable clone", cluster.explain):
            pcs = cluster.pcs
            pcs("resource", "defaults", "update", "resource-stickiness=100")
            pcs("resource", "create", "state", "ocf:pacemaker:Stateful",
                "op", "monitor", "interval=5s", "role=Promoted",
                "op", "monitor", "interval=6s", "role=Unpromoted",
                "promotable", "notify=true", "--disabled")
            pcs("resource", "create", "service", "ocf:pacemaker:Dummy",
                "op", "monitor", "interval=5s", "--disabled")
            pcs("constraint", "colocation", "add", "service", "with", "Promoted",
                "state-clone", "INFINITY")
            pcs("constraint", "order", "promote", "state-clone", "then", "start", "service")
            pcs("resource", "enable", "state-clone", "service")
        self.wait_active(cluster)

    def active_node(self, cluster, via=None):
        started = cluster.where("service", via=via)
        promoted = cluster.where("state", "Promoted", via=via)
        if len(started) == 1 and started == promoted:
            return started[0]
        return None

    def service_ok(self, cluster, node):
        # The Dummy agent's state file is the "service": it exists only where
        # the agent really started it.
        proc = node.run(["crm_resource", "--force-check", "-r", "service"], check=False,
                        quiet=True)
        return proc.returncode == 0

    def rejoined_ok(self, cluster, node):
        return node.name in cluster.where("state", "Unpromoted")


STACKS = {"stateful": StatefulStack}
