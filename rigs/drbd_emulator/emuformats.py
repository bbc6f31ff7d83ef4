"""DRBD emulator, the output formats of drbd-utils 9.22 (and 8.4): events2, status (plain,
--verbose, --json), sh-status, /proc/drbd, get-gi/show-gi, drbdadm dump."""

from emustate import (
    Failure, GIT_HASH, KERNEL_VERSION, generation_ids, image_path, local_node, suspended_words,
    yn)
from emutopo import (
    connected, has_quorum, local_disk, may_promote, minor_of, node_id, peer_is_client,
    peer_view, peers_of, promotion_score, resync_suspended, suspension, vol, volumes)
from emuactions import unknown_resource

def format_gi(res, me, peer, now, v9, v=0):
    """One get-gi line: drbd-utils 9.22 dt_print_v9_uuids (4 UUIDs, 7 device flags, 5 peer
    flags) or, for 8.4, dt_print_uuids (4 UUIDs, 7 flags)."""
    M = res["node"][me]
    V = vol(M, v)
    disk = V["disk"] if V["attached"] else "Diskless"
    conn = bool(peer) and connected(res, me, peer)
    consistent = disk in ("UpToDate", "Consistent", "Outdated")
    primary = M["role"] == "Primary"
    line = "%s:%s:%s:%s:" % generation_ids(V)
    if v9:
        P = vol(res["node"][peer], v) if peer else None
        peer_outdated = bool(P) and P["disk"] in ("Outdated", "Inconsistent")
        flags = [consistent, disk == "UpToDate", primary, False, not primary, False, False,
                 conn, peer_outdated, res["fencing"] != "dont-care", False, bool(P)]
    else:
        flags = [consistent, disk == "UpToDate", primary, conn, False, False, False]
    return line + ":".join("1" if f else "0" for f in flags) + "\n"


V9_GI_HEAD = (
    "\n"
    "       +--<  Current data generation UUID  >-\n"
    "       |               +--<  Bitmap's base data generation UUID  >-\n"
    "       |               |                 +--<  younger history UUID  >-\n"
    "       |               |                 |         +-<  older history  >-\n"
    "       V               V                 V         V\n")
V9_GI_TAIL = (
    "                                                                    ^ ^ ^ ^ ^ ^ ^ ^ ^ ^ ^ ^\n"
    "                                      -<  Data consistency flag  >--+ | | | | | | | | | | |\n"
    "                             -<  Data was/is currently up-to-date  >--+ | | | | | | | | | |\n"
    "                                  -<  Node was/is currently primary  >--+ | | | | | | | | |\n"
    " -<  This node was a crashed primary, and has not seen its peer since  >--+ | | | | | | | |\n"
    "             -<  The activity-log was applied, the disk can be attached  >--+ | | | | | | |\n"
    "        -<  The activity-log was disabled, peer is completely out of sync  >--+ | | | | | |\n"
    "                              -<  This node was primary when it lost quorum  >--+ | | | | |\n"
    "                                          -<  Node was/is currently connected  >--+ | | | |\n"
    "                              -<  The peer's disk was out-dated or inconsistent  >--+ | | |\n"
    "                                 -<   A fence policy other the dont-care was used  >--+ | |\n"
    "                  -<  Node was in the progress of marking all blocks as out of sync  >--+ |\n"
    "                     -<  At least once we saw this node with a backing device attached >--+\n"
    "\n")
V84_GI_TAIL = (
    "                                                                    ^ ^ ^ ^ ^ ^ ^\n"
    "                                      -<  Data consistency flag  >--+ | | | | | |\n"
    "                             -<  Data was/is currently up-to-date  >--+ | | | | |\n"
    "                                  -<  Node was/is currently primary  >--+ | | | |\n"
    "                                  -<  Node was/is currently connected  >--+ | | |\n"
    "         -<  Node was in the progress of setting all bits in the bitmap  >--+ | |\n"
    "                        -<  The peer's disk was out-dated or inconsistent  >--+ |\n"
    "      -<  This node was a crashed primary, and has not seen its peer since   >--+\n"
    "\n")


