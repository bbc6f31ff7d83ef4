"""The lab itself: a 2-node cluster forms, fencing is real, a promotable clone
fails over on a node crash, and `down` leaves nothing behind."""
import os
import subprocess
from pathlib import Path

import pytest

from lab import BRIDGE, LAB_DIR, NETNS_PREFIX, fencing
from lab.node import EMPTIED_FILES
from lab.scenarios import run_scenario, table
from lab.stacks import StatefulStack

pytestmark = pytest.mark.lab


def _agent(*argv, stdin=""):
    return subprocess.run([str(fencing.AGENT_PATH), *argv], input=stdin,
                          capture_output=True, text=True, timeout=30)


def _leftovers():
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {n}" for n in netns.split() if n.startswith(NETNS_PREFIX)]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split()[0]}" for line in links.splitlines()
              if line.startswith((NETNS_PREFIX, BRIDGE))]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pyha-lab-holder" in cmdline:
            found.append(f"process {pid} {cmdline!r}")
    found += [f"path {p}" for p in (LAB_DIR, fencing.AGENT_PATH) if p.exists()]
    return found


def test_cluster_forms_with_fencing_and_fails_over_a_promotable_clone_on_crash(lab_factory):
    cluster = lab_factory(2)
    status = cluster.status()
    assert status["online"] == {"node1", "node2"} and status["dc"]
    props = cluster.pcs("property", "config", "--all").stdout
    assert "stonith-enabled: true" in props

    # The fence agent speaks the fence-agents protocol both ways.
    meta = _agent("-o", "metadata")
    assert meta.returncode == 0 and "<resource-agent name=\"fence_pyha_lab\"" in meta.stdout
    assert _agent(stdin=f"action=status\nplug=node1\nlab_dir={LAB_DIR}\n").returncode == 0
    assert _agent(stdin=f"action=list\nlab_dir={LAB_DIR}\n").stdout.split() == \
        ["node1,", "node2,"]
    assert _agent(stdin="action=off\nplug=nosuchnode\n").returncode == 1

    stack = StatefulStack()
    stack.configure(cluster)
    result = run_scenario(cluster, stack, "crash")
    print("\n" + table([result]))
    # Fencing really ran: the survivor's fence device powered the victim off.
    fence_log = (LAB_DIR / "fence.log").read_text()
    assert f"on {result.new_node}: reboot {result.failed_node}: powered off" in fence_log
    assert result.failover_s <= cluster.floor_s + 5
    # The recovered node is back as Unpromoted, the service stayed put.
    assert stack.active_node(cluster) == result.new_node
    assert result.failed_node in cluster.where("state", "Unpromoted")


def test_a_login_shell_on_a_node_runs_no_profile_of_the_host(lab_factory):
    # ocf:heartbeat:anything starts its daemon through `su -`; the host's profile (pyenv,
    # conda, ...) must neither slow nor hang it, while /root (perhaps our repository) stays.
    cluster = lab_factory(2, fencing=False)
    node = cluster.nodes[0]
    for name in EMPTIED_FILES:
        if Path(name).is_file():
            assert node.run(["cat", name]).stdout == "", name
    assert node.run(["su", "-", "root", "-c", "echo ok"], timeout=10).stdout == "ok\n"
    assert set(node.run(["ls", "-A", "/root"]).stdout.split()) == set(os.listdir("/root"))


def test_down_leaves_nothing_behind(lab_factory):
    cluster = lab_factory(2)
    assert _leftovers()
    node = cluster.nodes[0]
    # Something mounted inside a node must go with it.
    node.run(["mount", "-t", "tmpfs", "tmpfs", "/mnt"])
    cluster.destroy()
    assert _leftovers() == []
    assert "pyha-lab" not in Path("/proc/mounts").read_text()
