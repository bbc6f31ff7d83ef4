"""DRBD emulator: drop-in ``drbdadm`` / ``drbdsetup`` for a machine without the DRBD module.

Test tooling only (never installed as an agent).  ``bin/drbdadm``, ``bin/drbdsetup`` and
``bin/drbdemu`` are thin launchers for the three ``main_*`` functions at the bottom.  This
module holds the command-line front ends (drbdemu admin, drbdsetup, drbdadm); the state model
and actions are in emustate.py, the drbd-utils output formats in emuformats.py.

Model
-----
* Every resource lives in ``$DRBDEMU_STATE/<res>.json`` (shared by all nodes of a lab, guarded
  by ``flock`` on ``$DRBDEMU_STATE/.lock``).  The local node is ``$DRBDEMU_NODE`` or the UTS
  host name, so each lab node (own UTS namespace) sees its own side of the same resource.
* There is no daemon: every command first *reconciles* the resource (handshake when both sides
  want a connection and the link is up, disconnect when one of them went away, resync progress
  by wall clock), then acts, then saves the state if it changed.
* Data: each node owns an image file.  While connected both nodes point at one image (the
  moral equivalent of protocol C); on disconnect the node that is not holding the image through
  a loop device gets a sparse copy; on a resync the target adopts the source's image; after a
  split brain both keep their own until one side connects with ``--discard-my-data``.
* Primary attaches a loop device to the node's image and ``mknod``s the resource's device path
  with the loop's major:minor, so ``mkfs``/``mount`` of ``/dev/drbdN`` really work.
* Generation UUIDs decide the sync direction: a Primary that is (or becomes) disconnected starts
  a new data generation at its first write (a change of its image file: a bio that reached
  the loop device); the side whose history contains the other's current UUID is ahead;
  neither contains the other's but they share an ancestor -> split brain -> both StandAlone;
  equal UUIDs on two Primaries -> both StandAlone without split brain.
  The first new UUID since the peer was last seen keeps the old one as the bitmap UUID;
  ``drbdsetup get-gi``/``show-gi`` print (current, bitmap, two history UUIDs, flags).
* Fencing (``--fencing``, ``--fence-peer-handler``): a promote with an unknown peer runs the
  fence-peer handler first and obeys its exit code; with resource-and-stonith a Primary that
  loses its peer is ``suspended:fencing`` until the handler succeeds.  Quorum (``--quorum``)
  follows DRBD's calc_quorum for two nodes.  Suspended I/O and lost quorum refuse writes.
* ``/dev/drbdN`` (shared by the nodes of a lab, like their /dev) belongs to the node that was
  last promoted and stays, read-only while Secondary, until that node's ``down``.
* Diskless clients (``--diskless NODE``) work on their peer's image.
* Handlers: a split brain queues drbd.conf's split-brain handler (``--split-brain-handler``)
  for each node; it runs through /bin/sh with DRBD's DRBD_* environment (and DRBDEMU_NODE)
  after the state lock is released, and its exit status is logged as a "response helper".

Output formats follow drbd-utils 9.22 (see /work/shared/reference/drbd.md).
"""


import json
import os
import sys
import time
from emudevices import detach_devices
from emustate import (
    Failure, GIT_HASH, KERNEL_VERSION, Store, UTILS_VERSION, image_path, local_node, log_event,
    new_uuid, reconcile)
from emutopo import (
    all_vols, local_disk, minor_of, node_id, peer_view, peers_of, vol, volumes)
from emuactions import (
    act_attach, act_connect, act_detach, act_disconnect, act_down, act_invalidate,
    act_outdate, act_primary, act_resume_io, act_secondary, act_suspend_io, act_up,
    retry_after_fencing, wait_connect)
from emuformats import (
    cstate84, format_dump, format_events2, format_sh_status, format_status, format_status_json,
    format_status_verbose, gi_output, peer84)

# ----------------------------------------------------------------------------- admin (drbdemu)