def gi_output(res, me, now, args, pretty):
    """drbdsetup get-gi/show-gi: v9 `<res> <peer-node-id> <volume>`, 8.4 `<minor>`."""
    M = res["node"][me]
    if not M["up"]:
        raise unknown_resource(res)
    v9 = res["mode"] == "9"
    peer = None
    peers = peers_of(res, me)
    v = 0
    if v9:
        if len(args) < 4:
            raise Failure("USAGE: drbdsetup %s {resource} {peer_node_id} {volume}" % args[0], 20)
        peer = next((p for p in peers if str(node_id(res, p)) == args[2]), None)
        if peer is None or not args[3].isdigit() or int(args[3]) not in volumes(res):
            raise Failure("%s: Failure: (162) Invalid configuration request" % res["name"], 10)
        v = int(args[3])
    else:
        v = next((w for w in volumes(res) if str(minor_of(res, w)) == args[1]), 0)
        peer = peers[0] if peers else None
    if not vol(M, v)["attached"]:
        raise Failure("%d: Failure: (112) Device has no disk" % minor_of(res, v), 10)
    line = format_gi(res, me, peer, now, v9, v)
    if not pretty:
        return line
    return V9_GI_HEAD + line + (V9_GI_TAIL if v9 else V84_GI_TAIL)


def format_events2(res, me, now, statistics=False):
    """events2 --now for one resource (kernel 9.1 get_initial_state order): resource,
    connections, paths, devices (by volume), then peer devices by volume, each volume's
    connections in order."""
    M = res["node"][me]
    if not M["up"]:
        return ""
    name = res["name"]
    out = []
    line = "exists resource name:%s role:%s suspended:%s force-io-failures:no" % (
        name, M["role"], suspended_words(M))
    if statistics:
        line += " write-ordering:flush"
    line += " may_promote:%s promotion_score:%d" % (yn(may_promote(res, me, now)),
                                                     promotion_score(res, me, now))
    out.append(line)
    peers = peers_of(res, me)
    for p in peers:
        cstate, prole = peer_view(res, me, p, now)[:2]
        line = "exists connection name:%s peer-node-id:%d conn-name:%s connection:%s role:%s" % (
            name, node_id(res, p), p, cstate, prole)
        if statistics:
            line += " congested:no ap-in-flight:0 rs-in-flight:0"
        out.append(line)
    addrs = res.get("addresses") or {}
    for p in peers:
        if me in addrs and p in addrs:
            out.append("exists path name:%s peer-node-id:%d conn-name:%s local:ipv4:%s:%d "
                       "peer:ipv4:%s:%d established:%s" % (
                           name, node_id(res, p), p, addrs[me], res["port"], addrs[p],
                           res["port"], yn(connected(res, me, p))))
    for v in volumes(res):
        V = vol(M, v)
        line = ("exists device name:%s volume:%d minor:%d backing_dev:%s disk:%s client:%s "
                "quorum:%s" % (name, v, minor_of(res, v),
                               image_path(res, V["image"]) if V["attached"] else "none",
                               local_disk(M, v), yn(M.get("client")), yn(has_quorum(res, me, v))))
        if statistics:
            line += (" size:%d read:0 written:0 al-writes:0 bm-writes:0 upper-pending:0"
                     " lower-pending:0 al-suspended:no blocked:no" % res["size_kib"])
        out.append(line)
    for v in volumes(res):
        for p in peers:
            cstate, prole, repl, pdisk, done = peer_view(res, me, p, now, v)
            line = ("exists peer-device name:%s peer-node-id:%d conn-name:%s volume:%d "
                    "replication:%s peer-disk:%s peer-client:%s resync-suspended:%s" % (
                        name, node_id(res, p), p, v, repl, pdisk,
                        yn(peer_is_client(res, me, p)), resync_suspended(res, me, p, v)))
            if done is not None:
                line += " done:%.2f" % done
            if statistics:
                line += " received:0 sent:0 out-of-sync:%d pending:0 unacked:0" % \
                    out_of_sync(res, done)
            out.append(line)
    return "".join(l + "\n" for l in out)


def out_of_sync(res, done):
    if done is None:
        return 0
    return int(res["size_kib"] * (100.0 - done) / 100.0)


