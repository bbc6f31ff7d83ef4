"""The client gate: a MooseFS master taking over lets its chunkservers in before its clients.

A master just started knows its chunkservers from its metadata but sees them disconnected
until they register again, and answers a client's read in that window "OK, no copies"
(chunks.c); mfsmount asks again only after a fixed 10 s (readdata.c, no mount option).
Chunkservers reconnect at their next MASTER_RECONNECTION_DELAY tick, clients at once: a read
in flight across a failover came back after ~14 s instead of ~4 s whenever a client won
(measured in the lab). Tickling the chunkservers first (tickle.py) decided that race only
when the clients waited for their own tickle.

So the gate keeps the clients out: start launches the master from a copy of the user's
configuration whose client port is a free port on 127.0.0.1 that only the agent knows
(``close``); the agent asks the master there. If the master then lists no disconnected
chunkserver (a new filesystem, or every chunkserver already back) start opens the gate at
once; otherwise a detached opener (``python3 -m ocf_agents.mfsgate``) tickles the previous
master's chunkservers and metaloggers, watches the master's own chunkserver list, and opens
the gate once none is disconnected (or CLIENTS_HELD_S after the first came back, or
GATE_CAP_S after the master started), then tickles the previous master's clients.

Opening (``open``) replaces the copy by a symlink to the user's file (so a later
``mfsmaster reload`` reads the user's file, as without the gate) and sends the master SIGHUP:
mfsmaster rebinds its client port on reload (matoclserv_reload; measured 10 ms). A client
refused meanwhile sleeps 2 s before it tries again (mastercomm.c); once the stop of the old
master took 0.2 s instead of 3 (fast_stop), half the lab's switchovers had their client
refused. So while the opener waits it holds the client port (``hold_client_port``): a
listener whose accept queue it keeps full, so that the kernel drops a client's SYN instead
of refusing it, and the client's own SYN retransmission 1 s later finds the gate open.
Monitor opens a gate whose opener is gone.

When the chunkservers reach the master through an address of their own that is already up
when the master starts (``servers_address_is_local``: ordered before the master, the
clients' address after it), start runs ``hold_clients`` itself and returns with the gate
open: the clients' address comes up only then, and no client is refused on the way.
"""

import os
import time

# Once the first chunkserver is back, the others get this long: their
# MASTER_RECONNECTION_DELAY (default 5 s) and a second to register.
CLIENTS_HELD_S = 6
# No chunkserver back at all (the floating address late, or every chunkserver gone):
# clients are let in this long after the master started, to a filesystem without data.
GATE_CAP_S = 20
# A chunkserver connected has still to send its chunk list; a moment for a small one.
REGISTRATION_S = 0.2
GATE_HOST = "127.0.0.1"
POLL_S = 0.05
# In the opener's command line (spawn_detached runs this module): how monitor and stop
# know a pid in the marker is still our opener.
OPENER_MARK = "ocf_agents.mfsgate"


def gate_decision(elapsed, since_first_back, connected, disconnected, cap=GATE_CAP_S):
    """None while the clients should wait; otherwise why they may come in."""
    if not disconnected:
        return f"all {connected} chunkserver(s) of the metadata connected"
    if since_first_back is not None and since_first_back >= CLIENTS_HELD_S:
        return (f"{disconnected} chunkserver(s) still disconnected {CLIENTS_HELD_S} s after "
                "the first came back")
    if elapsed >= cap:
        if since_first_back is not None:
            return f"{disconnected} chunkserver(s) still disconnected {cap:.0f} s after the start"
        return f"no chunkserver came back within {cap:.0f} s of the start"
    return None