def parse_size(text):
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    t = text.strip().upper().rstrip("B").rstrip("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t) // 1024


def admin_init(store, args):
    import argparse
    ap = argparse.ArgumentParser(prog="drbdemu init")
    ap.add_argument("name")
    ap.add_argument("--nodes", required=True)
    ap.add_argument("--minor", type=int, default=0)
    ap.add_argument("--size", default="64M")
    ap.add_argument("--mode", choices=("9", "8.4"), default="9")
    ap.add_argument("--device")
    ap.add_argument("--allow-two-primaries", action="store_true")
    ap.add_argument("--fencing", default="dont-care",
                    choices=("dont-care", "resource-only", "resource-and-stonith"))
    ap.add_argument("--resync-seconds", type=float, default=1.0)
    ap.add_argument("--inconsistent", action="store_true",
                    help="start without initial sync: both disks Inconsistent")
    ap.add_argument("--addresses", help="node=ip,... for the path lines of events2")
    ap.add_argument("--port", type=int, default=7789)
    ap.add_argument("--split-brain-handler", metavar="COMMAND",
                    help="drbd.conf handlers { split-brain COMMAND; } (run with /bin/sh -c)")
    ap.add_argument("--fence-peer-handler", metavar="COMMAND",
                    help="drbd.conf handlers { fence-peer COMMAND; }")
    ap.add_argument("--quorum", default="off",
                    help="options { quorum off|majority|all|N; }")
    ap.add_argument("--on-no-quorum", default="suspend-io", choices=("suspend-io", "io-error"))
    ap.add_argument("--diskless", metavar="NODE,...", default="",
                    help="nodes configured with `disk none` (diskless clients)")
    ap.add_argument("--volumes", type=int, default=1,
                    help="volumes 0..N-1, minors MINOR..MINOR+N-1 (device drbdM+v)")
    o = ap.parse_args(args)
    if not o.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise Failure("drbdemu: bad resource name %r" % o.name, 2)
    if store.load(o.name):
        raise Failure("drbdemu: resource %s exists (destroy it first)" % o.name, 1)
    nodes = [n for n in o.nodes.split(",") if n]
    # DRBD 8.4 pairs two nodes; DRBD 9 meshes more (the emulator: up to 4)
    if not 1 <= len(nodes) <= (2 if o.mode == "8.4" else 4):
        raise Failure("drbdemu: 1 or 2 nodes supported (DRBD 9: up to 4)", 2)
    if not 1 <= o.volumes <= 8:
        raise Failure("drbdemu: 1 to 8 volumes supported", 2)
    size = parse_size(o.size)
    uuid = new_uuid()
    device = o.device or "/dev/drbd%d" % o.minor
    # volume v: minor+v; its device beside volume 0's (.../drbdM -> .../drbd<M+v>)
    vols = [{"minor": o.minor + v, "device": device if v == 0 else os.path.join(
        os.path.dirname(device), "drbd%d" % (o.minor + v))} for v in range(o.volumes)]
    res = {"name": o.name, "mode": o.mode, "minor": o.minor, "nodes": nodes,
           "device": device, "size_kib": size, "vols": vols,
           "allow_two_primaries": o.allow_two_primaries, "fencing": o.fencing,
           "resync_seconds": o.resync_seconds, "link_cut": False, "cut_nodes": [], "conns": {},
           "quorum": o.quorum, "on_no_quorum": o.on_no_quorum,
           "addresses": dict(kv.split("=", 1) for kv in o.addresses.split(",")) if o.addresses
           else {}, "port": o.port, "events": [], "node": {},
           "handlers": {k: v for k, v in (("split-brain", o.split_brain_handler),
                                          ("fence-peer", o.fence_peer_handler)) if v}}
    for n in nodes:
        per_volume = []
        for v in range(o.volumes):
            img = "%s.%s.img" % (o.name, n) if v == 0 else "%s.%s.v%d.img" % (o.name, n, v)
            with open(image_path(res, img), "wb") as f:
                f.truncate(size * 1024)
            per_volume.append({"attached": False, "failed": False,
                               "disk": "Inconsistent" if o.inconsistent else "UpToDate",
                               "uuid": uuid, "history": [], "image": img, "loop": None,
                               "rdev": None})
        res["node"][n] = dict(per_volume[0], up=False, net=False, discard=False, standalone={},
                              role="Secondary", client=n in o.diskless.split(","),
                              vols=per_volume[1:])
    store.create(res)


def admin(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: drbdemu init RES --nodes A,B [--minor N] [--size 64M] [--mode 9|8.4]\n"
              "               [--device PATH] [--allow-two-primaries] [--fencing POLICY]\n"
              "               [--resync-seconds S] [--inconsistent] [--addresses A=IP,B=IP]\n"
              "               [--split-brain-handler COMMAND] [--fence-peer-handler COMMAND]\n"
              "               [--diskless NODE,...] [--quorum majority|all|N]\n"
              "               [--on-no-quorum suspend-io|io-error]\n"
              "               [--volumes N]\n"
              "       drbdemu cut|heal RES [NODE]    (every link, or NODE's links to its peers)\n"
              "       drbdemu fail-disk|repair-disk RES [NODE [VOLUME]]\n"
              "       drbdemu unconfigure RES [NODE]  (gone from NODE's drbd.conf: drbdadm\n"
              "                                       refuses it, the kernel keeps it up)\n"
              "       drbdemu crash NODE [RES...]\n"
              "       drbdemu set RES KEY=VALUE...   (resync_seconds, allow_two_primaries, fencing,\n"
              "                                       quorum, on_no_quorum,\n"
              "                                       split_brain_handler, fence_peer_handler)\n"
              "       drbdemu status [RES]           (JSON)\n"
              "       drbdemu image RES [NODE]       (path of NODE's current data image)\n"
              "       drbdemu destroy RES            (release loops, delete state and images)")
        return 0
    cmd, args = argv[0], argv[1:]
    with Store() as store:
        now = time.time()
        if cmd == "init":
            admin_init(store, args)
            store.save_all()
            return 0
        if cmd == "crash":
            node = args[0]
            for name in args[1:] or store.names():
                res = store.load(name)
                if not res or node not in res["nodes"]:
                    continue
                reconcile(res, now)
                M = res["node"][node]
                was_up = M["up"]
                M.update(up=False, net=False, discard=False, standalone={})
                for V in all_vols(M):
                    V["attached"] = False
                reconcile(res, now)      # the peers lose the connection; images split
                detach_devices(res, M)
                M["role"] = "Secondary"
                if was_up:
                    log_event(res, node, "crash")
            store.save_all()
            return 0
        if not args and cmd != "status":
            raise Failure("drbdemu %s: resource name required" % cmd, 2)
        names = args[:1] if args else store.names()
        resources = []
        for name in names:
            res = store.load(name)
            if res is None:
                raise Failure("drbdemu: no such resource %s" % name, 1)
            reconcile(res, now)
            resources.append(res)
        res = resources[0] if resources else None
        node = args[1] if len(args) > 1 else local_node()
        volume = int(args[2]) if len(args) > 2 and cmd.endswith("-disk") else None
        if cmd == "cut":
            if len(args) > 1:           # isolate one node from all its peers
                if node not in res["cut_nodes"]:
                    res["cut_nodes"].append(node)
            else:
                res["link_cut"] = True
        elif cmd == "heal":
            if len(args) > 1:
                res["cut_nodes"] = [n for n in res["cut_nodes"] if n != node]
            else:
                res["link_cut"], res["cut_nodes"] = False, []
        elif cmd == "fail-disk":
            M = res["node"][node]
            for v in ([volume] if volume is not None else list(volumes(res))):
                vol(M, v)["attached"], vol(M, v)["failed"] = False, True
        elif cmd == "unconfigure":
            res.setdefault("unconfigured", [])
            if node not in res["unconfigured"]:
                res["unconfigured"].append(node)
        elif cmd == "repair-disk":
            M = res["node"][node]
            for v in ([volume] if volume is not None else list(volumes(res))):
                vol(M, v)["failed"] = False
                vol(M, v)["disk"] = "Inconsistent"
        elif cmd == "set":
            for kv in args[1:]:
                k, v = kv.split("=", 1)
                if k == "resync_seconds":
                    res[k] = float(v)
                elif k == "allow_two_primaries":
                    res[k] = v.lower() in ("1", "yes", "true")
                elif k in ("fencing", "quorum", "on_no_quorum"):
                    res[k] = v
                elif k in ("split_brain_handler", "fence_peer_handler"):
                    helper = k[:-len("_handler")].replace("_", "-")
                    res.setdefault("handlers", {})[helper] = v or None
                else:
                    raise Failure("drbdemu set: unknown key %s" % k, 2)
        elif cmd == "status":
            print(json.dumps(resources if len(resources) != 1 else resources[0], indent=1,
                             sort_keys=True))
        elif cmd == "image":
            print(image_path(res, res["node"][node]["image"]))
        elif cmd == "destroy":
            for n in res["nodes"]:
                detach_devices(res, res["node"][n])
            images = {V["image"] for n in res["nodes"] for V in all_vols(res["node"][n])}
            for f in os.listdir(store.dir):
                if f.startswith(res["name"] + ".") and f.endswith(".img"):
                    images.add(f)
            for img in images:
                try:
                    os.unlink(image_path(res, img))
                except FileNotFoundError:
                    pass
            store.remove(res["name"])
        else:
            raise Failure("drbdemu: unknown command %s" % cmd, 2)
        reconcile(res, time.time()) if res and cmd != "destroy" else None
        store.save_all()
    return 0


# ----------------------------------------------------------------------------- drbdsetup

def find_resource(store, obj, me):
    """Resolve a drbdsetup object (resource name, minor, or device path) for this node."""
    for name in store.names():
        res = store.load(name)
        if me not in res["nodes"]:
            continue
        if obj == name or object_volume(res, obj) is not None:
            return res
    return None


def object_volume(res, obj):
    """The volume a drbdsetup minor or device path names (None: not one of res's)."""
    for v in volumes(res):
        if obj in (str(minor_of(res, v)), res["vols"][v]["device"] if res.get("vols")
                   else res["device"]):
            return v
    return None


def drbdsetup(argv):
    me = local_node()
    opts = [a for a in argv if a.startswith("-")]
    args = [a for a in argv if not a.startswith("-")]
    if not args:
        raise Failure("USAGE: drbdsetup command {arguments} [options]", 20)
    cmd = args[0]
    # 8.4 old syntax: drbdsetup /dev/drbd0 sh-status
    if (cmd.startswith("/") or cmd.isdigit()) and len(args) > 1:
        args = [args[1], args[0]] + args[2:]
        cmd = args[0]
    with Store() as store:
        now = time.time()
        if cmd in ("events2", "status") and (len(args) < 2 or args[1] == "all"):
            targets = [store.load(n) for n in store.names()]
            targets = [r for r in targets if me in r["nodes"]]
        else:
            if len(args) < 2:
                raise Failure("drbdsetup %s: missing argument" % cmd, 20)
            r = find_resource(store, args[1], me)
            if r is None:
                if cmd == "events2":
                    targets = []
                elif cmd == "down":
                    return 0
                else:
                    raise Failure("%s: No such resource" % args[1], 10)
            else:
                targets = [r]
        for r in targets:
            reconcile(r, now)
        out = []
        rc = 0
        try:
            rc = run_drbdsetup(cmd, args, opts, targets, me, now, out)
        finally:
            store.save_all()
    if out:
        sys.stdout.write("".join(out))
    if cmd == "events2" and "--now" not in opts:
        return stream_events(targets, me)
    return rc


def run_drbdsetup(cmd, args, opts, targets, me, now, out):
    res = targets[0] if targets else None
    # attach/detach/dstate/outdate take a minor: that volume only
    volume = object_volume(res, args[1]) if res and len(args) > 1 else None
    M = res["node"][me] if res else None
    v9only = ("events2", "status", "wait-connect-resource", "wait-connect-connection")
    if res and res["mode"] == "8.4" and cmd in v9only:
        raise Failure("drbdsetup: unknown command '%s' (DRBD 8.4 kernel module)" % cmd, 20)
    if res and res["mode"] == "9" and cmd in ("sh-status",):
        raise Failure("drbdsetup: unknown command '%s'" % cmd, 20)
    if cmd == "events2":
        for r in targets:
            out.append(format_events2(r, me, now, "--statistics" in opts))
        if "--now" in opts:
            out.append("exists -\n")
        return 0
    if cmd == "status":
        live = [r for r in targets if r["node"][me]["up"]]
        if len(targets) == 1 and not live:
            raise Failure("%s: No such resource" % res["name"], 10)
        if "--json" in opts:
            out.append(format_status_json(live, me, now))
        elif "--verbose" in opts or "--statistics" in opts:
            out += [format_status_verbose(r, me, now, "--statistics" in opts) for r in live]
        else:
            out += [format_status(r, me, now) for r in live]
        return 0
    if cmd == "sh-status":
        out.append(format_sh_status(res, me, now))
        return 0
    if cmd == "role":
        if not M["up"]:
            if res["mode"] == "8.4":
                out.append("Unconfigured\n")
                return 0
            raise Failure("%s: Unknown resource" % res["name"], 10)
        if res["mode"] == "8.4":
            out.append("%s/%s\n" % (M["role"], peer84(res, me, now)[0]))
        else:
            out.append(M["role"] + "\n")
        return 0
    if cmd == "cstate":
        if res["mode"] == "8.4":
            out.append(cstate84(res, me, now) + "\n")
            return 0
        if not M["up"]:
            raise Failure("%s: Unknown resource" % res["name"], 10)
        peers = peers_of(res, me)
        if len(args) > 2:
            peers = [p for p in peers if str(node_id(res, p)) == args[2]]
        for p in peers:
            out.append(peer_view(res, me, p, now)[0] + "\n")
        return 0
    if cmd == "dstate":
        if not M["up"]:
            if res["mode"] == "8.4":
                out.append("Unconfigured\n")
                return 0
            raise Failure("%d: Failure: (127) Device minor not allocated" % res["minor"], 10)
        # per minor: local disk, then each peer's; a resource name: every volume (drbdadm)
        for v in ([volume] if volume is not None else list(volumes(res))):
            parts = [local_disk(M, v)] + [peer_view(res, me, p, now, v)[3]
                                          for p in peers_of(res, me)]
            if res["mode"] == "8.4" and len(parts) == 1:
                parts.append("DUnknown")
            out.append("/".join(parts) + "\n")
        return 0
    if cmd in ("get-gi", "show-gi"):
        out.append(gi_output(res, me, now, args, pretty=cmd == "show-gi"))
        return 0
    if cmd == "primary":
        act_primary(res, me, now, force="--force" in opts or "--overwrite-data-of-peer" in opts)
        return 0
    if cmd == "secondary":
        act_secondary(res, me, now)
        return 0
    if cmd == "down":
        act_down(res, me, now)
        return 0
    if cmd in ("new-resource", "new-minor", "resource-options"):
        M["up"] = True
        return 0
    if cmd == "attach":
        act_attach(res, me, now, volume)
        return 0
    if cmd == "detach":
        act_detach(res, me, now, volume)
        return 0
    if cmd == "invalidate":
        act_invalidate(res, me, volume, now)
        return 0
    if cmd == "connect":
        act_connect(res, me, now, discard="--discard-my-data" in opts)
        return 0
    if cmd == "disconnect":
        act_disconnect(res, me, now)
        return 0
    if cmd == "outdate":
        act_outdate(res, me, now)
        return 0
    if cmd == "suspend-io":
        act_suspend_io(res, me, now)
        return 0
    if cmd == "resume-io":
        act_resume_io(res, me, now)
        return 0
    if cmd in ("wait-connect-resource", "wait-connect-connection", "wait-connect"):
        return -1   # handled outside the lock by the caller
    raise Failure("drbdsetup: unknown command '%s'" % cmd, 20)


def wfc_timeout(opts):
    for o in opts:
        if o.startswith("--wfc-timeout="):
            try:
                return int(o.split("=", 1)[1])
            except ValueError:
                pass
    return 0


def stream_events(targets, me):
    """events2 without --now: poll the state, print change lines and helper calls."""
    names = [r["name"] for r in targets]
    last = {r["name"]: format_events2(r, me, time.time()) for r in targets}
    seen = {r["name"]: len(r.get("events", [])) for r in targets}
    sys.stdout.write("exists -\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(0.2)
            with Store() as store:
                now = time.time()
                for name in names:
                    res = store.load(name)
                    if res is None:
                        continue
                    reconcile(res, now)
                    cur = format_events2(res, me, now)
                    if cur != last[name]:
                        old = set(last[name].splitlines())
                        for line in cur.splitlines():
                            if line not in old:
                                sys.stdout.write("change" + line[len("exists"):] + "\n")
                        last[name] = cur
                    events = res.get("events", [])
                    for ev in events[min(seen[name], len(events)):]:
                        if ev["node"] == me and ev["line"].startswith("call"):
                            sys.stdout.write(ev["line"] + "\n")
                    seen[name] = len(events)
                store.save_all()
            sys.stdout.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


# ----------------------------------------------------------------------------- drbdadm

def drbdadm_resources(store, spec, me):
    name = spec.split(":", 1)[0].split("/", 1)[0]
    if name == "all":
        return [r for r in (store.load(n) for n in store.names()) if me in r["nodes"]]
    res = store.load(name)
    if res is None or me not in res["nodes"] or me in res.get("unconfigured", ()):
        raise Failure("'%s' not defined in your config (for this host)." % name, 10)
    return [res]


SETUP_NAME = {"9": "drbdsetup", "8.4": "drbdsetup-84"}


def drbdadm(argv):
    me = local_node()
    opts, args = [], []
    it = iter(argv)
    for a in it:
        if a in ("-c", "--config-file", "--peer", "-p"):
            next(it, None)
        elif a.startswith("-"):
            opts.append(a)
        else:
            args.append(a)
    if "--version" in opts or (args and args[0] == "--version"):
        return print_version(me)
    if not args:
        raise Failure("USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}", 1)
    cmd = args[0]
    if cmd in ("sh-mod-parms",):
        return 0
    if len(args) < 2:
        raise Failure("drbdadm %s: resource name required" % cmd, 1)
    if cmd in ("wait-connect",):
        for spec in args[1:]:
            rc = wait_connect(spec.split(":")[0], me, wfc_timeout(opts))
            if rc:
                return rc
        return 0
    def attempt():
        out = []
        with Store() as store:
            now = time.time()
            try:
                for spec in args[1:]:
                    for res in drbdadm_resources(store, spec, me):
                        reconcile(res, now)
                        peer = spec.split(":", 1)[1].split("/")[0] if ":" in spec else None
                        # RES/VOL (or RES:PEER/VOL): one volume
                        vnr = spec.rsplit("/", 1)[1] if "/" in spec else None
                        if vnr is not None and (not vnr.isdigit() or
                                                int(vnr) not in volumes(res)):
                            raise Failure("%s: no volume %s" % (res["name"], vnr), 10)
                        run_drbdadm(cmd, res, me, opts, now, out, peer or None,
                                    None if vnr is None else int(vnr))
                        reconcile(res, now)
            finally:
                store.save_all()
                sys.stdout.write("".join(out))
        return 0
    return retry_after_fencing(attempt)


def run_drbdadm(cmd, res, me, opts, now, out, opts_peer=None, volume=None):
    mode = res["mode"]
    M = res["node"][me]
    obj = res["name"] if mode == "9" else str(res["minor"])
    setup_cmd = {"primary": "primary", "secondary": "secondary", "down": "down",
                 "connect": "connect", "disconnect": "disconnect", "outdate": "outdate",
                 "attach": "attach", "detach": "detach", "suspend-io": "suspend-io",
                 "resume-io": "resume-io"}.get(cmd, cmd)

    def wrapped(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except Failure as e:
            raise Failure("%s\nCommand '%s %s %s' terminated with exit code %d" % (
                e.message, SETUP_NAME[mode], setup_cmd, obj, e.rc), e.rc)

    if "-d" in opts or "--dry-run" in opts:
        if cmd != "dump":
            out.append("%s %s %s\n" % (SETUP_NAME[mode], setup_cmd, obj))
            return
    if cmd == "primary":
        wrapped(act_primary, res, me, now, force="--force" in opts)
    elif cmd == "secondary":
        wrapped(act_secondary, res, me, now)
    elif cmd == "down":
        wrapped(act_down, res, me, now)
    elif cmd == "up":
        wrapped(act_up, res, me, now, adjust=False)
    elif cmd == "adjust":
        wrapped(act_up, res, me, now, skip_net="--skip-net" in opts)
    elif cmd in ("new-resource", "new-minor"):
        M["up"] = True
    elif cmd == "attach":
        wrapped(act_attach, res, me, now, volume)
    elif cmd == "detach":
        wrapped(act_detach, res, me, now, volume)
    elif cmd == "invalidate":
        wrapped(act_invalidate, res, me, volume, now)
    elif cmd == "connect":
        wrapped(act_connect, res, me, now, discard="--discard-my-data" in opts)
    elif cmd == "disconnect":
        wrapped(act_disconnect, res, me, now)
    elif cmd == "outdate":
        wrapped(act_outdate, res, me, now)
    elif cmd == "suspend-io":
        wrapped(act_suspend_io, res, me, now)
    elif cmd == "resume-io":
        wrapped(act_resume_io, res, me, now)
    elif cmd in ("role", "cstate", "dstate"):
        o = []
        target = res["name"] if mode == "9" or cmd == "role" else str(res["minor"])
        try:
            run_drbdsetup(cmd, [cmd, target], [], [res], me, now, o)
        except Failure as e:
            raise Failure(e.message, e.rc)
        out += o
    elif cmd == "sh-status":
        out.append(format_sh_status(res, me, now))
    elif cmd == "status":
        if not M["up"]:
            raise Failure("%s: No such resource" % res["name"], 10)
        out.append(format_status(res, me, now))
    elif cmd == "sh-dev":
        out.append(res["device"] + "\n")
    elif cmd == "sh-minor":
        out.append("%d\n" % res["minor"])
    elif cmd == "sh-resource":
        out.append(res["name"] + "\n")
    elif cmd == "dump":
        out.append(format_dump(res))
    elif cmd in ("check-resize", "create-md", "apply-al", "new-current-uuid", "unfence-peer",
                 "invalidate-remote", "hidden-commands", "resize"):
        pass
    elif cmd in ("get-gi", "show-gi"):
        if mode == "9":
            peers = peers_of(res, me)
            peer = opts_peer or (peers[0] if peers else None)
            if peer not in peers:
                raise Failure("%s: no connection to %s" % (res["name"], peer), 10)
            args = [cmd, res["name"], str(node_id(res, peer)), str(volume or 0)]
        else:
            args = [cmd, str(res["minor"])]
        out.append(gi_output(res, me, now, args, pretty=cmd == "show-gi"))
    else:
        raise Failure("drbdadm: Unknown command '%s'" % cmd, 1)


def print_version(me):
    mode = "9"
    try:
        with Store() as store:
            for n in store.names():
                r = store.load(n)
                if me in r["nodes"]:
                    mode = r["mode"]
                    break
    except Failure:
        pass
    ver, code, api = KERNEL_VERSION[mode]
    sys.stdout.write("DRBDADM_BUILDTAG=GIT-hash:\\ %s\\ build\\ by\\ drbdemu\n"
                     "DRBDADM_API_VERSION=%s\nDRBD_KERNEL_VERSION_CODE=%s\n"
                     "DRBD_KERNEL_VERSION=%s\nDRBDADM_VERSION_CODE=%s\nDRBDADM_VERSION=%s\n" % (
                         GIT_HASH, api.split("/")[0], code, ver, UTILS_VERSION[1],
                         UTILS_VERSION[0]))
    return 0


# ----------------------------------------------------------------------------- entry points

def _main(fn, argv):
    try:
        rc = fn(argv)
        if rc == -1:
            raise AssertionError
        return rc
    except Failure as e:
        sys.stdout.flush()
        sys.stderr.write(e.message + "\n")
        return e.rc


def main_drbdsetup(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if not a.startswith("-")]
    if args and args[0] in ("wait-connect-resource", "wait-connect-connection", "wait-connect"):
        try:
            with Store() as store:
                res = find_resource(store, args[1] if len(args) > 1 else "", local_node())
            if res is None:
                sys.stderr.write("%s: No such resource\n" % (args[1:2] or [""])[0])
                return 10
            return wait_connect(res["name"], local_node(), wfc_timeout(argv))
        except Failure as e:
            sys.stderr.write(e.message + "\n")
            return e.rc
    return _main(lambda a: retry_after_fencing(lambda: drbdsetup(a)), argv)


def main_drbdadm(argv=None):
    return _main(drbdadm, sys.argv[1:] if argv is None else argv)


def main_drbdemu(argv=None):
    return _main(admin, sys.argv[1:] if argv is None else argv)
