"""DRBD emulator, the topology: a resource's volumes, its nodes' per-volume state, the
connections between pairs of nodes (DRBD 9 is a full mesh: one connection per peer), what a
node sees of a peer, quorum and the promotion score.  Pure functions on the resource dict
(no I/O); emustate.py acts on it, emuformats.py prints it.

Layout: volume 0's per-volume keys (attached, failed, disk, uuid, history, bitmap, image,
loop, ...) stay in the node's dict (the lab tooling reads node[n]["image"]/["loop"]); volume
v >= 1 lives in node["vols"][v-1].  res["vols"][v] = {"minor", "device"}; res["conns"] maps
"a,b" (node order) to {"since", "sync": {volume: {source, target, start, total_kib}}}."""

PER_VOLUME_KEYS = ("attached", "failed", "disk", "uuid", "history", "bitmap", "image", "loop",
                   "rdev", "loop_image", "device_read_only", "new_cur_uuid", "write_mark")


# ----------------------------------------------------------------------------- volumes

def volumes(res):
    return range(len(res.get("vols") or [None]))


def vol(st, v):
    """Volume v's state of one node (volume 0 is the node dict itself, see above)."""
    return st if v == 0 else st["vols"][v - 1]


def all_vols(st):
    return [st] + list(st.get("vols") or [])


def minor_of(res, v):
    return res["vols"][v]["minor"] if res.get("vols") else res["minor"]


def device_of(res, v):
    return res["vols"][v]["device"] if res.get("vols") else res["device"]


def local_disk(st, v=0):
    if not st["up"]:
        return "Unconfigured"
    V = vol(st, v)
    return V["disk"] if V["attached"] else "Diskless"


def node_of(res, st):
    """The node name whose state (or one of whose volume states) st is."""
    for n in res["nodes"]:
        if any(V is st for V in all_vols(res["node"][n])):
            return n
    raise KeyError("state of no node")


def volume_of(res, V):
    for n in res["nodes"]:
        for v, W in enumerate(all_vols(res["node"][n])):
            if W is V:
                return v
    raise KeyError("state of no volume")


# ----------------------------------------------------------------------------- nodes, connections

def peers_of(res, node):
    return [p for p in res["nodes"] if p != node]


def node_id(res, node):
    return res["nodes"].index(node)


def pair_key(res, a, b):
    a, b = sorted((a, b), key=res["nodes"].index)
    return "%s,%s" % (a, b)


def pairs(res):
    nodes = res["nodes"]
    return [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]


def conn_of(res, a, b):
    return (res.get("conns") or {}).get(pair_key(res, a, b))


def connected(res, a, b):
    return a != b and conn_of(res, a, b) is not None


def connected_peers(res, me):
    return [p for p in peers_of(res, me) if connected(res, me, p)]


def link_up(res, a, b):
    """The network between a and b: `drbdemu cut RES` cuts every link, `cut RES NODE`
    isolates NODE (its links to every peer)."""
    cut = res.get("cut_nodes") or ()
    return not res["link_cut"] and a not in cut and b not in cut


def wants_connection(res, a, b):
    """Both up, both with their network configured, the link up, and neither side holding
    this connection StandAlone (after a split brain, refused handshake, ...)."""
    A, B = res["node"][a], res["node"][b]
    return A["up"] and B["up"] and A["net"] and B["net"] and link_up(res, a, b) and \
        b not in (A.get("standalone") or {}) and a not in (B.get("standalone") or {})


# ----------------------------------------------------------------------------- views

def sync_of(res, a, b, v):
    c = conn_of(res, a, b)
    return (c.get("sync") or {}).get(str(v)) if c else None


def sync_done(res, sync, now):
    secs = float(res["resync_seconds"])
    if secs <= 0:
        return 100.0
    return min(100.0, 100.0 * (now - sync["start"]) / secs)


def peer_view(res, me, peer, now, v=0):
    """Connection and volume v's peer device as seen from `me`:
    (cstate, peer_role, repl, peer_disk, done)."""
    M, P = res["node"][me], res["node"][peer]
    if connected(res, me, peer):
        sync = sync_of(res, me, peer, v)
        repl, done = "Established", None
        if sync and sync.get("paused"):
            # a second source waits for the first (resync-suspended:dependency)
            repl = "PausedSyncS" if sync["source"] == me else "PausedSyncT"
        elif sync:
            repl = "SyncSource" if sync["source"] == me else "SyncTarget"
            done = sync_done(res, sync, now)
        PV = vol(P, v)
        pdisk = PV["disk"] if PV["attached"] else "Diskless"
        return "Connected", P["role"], repl, pdisk, done
    standalone = not M["net"] or peer in (M.get("standalone") or {})
    return ("StandAlone" if standalone else "Connecting"), "Unknown", "Off", \
        (M.get("fenced") or {}).get(peer, "DUnknown"), None