def format_status(res, me, now):
    """drbdsetup status (not a tty): with one volume 0 the volume numbers are left out,
    otherwise every device and peer device line starts with volume:N (drbdsetup.c
    device_status/peer_device_status); a connection that is not Connected shows no peer
    devices (connection_status)."""
    M = res["node"][me]
    single = len(volumes(res)) == 1
    head = "%s role:%s" % (res["name"], M["role"])
    if any(suspension(M)):
        head += " suspended:%s" % suspended_words(M)
    out = [head]
    for v in volumes(res):
        out.append(("  disk:" if single else "  volume:%d disk:" % v) + local_disk(M, v) +
                   client_word(M, v) + ("" if has_quorum(res, me, v) else " quorum:no"))
    for p in peers_of(res, me):
        cstate, prole = peer_view(res, me, p, now)[:2]
        if cstate != "Connected":
            out.append("  %s connection:%s" % (p, cstate))
            continue
        out.append("  %s role:%s" % (p, prole))
        for v in volumes(res):
            repl, pdisk, done = peer_view(res, me, p, now, v)[2:]
            words = [] if single else ["volume:%d" % v]
            if repl not in ("Off", "Established"):
                words.append("replication:%s" % repl)
            words.append("peer-disk:%s" % pdisk + peer_client_word(res, me, p, pdisk))
            if done is not None:
                words.append("done:%.2f" % done)
            if resync_suspended(res, me, p, v) != "no":
                words.append("resync-suspended:%s" % resync_suspended(res, me, p, v))
            out.append("    " + " ".join(words))
    return "\n".join(out) + "\n\n"


def client_word(M, v=0):
    """drbd-utils device_status: a Diskless disk says whether it is intentionally so."""
    return " client:%s" % yn(M.get("client")) if local_disk(M, v) == "Diskless" else ""


def peer_client_word(res, me, peer, pdisk):
    return " peer-client:%s" % yn(peer_is_client(res, me, peer)) if pdisk == "Diskless" else ""


def _wrap(indent, main, stats=(), width=80):
    """drbdsetup status --verbose layout: an object's tokens wrap at 80 columns with the
    continuation indented by 4; its statistics always start on a continuation line."""
    lines, cur = [], indent + main[0]
    for t in main[1:]:
        if len(cur) + 1 + len(t) > width:
            lines.append(cur)
            cur = indent + "    " + t
        else:
            cur += " " + t
    if stats:
        lines.append(cur)
        cur = indent + "    " + stats[0]
        for t in stats[1:]:
            if len(cur) + 1 + len(t) > width:
                lines.append(cur)
                cur = indent + "    " + t
            else:
                cur += " " + t
    lines.append(cur)
    return lines


def format_status_verbose(res, me, now, statistics):
    M = res["node"][me]
    main = [res["name"], "node-id:%d" % node_id(res, me), "role:%s" % M["role"],
            "suspended:%s" % suspended_words(M), "force-io-failures:no"]
    out = _wrap("", main, ["write-ordering:flush"] if statistics else ())
    for v in volumes(res):
        V = vol(M, v)
        main = ["volume:%d" % v, "minor:%d" % minor_of(res, v),
                "disk:%s" % local_disk(M, v) + client_word(M, v),
                "backing_dev:%s" % (image_path(res, V["image"]) if V["attached"] else "none"),
                "quorum:%s" % yn(has_quorum(res, me, v))]
        stats = ["size:%d" % res["size_kib"], "read:0", "written:0", "al-writes:0",
                 "bm-writes:0", "upper-pending:0", "lower-pending:0", "al-suspended:no",
                 "blocked:no"]
        out += _wrap("  ", main, stats if statistics else ())
    for p in peers_of(res, me):
        cstate, prole = peer_view(res, me, p, now)[:2]
        main = [p, "node-id:%d" % node_id(res, p), "connection:%s" % cstate,
                "role:%s" % prole, "congested:no"]
        out += _wrap("  ", main, ["ap-in-flight:0", "rs-in-flight:0"] if statistics else ())
        for v in volumes(res):
            repl, pdisk, done = peer_view(res, me, p, now, v)[2:]
            main = ["volume:%d" % v, "replication:%s" % repl,
                    "peer-disk:%s" % pdisk + peer_client_word(res, me, p, pdisk)]
            if done is not None:
                main.append("done:%.2f" % done)
            main.append("resync-suspended:%s" % resync_suspended(res, me, p, v))
            stats = ["received:0", "sent:0", "out-of-sync:%d" % out_of_sync(res, done),
                     "pending:0", "unacked:0"]
            if done is not None:
                stats += ["dbdt1:0.24", "eta:%d" % max(
                    0, int(float(res["resync_seconds"]) * (100 - done) / 100))]
            out += _wrap("    ", main, stats if statistics else ())
    return "\n".join(out) + "\n\n"


def _jb(v):
    return "true" if v else "false"


