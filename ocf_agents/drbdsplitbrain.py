"""Split brain for ocf:pyha:drbd: the evidence, the report, the marks and the recovery,
and DRBD's split-brain handler that records it the moment DRBD detects it.

A StandAlone connection alone is no split brain (drbdadm disconnect makes one). Evidence
is one of three signals: DRBD ran its split-brain handler (a flag file in the agent's state
directory, read without forking), this agent already decided so (kept in its memory), or
the generation UUIDs of the two sides diverged (drbdsetup get-gi, exchanged through the
node attribute drbd-<resource>-gi while a peer is not connected; DRBD 9 only: 8.4 does not
name the peer's node).
"""

import os
import sys
import time

from ocf_agents.drbdstate import decode_gi, uuids_diverged
from ocf_agents.ocf import ERR_ARGS, ERR_GENERIC, SUCCESS, AttributeUnreadable


def split_brain_flag(res, name):
    """Written by the split-brain handler (run by DRBD) in the agent's state directory."""
    return res.state_path(f"{name}.split-brain")


def split_brain_evidence(res, drbd, st, version):
    """(why it is a split brain or None, what the disconnect is otherwise).

    Three signals: DRBD's split-brain handler ran (flag file), this agent already decided
    so, or the generation UUIDs of the two sides diverged. Each side publishes its UUIDs in
    the node attribute drbd-<resource>-gi while a peer is not connected (once per change),
    so the other side can compare. A StandAlone peer without any of these is an
    administrative disconnect (drbdadm disconnect), not a split brain.
    """
    if drbd.memory.get("split_brain") == "1":
        return drbd.memory.get("split_brain_why", "split brain"), None
    if os.path.exists(split_brain_flag(res, drbd.name)):
        return "DRBD's split-brain handler reported it", None
    if version[0] < 9:
        # Nothing to compare with (the peer is not named): publishing the UUIDs would cost
        # a drbdsetup and a crm_attribute, and its CIB write aborts Pacemaker's transition
        # just when a failover's starts are waiting (seen in the VM lab, DRBD 8.4).
        return None, "DRBD 8.4 does not name the peer's node; no split brain reported by DRBD"
    peers = st.disconnected_peers
    peer_id = next(i for i, p in st.peers.items() if p is peers[0])
    mine = drbd.generation_ids(version, st, peer_id)
    if mine is None:
        return None, "own generation UUIDs unavailable"
    attribute = f"drbd-{drbd.name}-gi"
    published = ":".join(mine)
    if drbd.memory.get("gi") != published:
        if res.node_attribute(attribute, value=published):
            drbd.remember(gi=published)
    note = "peer's generation UUIDs not known yet; no split brain reported by DRBD"
    for peer in st.standalone_peers:
        if peer.name == res.node_name:
            continue
        try:
            theirs = decode_gi((res.node_attribute(attribute, node=peer.name) or "") + ":")
        except AttributeUnreadable:     # the CIB not answering now: as if not published yet
            theirs = None
        if theirs is None:
            continue
        if uuids_diverged(mine, theirs):
            return (f"generation UUIDs diverged: this node {mine[0]}, {peer.name} "
                    f"{theirs[0]}, neither has seen the other's data"), None
        note = "disconnected by an administrator; generation UUIDs not diverged"
    return None, note


def report_split_brain(res, drbd, st, why):
    """Log the split brain once (crit, with the evidence and what to do), set the node
    attribute; return the exit reason: short enough to be shown whole by pcs status."""
    name = drbd.name
    names = ", ".join(p.name for p in st.disconnected_peers) or "the peer"
    if res.params.split_brain_recovery == "discard-secondary":
        # The agent reconnects both sides itself: saying "resolve manually" would
        # send the administrator to do what is already under way.
        advice = ("split_brain_recovery=discard-secondary: the Secondary's changes since "
                  "the split are discarded and it resyncs from the Primary")
        short = "recovering: the Secondary discards its changes (split_brain_recovery)"
    else:
        advice = (f"on the node whose changes are to be lost run drbdadm secondary {name}; "
                  f"drbdadm connect --discard-my-data {name}, then drbdadm connect {name} "
                  "on the other")
        short = (f"to resolve, on the node whose changes are to be lost: "
                 f"drbdadm connect --discard-my-data {name}")
    if drbd.memory.get("split_brain") != "1":
        res.log.crit(f"DRBD resource {name}: SPLIT BRAIN with {names} ({why}); {advice}")
        res.node_attribute(f"drbd-{name}-split-brain", value=1)
        drbd.remember(split_brain=1, split_brain_why=why)
    return f"{name}: SPLIT BRAIN with {names}; {short}"