def resync_suspended(res, me, peer, v):
    sync = sync_of(res, me, peer, v)
    return "dependency" if sync and sync.get("paused") else "no"


def data_accessible(res, me, v, now):
    """drbd_data_accessible: volume v is UpToDate here or on a connected peer."""
    return local_disk(res["node"][me], v) == "UpToDate" or any(
        peer_view(res, me, p, now, v)[3] == "UpToDate" for p in connected_peers(res, me))


def promotion_score(res, me, now):
    """10000 when every volume has its disk, 100 per UpToDate local volume, plus the
    fewest UpToDate replicas of any volume (local and connected)."""
    M = res["node"][me]
    if not any(V["attached"] for V in all_vols(M)):
        return 0
    score = 10000 if all(V["attached"] for V in all_vols(M)) else 0
    replicas = []
    for v in volumes(res):
        up = 1 if local_disk(M, v) == "UpToDate" else 0
        score += 100 * up
        replicas.append(up + sum(1 for p in peers_of(res, me)
                                 if peer_view(res, me, p, now, v)[3] == "UpToDate"))
    return score + min(replicas)


def may_promote(res, me, now):
    M = res["node"][me]
    if M["role"] == "Primary" or any(local_disk(M, v) != "UpToDate" for v in volumes(res)):
        return False
    if not has_quorum(res, me):
        return False
    return all(peer_view(res, me, p, now)[1] != "Primary" for p in peers_of(res, me))


# ----------------------------------------------------------------------------- quorum

def has_quorum(res, me, v=None):
    """drbd_state.c calc_quorum per volume (v None: every volume has it; quorum off: always
    true).  Voters are the diskful nodes; an absent peer whose disk is known Outdated
    (fenced, or it left gracefully as a Secondary: MDF_PEER_OUTDATED) is no voter when no
    voter is unknown; connected diskless clients break an even tie."""
    if res.get("quorum", "off") == "off":
        return True
    if v is None:
        return all(has_quorum(res, me, w) for w in volumes(res))
    M = res["node"][me]
    up_to_date = present = outdated = unknown = diskless = 0
    MV = vol(M, v)
    if MV["attached"]:
        if MV["disk"] == "UpToDate":
            up_to_date += 1
        else:
            present += 1
    elif M.get("client"):
        diskless += 1
    else:
        unknown += 1
    for p in peers_of(res, me):
        P = res["node"][p]
        PV = vol(P, v)
        if connected(res, me, p):
            if P.get("client"):
                diskless += 1
            elif PV["attached"] and PV["disk"] == "UpToDate":
                up_to_date += 1
            elif PV["attached"]:
                present += 1
            else:
                unknown += 1
        elif P.get("client"):
            continue                    # an absent client is no voter
        elif peer_view(res, me, p, 0.0, v)[3] in ("Outdated", "Inconsistent") or \
                p in (M.get("outdated_peers") or ()):
            outdated += 1
        else:
            unknown += 1
    voters = outdated + unknown + up_to_date + present if unknown else up_to_date + present
    need = quorum_at(res["quorum"], voters)
    if up_to_date + present >= need:
        return True
    # an even number of voters, one vote short: connected diskless nodes break the tie
    return voters != 0 and voters % 2 == 0 and up_to_date + present == need - 1 and \
        diskless >= quorum_at("majority", diskless) and diskless > 0


def quorum_at(setting, voters):
    if setting == "majority":
        return voters // 2 + 1
    if setting == "all":
        return voters
    return int(setting)


def quorum_suspends(res, me):
    """A Primary without quorum and on-no-quorum suspend-io has its I/O suspended."""
    M = res["node"][me]
    return M["up"] and M["role"] == "Primary" and not has_quorum(res, me) and \
        res.get("on_no_quorum", "suspend-io") == "suspend-io"


def suspension(M):
    """(user, no-data, fencing, quorum) I/O suspension flags of a node's resource."""
    return (bool(M.get("susp_user")), False, bool(M.get("susp_fencing")),
            bool(M.get("susp_quorum")))


def peer_is_client(res, me, peer):
    """peer-client: known only while connected (the peer says it is intentionally diskless)."""
    return connected(res, me, peer) and bool(res["node"][peer].get("client"))