def format_status_json_one(res, me, now):
    """drbdsetup status --json (drbdsetup.c status_cmd: devices joined by ",", each
    connection's peer devices joined by ",")."""
    M = res["node"][me]
    L = ['{', '  "name": "%s",' % res["name"], '  "node-id": %d,' % node_id(res, me),
         '  "role": "%s",' % M["role"]]
    flags = suspension(M)
    for k, v in zip(("suspended", "suspended-user", "suspended-no-data", "suspended-fencing",
                     "suspended-quorum", "force-io-failures"), (any(flags),) + flags + (False,)):
        L.append('  "%s": %s,' % (k, _jb(v)))
    L += ['  "write-ordering": "flush",', '  "devices": [']
    devices = []
    for v in volumes(res):
        devices.append("\n".join([
            '    {', '      "volume": %d,' % v, '      "minor": %d,' % minor_of(res, v),
            '      "disk-state": "%s",' % local_disk(M, v),
            '      "client": %s,' % _jb(M.get("client")),
            '      "quorum": %s,' % _jb(has_quorum(res, me, v)),
            '      "size": %d,' % res["size_kib"], '      "read": 0,', '      "written": 0,',
            '      "al-writes": 0,', '      "bm-writes": 0,', '      "upper-pending": 0,',
            '      "lower-pending": 0', '    }']))
    L.append(",\n".join(devices) + " ],")
    L.append('  "connections": [')
    conns = []
    for p in peers_of(res, me):
        cstate, prole = peer_view(res, me, p, now)[:2]
        C = ['    {', '      "peer-node-id": %d,' % node_id(res, p), '      "name": "%s",' % p,
             '      "connection-state": "%s", ' % cstate, '      "congested": false,',
             '      "peer-role": "%s",' % prole, '      "ap-in-flight": 0,',
             '      "rs-in-flight": 0,', '      "peer_devices": [']
        pds = [peer_device_json(res, me, p, v, now) for v in volumes(res)]
        C.append(",\n".join(pds) + " ]")
        C.append('    }')
        conns.append("\n".join(C))
    if conns:
        L.append(",\n".join(conns) + " ]")
    else:
        L[-1] = '  "connections": [ ]'
    L.append('}')
    return "\n".join(L)


def peer_device_json(res, me, p, v, now):
    repl, pdisk, done = peer_view(res, me, p, now, v)[2:]
    C = ['        {', '          "volume": %d,' % v, '          "replication-state": "%s",' % repl,
         '          "peer-disk-state": "%s",' % pdisk,
         '          "peer-client": %s,' % _jb(peer_is_client(res, me, p)),
         '          "resync-suspended": "%s",' % resync_suspended(res, me, p, v),
         '          "received": 0,', '          "sent": 0,',
         '          "out-of-sync": %d,' % out_of_sync(res, done),
         '          "pending": 0,', '          "unacked": 0,',
         '          "has-sync-details": %s,' % _jb(done is not None),
         '          "has-online-verify-details": false,']
    if done is None:
        C.append('          "percent-in-sync": 100.00')
    else:
        total = res["size_kib"] * 2
        C += ['          "percent-in-sync": %.2f,' % done,
              '          "rs-total": %d,' % total, '          "rs-dt-start-ms": 0,',
              '          "rs-paused-ms": 0,', '          "rs-dt0-ms": 0,',
              '          "rs-db0-sectors": 0,', '          "rs-dt1-ms": 100,',
              '          "rs-db1-sectors": 50,', '          "rs-failed": 0,',
              '          "rs-same-csum": 0,', '          "want": 0.00,',
              '          "db0/dt0 [MiB/s]": 0.00,', '          "db1/dt1 [MiB/s]": 0.24,',
              '          "estimated-seconds-to-finish": %d,' % max(
                  0, int(float(res["resync_seconds"]) * (100 - done) / 100)),
              '          "db/dt [MiB/s]": 1.00,',
              '          "percent-resync-done": %.2f' % done]
    C.append('        }')
    return "\n".join(C)


def format_status_json(resources, me, now):
    objs = [format_status_json_one(r, me, now) for r in resources]
    if not objs:
        return "[\n]\n"
    return "[\n" + ",\n".join(objs) + "\n]\n"


def cstate84(res, me, now, v=0):
    M = res["node"][me]
    if not M["up"]:
        return "Unconfigured"
    p = peers_of(res, me)
    if not p:
        return "StandAlone"
    cstate, prole, repl, pdisk, done = peer_view(res, me, p[0], now, v)
    if cstate == "Connected":
        return "Connected" if repl == "Established" else repl
    return "WFConnection" if cstate == "Connecting" else "StandAlone"


def peer84(res, me, now, v=0):
    p = peers_of(res, me)
    if not p:
        return "Unknown", "DUnknown", None
    view = peer_view(res, me, p[0], now, v)
    return view[1], view[3], view[4]