class ClientGate:
    """One resource's gate: the configuration its master runs from (state directory,
    cleared at reboot) and, while the gate is closed, the marker with its port and the
    opener's pid."""

    def __init__(self, directory, instance, user_config):
        self.directory = directory
        self.instance = instance
        self.user_config = os.path.abspath(user_config)
        self.config = os.path.join(directory, f"{instance}.mfsmaster.cfg")
        self.marker = os.path.join(directory, f"{instance}.client-gate")

    @classmethod
    def of(cls, res, cfg):
        # Not res.state_path: it removes a symlink where a state file belongs, and an
        # open gate's configuration is one by design (only mfsmaster reads through it).
        directory = os.path.join(res.state_dir, res.type)
        return cls(directory, res.instance_without_clone_suffix, cfg.path)

    def read_marker(self):
        """(port, opener pid) while the gate is closed, else None."""
        try:
            with open(self.marker) as f:
                port, pid = f.read(64).split()
            return int(port), int(pid)
        except (OSError, ValueError):
            return None

    def aim(self, cfg):
        """Point the agent's questions at the gate while it is closed; returns the
        marker's (port, opener pid) then, else None."""
        closed = self.read_marker()
        if closed is not None:
            cfg.query_host, cfg.query_port = GATE_HOST, closed[0]
        return closed

    def close(self, cfg, user_text):
        """Before the master starts: its configuration is user_text with the client port
        on the gate; cfg is pointed at it (start from it, ask there)."""
        from ocf_agents.ocf import write_file_atomically
        from ocf_agents.tcp import tcp_socket
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        probe = tcp_socket()
        try:                        # a free port (nothing binds 127.0.0.1 at random)
            probe.bind((GATE_HOST, 0))
            port = probe.getsockname()[1]
        finally:
            probe.close()
        separator = "" if not user_text or user_text.endswith("\n") else "\n"
        write_file_atomically(self.config, (
            f"{user_text}{separator}"
            "# ocf:pyha:mfsmaster: clients are held out until the chunkservers are back;\n"
            f"# this file becomes a symlink to {self.user_config} then (mfsgate.py)\n"
            f"MATOCL_LISTEN_HOST = {GATE_HOST}\nMATOCL_LISTEN_PORT = {port}\n"))
        self.write_marker(port, 0)
        cfg.launch_path = self.config
        cfg.query_host, cfg.query_port = GATE_HOST, port

    def write_marker(self, port, opener):
        from ocf_agents.ocf import write_file_atomically
        write_file_atomically(self.marker, f"{port} {opener}\n")

    @staticmethod
    def opener_alive(pid):
        """True when pid (the marker's; 0 before start wrote it) is a live opener."""
        if not pid:
            return False
        from ocf_agents.ocf import read_file
        cmdline = read_file(f"/proc/{pid}/cmdline", "") or ""
        return OPENER_MARK in cmdline

    def open(self, cfg, master_pid, wait=2.0):
        """Let the clients in: the master's configuration becomes the user's file again and
        the master reloads it. Returns None once it listens on the client port, else why
        not (the gate stays closed)."""
        from _signal import SIGHUP  # (signal.py's enums: 6 ms of imports, on every start)
        tmp = self.config + ".open"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.user_config, tmp)
        os.rename(tmp, self.config)
        from ocf_agents.moosefs import check_is_master
        check_is_master(master_pid, "reloading")
        os.kill(master_pid, SIGHUP)
        from ocf_agents.moosefs import query_master
        deadline = time.monotonic() + wait
        # answering there: the master itself (a foreign listener does not speak MooseFS)
        while query_master(cfg.client_host, cfg.client_port, 0.5) is None:
            if time.monotonic() > deadline:
                return (f"mfsmaster (pid {master_pid}) did not listen on its client port "
                        f"{cfg.client_port} within {wait:.0f} s of its reload: see its log")
            time.sleep(0.002)   # the master rebinds within its next loop: ~1 ms
        try:
            os.unlink(self.marker)
        except FileNotFoundError:
            pass
        return None

    def stop_opener(self, wait=2.0):
        """End a waiting opener (it would open the gate of a master being stopped)."""
        import signal
        from ocf_agents.ocf import stop_own_process
        closed = self.read_marker()
        if closed is not None and closed[1]:
            stop_own_process(closed[1], OPENER_MARK, signal.SIGTERM, wait)

    def discard(self):
        """After the master stopped (or never started): nothing of the gate is left."""
        for path in (self.marker, self.config, self.config + ".open"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def client_port_problem(host, port):
    """Why mfsmaster could not listen on host:port here ("*": any address), else None.
    A bind probe, not /proc/net/tcp: reading that walks the kernel's whole connection
    table (~5 ms a read measured here, on every start)."""
    import errno
    from ocf_agents.tcp import SO_REUSEADDR, SOL_SOCKET, tcp_socket
    probe = tcp_socket()
    try:
        probe.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        probe.bind(("" if host in ("*", "0.0.0.0", "") else host, port))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            return (f"the client port {port} (MATOCL_LISTEN_PORT) is already in use on "
                    "this node: stop what listens there")
        if err.errno == errno.EADDRNOTAVAIL:
            return (f"MATOCL_LISTEN_HOST {host} is not an address of this node: start "
                    "the floating address before the master (an order constraint)")
        return None     # anything else (e.g. a name): mfsmaster's own start says it
    finally:
        probe.close()
    return None


def start_opener(gate, recorded, held_port=()):
    """Spawn the opener and write its pid into the marker (it waits for that). held_port:
    hold_client_port's sockets, handed to the opener (and closed here)."""
    from ocf_agents.ocf import spawn_detached
    port = gate.read_marker()[0]
    for sock in held_port:
        os.set_inheritable(sock.fileno(), True)
    try:
        pid = spawn_detached("mfsgate", [gate.user_config, gate.directory, gate.instance,
                                         recorded, ",".join(str(s.fileno()) for s in held_port)])
    finally:
        for sock in held_port:
            sock.close()
    gate.write_marker(port, pid)
    return pid


# Two connections of its own fill a listen(1) accept queue: the kernel then drops further
# SYNs (LISTENOVERFLOWS) without a SYN-cookie warning, and a client retries its SYN after
# the initial retransmission timeout (1 s), within mfsmount's 2 s connect timeout.
QUEUE_FILLERS = 2


def hold_client_port(cfg):
    """Sockets that hold the clients' port while the gate is closed (see the module's text),
    or () where they cannot: a MATOCL_LISTEN_HOST other than any address (it may not be
    here yet to connect to), or the port not free. Closing them lets the master bind it."""
    from ocf_agents.tcp import SO_REUSEADDR, SOL_SOCKET, connect, tcp_socket
    if cfg.values["MATOCL_LISTEN_HOST"] not in ("*", "0.0.0.0", ""):
        return ()
    sockets = []
    try:
        listener = tcp_socket()
        sockets.append(listener)
        listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        listener.bind(("", cfg.client_port))
        listener.listen(1)
        for _ in range(QUEUE_FILLERS):
            sockets.append(connect(GATE_HOST, cfg.client_port, timeout=1))
    except OSError:
        for sock in sockets:
            sock.close()
        return ()
    return tuple(sockets)


def release_client_port(fds):
    """Close what hold_client_port held (by descriptor, in the opener)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# --- the previous master's connections, where the next master finds them ---------------
# Monitor records the master's connections in DATA_PATH (mfsmaster.record_connections), for
# the next master to tickle. Where DATA_PATH moves with the service (DRBD) the next master
# reads them there; where it does not (each node restores from its own metalogger,
# pcs-examples/mfs.sh STORAGE=metalogger) that file is this node's own, from when it was
# master last: every peer has reconnected from another port since, and tickling it does
# nothing (measured: the gate opened 1.1-2.6 s after start there, 0.9-1.5 s with DRBD). So
# the list is also kept in a crm_config attribute, and start tickles both lists' union.
SHARED_MAX = 256    # connections in the attribute: the chunkservers' and metaloggers' first


def shared_connections_name(res):
    return f"{res.instance_without_clone_suffix}-connections"


def share_connections(res, cfg, connections, interval):
    """Copy the master's connections (tickle.read_connections' list) into the cluster when
    they changed: at once when a chunkserver's or metalogger's connection changed, at most
    every interval seconds when only clients did (mounts come and go; each copy is a CIB
    write, which starts a new transition). None (a master whose peers are not back yet)
    leaves the last copy. Never raises: the copy only saves seconds."""
    from ocf_agents.ocf import OCFError, read_file, write_file_atomically
    if not connections:
        return
    connections = sorted(connections, key=lambda c: c[1] == cfg.client_port)  # servers first
    value = ";".join(" ".join(map(str, c)) for c in connections[:SHARED_MAX])
    cache = res.state_path(f"{res.instance_without_clone_suffix}.connections-shared")
    cached = read_file(cache)
    if cached == value:
        return

    def servers(shared):
        return {e for e in shared.split(";") if e.split(" ")[1:2] != [str(cfg.client_port)]}
    if cached is not None and servers(cached) == servers(value):
        try:
            if time.time() - os.stat(cache).st_mtime < interval:
                return
        except OSError:
            pass
    try:
        if res.cluster_attribute(shared_connections_name(res), value):
            write_file_atomically(cache, value)
    except (OSError, OCFError) as err:
        res.log.debug(f"could not copy the connections into the cluster: {err}")


def prefetch_shared_connections(res):
    """Start reading the cluster's copy (read by connections_to_tickle)."""
    res.mfs_connections_query = res.begin_cluster_attribute(shared_connections_name(res))


