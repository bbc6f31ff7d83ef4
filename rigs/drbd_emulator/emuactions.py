"""DRBD emulator, the actions behind drbdadm/drbdsetup (promote, demote, up/down, connect,
attach/detach per volume, outdate, invalidate, suspend/resume, wait-connect) and the
fence-peer run a promote waits for.  State model: emustate.py."""

import time

from emustate import (
    FENCING_TRIED, Failure, NeedFencing, SS_CONNECTED_OUTDATES, SS_DEVICE_IN_USE,
    SS_NO_LOCAL_DISK, SS_NO_QUORUM, SS_NO_UP_TO_DATE_DISK, SS_PRIMARY_NOP, SS_TWO_PRIMARIES,
    Store, apply_fence_result, arm_new_current_uuid, disarm_new_current_uuid, do_attach,
    helper_environment, log_helper_call, log_helper_response, make_pending_generations,
    reconcile, run_helper, start_sync, syncing_into)
from emudevices import (
    detach_device, detach_devices, device_in_use, open_device_for_primary, set_device_read_only)
from emutopo import (
    all_vols, connected, connected_peers, data_accessible, has_quorum, local_disk, peer_view,
    peers_of, vol, volumes)


def fence_before_promote(nf):
    """Run fence-peer for each unknown peer of a node being promoted, synchronously (the
    promote waits for it, drbd_nl.c drbd_set_role), then record what the kernel made of it."""
    FENCING_TRIED.add(nf.name)
    jobs = []
    with Store() as store:
        res = store.load(nf.name)
        for peer in nf.peers:
            log_helper_call(res, nf.node, "fence-peer", peer)
            jobs.append((peer, (res.get("handlers") or {}).get("fence-peer"),
                         helper_environment(res, nf.node, "fence-peer", peer)))
        store.save_all()
    for peer, command, env in jobs:
        rc = run_helper(command, env)
        with Store() as store:
            res = store.load(nf.name)
            log_helper_response(res, nf.node, "fence-peer", peer, rc)
            apply_fence_result(res, nf.node, peer, rc, time.time())
            store.save_all()


def retry_after_fencing(command):
    while True:
        try:
            return command()
        except NeedFencing as nf:
            if nf.name in FENCING_TRIED:
                raise AssertionError("fence-peer requested twice")
            fence_before_promote(nf)


# ----------------------------------------------------------------------------- actions

def state_failure(res, rc_code_text, mode, cmd):
    rc, code, text = rc_code_text
    who = res["name"] if mode == "9" else str(res["minor"])
    return Failure("%s: State change failed: (%d) %s" % (who, code, text), rc)


def unknown_resource(res):
    if res["mode"] == "9":
        return Failure("%s: Failure: (158) Unknown resource\nadditional info from kernel:\n"
                       "unknown resource" % res["name"], 10)
    return Failure("%d: Failure: (127) Device minor not allocated\nadditional info from kernel:\n"
                   "unknown minor" % res["minor"], 10)