def format_sh_status(res, me, now):
    """8.4 sh-status: one block per volume (minor)."""
    return "".join(sh_status_block(res, me, now, v) for v in volumes(res))


def sh_status_block(res, me, now, v):
    M = res["node"][me]
    head = "_minor=%d\n_res_name=%s\n_volume=%d\n" % (minor_of(res, v), res["name"], v)
    if not M["up"]:
        return head + "_known=Unconfigured\n\n_sh_status_process\n\n\n"
    prole, pdisk, done = peer84(res, me, now, v)
    return head + ("_known=Configured\n\n_cstate=%s\n_role=%s\n_peer=%s\n_disk=%s\n_pdsk=%s\n\n"
                   "_flags_susp=\n_flags_aftr_isp=\n_flags_peer_isp=\n_flags_user_isp=\n\n"
                   "_resynced_percent=%s\n\n_sh_status_process\n\n\n") % (
        cstate84(res, me, now, v), M["role"], prole, local_disk(M, v), pdisk,
        "" if done is None else "%.1f" % done)


def format_proc_drbd(resources, me, now):
    mine = [r for r in resources if me in r["nodes"]]
    mode = mine[0]["mode"] if mine else "9"
    ver, _, api = KERNEL_VERSION[mode]
    out = ["version: %s-1 (api:%s)" % (ver, api),
           "GIT-hash: %s build by drbdemu@localhost, 2024-01-01 00:00:00" % GIT_HASH]
    if mode == "9":
        out.append("Transports (api:18): tcp (%s)" % ver)
        return "\n".join(out) + "\n"
    minors = sorted((minor_of(r, v), r, v) for r in mine for v in volumes(r)
                    if r["node"][me]["up"] and r["mode"] == "8.4")
    for minor, res, v in minors:
        M = res["node"][me]
        prole, pdisk, done = peer84(res, me, now, v)
        out.append(" %d: cs:%s ro:%s/%s ds:%s/%s C r-----" % (
            minor, cstate84(res, me, now, v), M["role"], prole, local_disk(M, v), pdisk))
        oos = out_of_sync(res, done)
        out.append("    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:%d" % oos)
        if done is not None:
            x = int(done * 10) // 50
            bar = "=" * max(x - 1, 0) + ">" + "." * (20 - max(x, 1))
            left = max(0, int(float(res["resync_seconds"]) * (100 - done) / 100))
            out.append("\t[%s] sync'ed: %.1f%% (%d/%d)K" % (bar, done, oos, res["size_kib"]))
            out.append("\tfinish: %d:%02d:%02d speed: 4,728 (6,616) want: 51,200 K/sec" % (
                left // 3600, left // 60 % 60, left % 60))
    return "\n".join(out) + "\n"


def format_dump(res):
    L = ["# resource %s on %s: not ignored, not stacked" % (res["name"], local_node()),
         "# defined at /etc/drbd.d/%s.res:1" % res["name"], "resource %s {" % res["name"]]
    for i, n in enumerate(res["nodes"]):
        L += ["    on %s {" % n, "        node-id %d;" % i]
        for v in volumes(res):
            L += ["        volume %d {" % v,
                  "            device       minor %d;" % minor_of(res, v),
                  "            disk         %s;" % (
                      "none" if res["node"][n].get("client")
                      else image_path(res, vol(res["node"][n], v)["image"])),
                  "            meta-disk    internal;", "        }"]
        addr = (res.get("addresses") or {}).get(n)
        if addr:
            L.append("        address          ipv4 %s:%d;" % (addr, res["port"]))
        L.append("    }")
    if res.get("quorum", "off") != "off":
        L += ["    options {", "        quorum             %s;" % res["quorum"],
              "        on-no-quorum       %s;" % res.get("on_no_quorum", "suspend-io"), "    }"]
    L.append("    net {")
    L.append("        protocol           C;")
    if res["allow_two_primaries"]:
        L.append("        allow-two-primaries yes;")
    if res["fencing"] != "dont-care":
        L.append("        fencing            %s;" % res["fencing"])
    L.append("    }")
    handlers = {k: v for k, v in (res.get("handlers") or {}).items() if v}
    if handlers:
        L.append("    handlers {")
        L += ['        %-18s "%s";' % (k, v.replace('"', '\\"')) for k, v in sorted(handlers.items())]
        L.append("    }")
    L.append("}")
    return "\n".join(L) + "\n\n"