def connections_to_tickle(res, recorded):
    """A file of the agent's with the union of DATA_PATH's list (the path recorded, or None)
    and the cluster's copy; None when both are empty or unreadable."""
    from ocf_agents.ocf import OCFError, write_file_atomically
    from ocf_agents.tickle import decode_connections, encode_connections, read_own_file
    union = []
    if recorded:
        try:
            union = decode_connections(read_own_file(recorded))
        except (OSError, ValueError):
            pass
    query = getattr(res, "mfs_connections_query", None)
    try:
        shared = query.result() if query else None
    except OCFError as err:
        res.log.debug(f"could not read the cluster's copy of the connections: {err}")
        shared = None
    if shared:
        union += decode_connections(shared.replace(";", "\n"))
    union = list(dict.fromkeys(union))
    if not union:
        return None
    path = res.state_path(f"{res.instance_without_clone_suffix}.tickle")
    write_file_atomically(path, encode_connections(union))
    return path


def servers_address_is_local(cfg, connections):
    """True when the address the previous master's chunkservers and metaloggers reached is
    already on this node: the layout with their own floating address, started before the
    master (pcs-examples/mfs.sh SERVER_VIP), where start itself can wait for them."""
    from ocf_agents.tickle import address_is_local
    return any(address_is_local(a) for a in {c[0] for c in connections
                                             if c[1] != cfg.client_port})