def clear_split_brain(res, drbd):
    """All peers connected again: drop the split-brain marks and the published UUIDs."""
    flag = split_brain_flag(res, drbd.name)
    flagged = os.path.exists(flag)
    if drbd.memory.get("split_brain") or flagged:
        res.node_attribute(f"drbd-{drbd.name}-split-brain", delete=True)
        if flagged:
            os.unlink(flag)
        drbd.remember(split_brain=None, split_brain_why=None)
        res.log.notice(f"DRBD resource {drbd.name}: connected again, split brain cleared")
    if drbd.memory.get("gi"):
        res.node_attribute(f"drbd-{drbd.name}-gi", delete=True)
        drbd.remember(gi=None)


def recover_split_brain(res, drbd, st):
    """split_brain_recovery=discard-secondary: the Secondary throws its changes away."""
    if res.params.split_brain_recovery != "discard-secondary":
        return
    if st.primary:
        args = ("connect",)
    else:
        args = ("connect", "--discard-my-data")
    res.log.warning(f"split_brain_recovery: drbdadm {' '.join(args)} {drbd.name}")
    drbd.adm(*args, quiet=True)


# --- DRBD's split-brain handler --------------------------------------------------
def split_brain_handler(argv):
    """drbd.conf: handlers { split-brain "/usr/lib/ocf/resource.d/pyha/drbd split-brain-handler"; }

    DRBD (drbdadm, on behalf of the kernel) runs it on each node the moment it detects a
    split brain and drops the connection, with DRBD_RESOURCE, DRBD_PEER_NODE_ID,
    DRBD_MY_NODE_ID and DRBD_NODE_ID_<id>=<host> in the environment (8.4: DRBD_MINOR, no
    node ids). It records the split brain at once: a crit log line (syslog, facility
    daemon unless HA_LOGFACILITY says otherwise), the node attribute
    drbd-<resource>-split-brain=1, and a flag file the agent's monitor reads without forking.
    """
    from ocf_agents.drbd import AGENT, parse_resource_name    # loaded: it runs this
    from ocf_agents.ocf import Resource, write_file_atomically as write
    env = os.environ
    try:
        name = parse_resource_name(env.get("DRBD_RESOURCE", ""))
    except ValueError as err:
        sys.stderr.write(f"drbd split-brain-handler: DRBD_RESOURCE: {err}\n")
        return ERR_ARGS
    env.setdefault("HA_LOGFACILITY", "daemon")
    res = Resource(AGENT, "split-brain-handler")
    try:
        my_id = env.get("DRBD_MY_NODE_ID", "")
        node = env.get(f"DRBD_NODE_ID_{my_id}") if my_id.isdigit() else None
        if node:
            res._node_name = node     # the host name DRBD knows = the cluster node name
        peer_id = env.get("DRBD_PEER_NODE_ID", "")
        peer = (env.get(f"DRBD_NODE_ID_{peer_id}") if peer_id.isdigit() else None) or \
            (f"node-id {peer_id}" if peer_id else "the peer")
        res.log.crit(f"DRBD resource {name}: SPLIT BRAIN detected by DRBD with {peer}; the "
                     "connection is StandAlone until resolved (drbdadm connect "
                     "--discard-my-data on the victim, drbdadm connect on the survivor)")
        write(split_brain_flag(res, name), f"peer={peer}\ntime={int(time.time())}\n")
        ok = res.node_attribute(f"drbd-{name}-split-brain", value=1)
        return SUCCESS if ok else ERR_GENERIC
    finally:
        res.close()