def act_primary(res, me, now, force=False):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if M["role"] == "Primary":
        return
    for p in connected_peers(res, me):
        if res["node"][p]["role"] == "Primary" and not res["allow_two_primaries"]:
            raise state_failure(res, SS_TWO_PRIMARIES, res["mode"], "primary")
    if not has_quorum(res, me) and not force and all(
            data_accessible(res, me, v, now) for v in volumes(res)):
        raise state_failure(res, SS_NO_QUORUM, res["mode"], "primary")
    disks = [local_disk(M, v) for v in volumes(res)]
    if res["fencing"] != "dont-care" and all(d in ("UpToDate", "Consistent") for d in disks):
        # drbd_state.c is_valid_state: SS_PRIMARY_NOP while a peer is neither connected nor
        # known Outdated; drbd_nl.c drbd_set_role then runs fence-peer once and retries
        unknown = [p for p in peers_of(res, me) if not connected(res, me, p)
                   and not res["node"][p].get("client")
                   and peer_view(res, me, p, now)[3] not in ("Outdated", "Inconsistent")]
        if unknown and res["name"] not in FENCING_TRIED:
            raise NeedFencing(res["name"], me, unknown)
        disks = [local_disk(M, v) for v in volumes(res)]     # fence-peer exit 6 outdated us
        if unknown and not force:
            raise state_failure(res, SS_PRIMARY_NOP if all(d == "UpToDate" for d in disks)
                                else SS_NO_UP_TO_DATE_DISK, res["mode"], "primary")
        lonely = [p for p in peers_of(res, me) if not connected(res, me, p)]
        if lonely and len(lonely) == len(peers_of(res, me)) and not unknown:
            for V in all_vols(M):       # every peer fenced: CS_FP_LOCAL_UP_TO_DATE
                if V["attached"] and V["disk"] == "Consistent":
                    V["disk"] = "UpToDate"
    # drbd_state.c is_valid_state, per device: a volume with neither UpToDate data here nor
    # a connected UpToDate peer refuses the promotion (SS_NO_UP_TO_DATE_DISK)
    for v in volumes(res):
        if data_accessible(res, me, v, now):
            continue
        V = vol(M, v)
        if not (force and V["attached"] and V["disk"] in ("Consistent", "Outdated",
                                                          "Inconsistent")):
            raise state_failure(res, SS_NO_UP_TO_DATE_DISK, res["mode"], "primary")
    for v in volumes(res):
        V = vol(M, v)
        if force and not data_accessible(res, me, v, now):
            V["disk"] = "UpToDate"
            for p in connected_peers(res, me):
                P = vol(res["node"][p], v)
                if P["attached"] and P["disk"] != "UpToDate" and not syncing_into(res, p, v):
                    start_sync(res, me, p, v, now)
    for v in volumes(res):
        open_device_for_primary(res, me, v)
    M["role"] = "Primary"
    if not all(connected(res, me, p) for p in peers_of(res, me)):
        for V in all_vols(M):
            if V["attached"]:
                arm_new_current_uuid(res, V)