def hold_clients(gate, cfg, lock, connections, cap=GATE_CAP_S, clock=time.monotonic,
                 sleep=time.sleep):
    """The opener's work (see the module's text): returns the reason the gate may open, or
    None when the master went away first. Start runs it itself when the chunkservers'
    address is already here (servers_address_is_local)."""
    from ocf_agents.moosefs import lock_holder, query_master
    from ocf_agents.tickle import address_is_local, send_tickles
    peers_first = [c for c in connections if c[1] != cfg.client_port]
    # their own address: with one floating address for everything this is the clients' too
    addresses = {c[0] for c in peers_first}
    started, first_back, tickled = clock(), None, not peers_first
    while True:
        if not tickled and any(address_is_local(a) for a in addresses):
            sleep(POLL_S)   # the address is up; let its gratuitous ARP go out first
            send_tickles(peers_first)
            tickled = True
        if gate.read_marker() is None:
            return None     # stopped (stop discards the gate), or opened by monitor
        info = query_master(GATE_HOST, cfg.query_port, 1.0, count_chunkservers=True)
        now = clock()
        if info is None:
            if lock_holder(lock) is None:
                return None
        else:
            if info.chunkservers and first_back is None:
                first_back = now
            reason = gate_decision(now - started, first_back and now - first_back,
                                   info.chunkservers, info.disconnected, cap)
            if reason is not None:
                if info.chunkservers:
                    sleep(REGISTRATION_S)
                return reason
        sleep(POLL_S)


def main(argv):
    """python3 -m ocf_agents.mfsgate USER_CONFIG DIRECTORY INSTANCE CONNECTIONS (started by
    the agent's start, detached): hold the clients out until the chunkservers are back, then
    let them in; the connections recorded by the previous master (CONNECTIONS) are tickled,
    chunkservers and metaloggers at once, clients once they can come in."""
    if len(argv) not in (4, 5):
        import sys
        sys.stderr.write("usage: python3 -m ocf_agents.mfsgate USER_CONFIG DIRECTORY INSTANCE "
                         "CONNECTIONS [HELD_PORT_FDS]\n")
        return 2
    held = [int(fd) for fd in (argv[4] if len(argv) == 5 else "").split(",") if fd.isdigit()]
    from ocf_agents.ocf import Log, OCFError, read_file
    from ocf_agents.moosefs import MasterConfig, lock_holder, LOCK_FILE
    from ocf_agents.tickle import decode_connections, read_own_file, send_tickles, \
        wait_for_address
    user_config, directory, instance, recorded = argv[:4]
    log = Log("mfsmaster", instance, "client-gate")
    gate = ClientGate(directory, instance, user_config)
    try:
        cfg = MasterConfig(user_config, read_file(user_config) or "")
        # Start writes this opener's pid into the marker right after spawning it: wait
        # for that, or an opening now would be undone by that write (the marker back,
        # the gate open, and monitor asking a port nobody listens on).
        deadline = time.monotonic() + 2
        while (gate.read_marker() or (0, 0))[1] != os.getpid() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not gate.aim(cfg):
            return 0
        try:
            connections = decode_connections(read_own_file(recorded))
        except OSError:
            connections = []    # none recorded (a first start): nothing to tickle
        lock = cfg.path_in_data(LOCK_FILE)
        started = time.monotonic()
        reason = hold_clients(gate, cfg, lock, connections)
        if reason is None:
            return 0
        holder = lock_holder(lock)
        if holder is None:
            return 0
        release_client_port(held)     # the master binds the port now; a waiting SYN comes in
        failure = gate.open(cfg, holder)
        if failure:
            log.error(f"clients still held out: {failure}")
            return 1
        log.info(f"clients let in {time.monotonic() - started:.1f} s after start: {reason}")
        clients = [c for c in connections if c[1] == cfg.client_port]
        if clients and wait_for_address(clients, GATE_CAP_S):
            send_tickles(clients)
        return 0
    except OCFError as err:
        log.error(f"client gate: {err.reason}")
        return 1
    except OSError as err:
        log.error(f"client gate: {err}")
        return 1


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