def act_secondary(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if M["role"] == "Secondary":
        return
    if device_in_use(M):
        raise state_failure(res, SS_DEVICE_IN_USE, res["mode"], "secondary")
    # /dev/drbdN stays until down (DRBD 9 keeps the minor; only writes are refused)
    for V in all_vols(M):
        set_device_read_only(V, True)
    M["role"] = "Secondary"
    disarm_new_current_uuid(M)


def leave_gracefully(res, me):
    """A Secondary that disconnects on purpose is recorded as outdated by the peers it
    leaves (MDF_PEER_OUTDATED): they keep quorum ("if you disconnect all secondary nodes
    gracefully a single primary continues to operate", drbd.conf quorum)."""
    M = res["node"][me]
    if M["role"] != "Secondary":
        return
    for p in connected_peers(res, me):
        gone = res["node"][p].setdefault("outdated_peers", [])
        if me not in gone:
            gone.append(me)


def act_down(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        return
    act_secondary(res, me, now)
    leave_gracefully(res, me)
    detach_devices(res, M)
    M.update(up=False, net=False, discard=False, standalone={})
    for V in all_vols(M):
        V["attached"] = False
    reconcile(res, now)


def act_up(res, me, now, skip_net=False, adjust=True):
    M = res["node"][me]
    if M["up"] and not adjust:
        raise Failure("%s: Failure: (161) Minor or volume exists already (delete it first)"
                      % res["name"], 10)
    M["up"] = True
    reconcile(res, now)
    for v in volumes(res):
        if not vol(M, v)["attached"]:
            do_attach(res, me, v, now)
    if not skip_net:
        # adjust connects every connection that is not (StandAlone ones included)
        M["net"] = True
        M["standalone"] = {}
    reconcile(res, now)


def act_connect(res, me, now, discard=False):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    if M["net"] and not M.get("standalone"):
        raise Failure("%s: Failure: (125) Device has a net-config (use disconnect first)"
                      % res["name"], 10)
    M["net"] = True
    M["standalone"] = {}
    M["discard"] = discard
    reconcile(res, now)


def act_disconnect(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    leave_gracefully(res, me)
    M["net"] = False
    M["standalone"] = {}
    M["discard"] = False
    reconcile(res, now)


def act_outdate(res, me, now):
    M = res["node"][me]
    if M["up"]:
        if M["role"] == "Primary":
            raise state_failure(res, SS_NO_UP_TO_DATE_DISK, res["mode"], "outdate")
        if connected_peers(res, me):
            raise state_failure(res, SS_CONNECTED_OUTDATES, res["mode"], "outdate")
    for V in all_vols(M):
        if V["disk"] in ("UpToDate", "Consistent"):
            V["disk"] = "Outdated"


def act_invalidate(res, me, v, now):
    """drbdadm invalidate RES[/VOL]: this volume's data is declared bad and fully resynced
    from a connected UpToDate peer (StartingSyncT -> SyncTarget); without one it fails
    (SS_NO_UP_TO_DATE_DISK); without a disk: SS_NO_LOCAL_DISK."""
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    for w in ([v] if v is not None else list(volumes(res))):
        V = vol(M, w)
        if not V["attached"]:
            raise state_failure(res, SS_NO_LOCAL_DISK, res["mode"], "invalidate")
        sources = [p for p in connected_peers(res, me)
                   if local_disk(res["node"][p], w) == "UpToDate"]
        if not sources:
            raise state_failure(res, SS_NO_UP_TO_DATE_DISK, res["mode"], "invalidate")
        if not syncing_into(res, me, w):
            V["uuid"] = "0" * 16        # forces the full sync (no common generation)
            for source in sources:      # the first resyncs, the others wait (dependency)
                start_sync(res, source, me, w, now)


def act_suspend_io(res, me, now):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    M["susp_user"] = True


def act_resume_io(res, me, now):
    """drbd_nl.c drbd_adm_resume_io: a pending new current UUID is made now, and every
    suspension (user, no-data, fencing, quorum) ends."""
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    make_pending_generations(res, me)
    M["susp_user"] = M["susp_fencing"] = False


def act_attach(res, me, now, v=None):
    """attach (drbdadm RES or RES/VOL; drbdsetup attach MINOR): one volume or all."""
    if not res["node"][me]["up"]:
        raise unknown_resource(res)
    for w in ([v] if v is not None else list(volumes(res))):
        do_attach(res, me, w, now)


def act_detach(res, me, now, v=None):
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    todo = [v] if v is not None else list(volumes(res))
    for w in todo:
        if M["role"] == "Primary" and not any(local_disk(res["node"][p], w) == "UpToDate"
                                              for p in connected_peers(res, me)):
            # a Primary may not lose its only access to UpToDate data (drbdsetup detach
            # without --force): SS_NO_UP_TO_DATE_DISK
            raise state_failure(res, SS_NO_UP_TO_DATE_DISK, res["mode"], "detach")
    for w in todo:
        V = vol(M, w)
        V["attached"] = False
        if M["role"] == "Secondary":
            detach_device(res, V, w)
        else:
            open_device_for_primary(res, me, w)     # continues on a peer's data, if any


def wait_connect(name, me, timeout):
    deadline = time.time() + timeout if timeout > 0 else None
    while True:
        with Store() as store:
            res = store.load(name)
            now = time.time()
            reconcile(res, now)
            store.save_all()
            if not res["node"][me]["up"]:
                return 10
            if any(connected(res, me, p) for p in peers_of(res, me)) or not peers_of(res, me):
                return 0
        if deadline is not None and time.time() >= deadline:
            return 5
        time.sleep(0.1)
