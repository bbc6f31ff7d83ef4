"""Tickle ACKs: make the peers of TCP connections that died with a node notice at once.

When a floating address moves, the clients of the node that went away still hold TCP
connections to it. Nothing answers them, so their kernels retransmit with exponential
backoff (0.2, 0.4, 0.8, 1.6, 3.2 s ...) and notice the new node only at their next
retransmission - measured 1-3.5 s after the address was up again for MooseFS chunkservers
and clients. The new node cannot reset connections it never had, but it can make the
peers speak: an ACK with a bogus sequence number from the address and port of the dead
connection (a "tickle") makes the peer's kernel answer with an ACK of its own (RFC 5961's
challenge ACK); that answer reaches the new node, which has no such connection and
resets it with the right sequence number. The peer sees ECONNRESET and reconnects at once.
CTDB does this for SMB/NFS, resource-agents' portblock for NFS.

So: the node serving records the established connections to its ports
(``record_connections``, from /proc/net/tcp, no fork), on storage that moves with the
service; the node taking over sends each recorded peer a few tickles once the address is
local (``python3 -m ocf_agents.tickle FILE``, started by the agent, detached).
"""

import os
import socket
import struct
import sys
import time

ESTABLISHED = "01"


def decode_proc_net_tcp(text, ports):
    """[(local ip, local port, remote ip, remote port)] of the ESTABLISHED IPv4 connections
    whose local port is one of ports, from /proc/net/tcp's text."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        try:
            local, remote = (_decode_endpoint(f) for f in fields[1:3])
        except ValueError:
            continue
        if local[1] in ports:
            found.append((*local, *remote))
    return sorted(set(found))


def _decode_endpoint(field):
    """'0100007F:24CD' (address in host byte order, little-endian here) -> ('127.0.0.1', 9421)."""
    address, port = field.split(":")
    if len(address) != 8:
        raise ValueError(field)
    return socket.inet_ntoa(struct.pack("<I", int(address, 16))), int(port, 16)


def read_connections(ports, path="/proc/net/tcp"):
    try:
        with open(path) as f:
            return decode_proc_net_tcp(f.read(), ports)
    except OSError:
        return []


def encode_connections(connections):
    return "".join(f"{lip} {lport} {rip} {rport}\n" for lip, lport, rip, rport in connections)


def decode_connections(text):
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 4:
            continue
        try:
            if not all(socket.inet_ntoa(socket.inet_aton(a)) == a for a in fields[::2]):
                continue    # only dotted quads (inet_aton also takes '1.2.3')
            found.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
        except (OSError, ValueError):
            continue
    return found


def record_connections(path, ports, write):
    """Write this node's connections to ports into path when they changed; True if written.
    No connections (a master just started, its peers not back yet) leave the last list:
    tickling a connection that is gone costs one packet, not tickling one costs seconds.

    write(path, text) writes atomically (the shim's write_file_atomically)."""
    text = encode_connections(read_connections(ports))
    if not text:
        return False
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    write(path, text)
    return True


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tickle_segment(src, sport, dst, dport):
    """A TCP ACK from src:sport to dst:dport with sequence and acknowledgement 0."""
    header = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 0x10, 1234, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6,
                                                                           len(header))
    return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]


def address_is_local(address):
    """True when address is configured on this node (binding to it works)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
            return True
        except OSError:
            return False


def send_tickles(connections, rounds=3, gap=0.1):
    """Tickle every connection whose local address is on this node; returns how many."""
    local = [c for c in connections if address_is_local(c[0])]
    if not local:
        return 0
    sockets = {}
    try:
        for lip, _, _, _ in local:
            if lip not in sockets:
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
                raw.bind((lip, 0))
                sockets[lip] = raw
        for round_ in range(rounds):
            if round_:
                time.sleep(gap)
            for lip, lport, rip, rport in local:
                try:
                    sockets[lip].sendto(tickle_segment(lip, lport, rip, rport), (rip, 0))
                except OSError:
                    continue     # a peer not reachable from here: nothing to tickle
    finally:
        for raw in sockets.values():
            raw.close()
    return len(local)


def start_tickler(path, wait=30, first=(), hold=0.0):
    """Start `main` detached (own session, stdio on /dev/null: Pacemaker waits for the
    agent's output pipes, never for this) and return at once; its pid."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ocf_agents.tickle import main; "
            "sys.exit(main(sys.argv[2:]))")
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    options = [f"--first={','.join(map(str, sorted(first)))}", f"--hold={hold}"] if first else []
    return os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", code,
                                           package_parent, path, str(wait), *options],
                          {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, file_actions=actions,
                          setsid=True)


def read_own_file(path):
    """The text of path if root wrote it and only root can change it: the list lives in a
    directory the service's user owns, and what it says is sent (by root) from here."""
    import errno
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd) as f:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise OSError(errno.EPERM, "not written by this agent (owner or mode): ignored")
        return f.read(1 << 20)


def reconnected(connections, tcp_path="/proc/net/tcp"):
    """True when every peer of connections is connected to this node again: per remote
    address and local port, as many established connections as recorded (two
    chunkservers on one machine are two connections from one address; their source
    ports change when they reconnect)."""
    from collections import Counter
    wanted = Counter((lport, rip) for _, lport, rip, _ in connections)
    now = Counter((lport, rip) for _, lport, rip, _ in
                  read_connections({port for port, _ in wanted}, tcp_path))
    return all(now[key] >= count for key, count in wanted.items())


def parse_main_options(argv):
    """FILE [WAIT] [--first=PORT[,PORT...]] [--hold=SECONDS] -> (file, wait, first, hold)."""
    options = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if a.startswith("--")
               and "=" in a}
    positional = [a for a in argv if not a.startswith("--")]
    if not positional or set(options) - {"--first", "--hold"}:
        raise ValueError("usage: python3 -m ocf_agents.tickle FILE [WAIT] "
                         "[--first=PORT[,PORT]] [--hold=SECONDS]")
    first = {int(p) for p in options.get("--first", "").split(",") if p}
    return (positional[0], float(positional[1]) if len(positional) > 1 else 30.0,
            first, float(options.get("--hold", 0)))


def main(argv):
    """python3 -m ocf_agents.tickle FILE [WAIT] [--first=PORTS --hold=SECONDS]: once one of
    the recorded local addresses is on this node (within WAIT seconds, default 30), tickle
    the recorded connections.

    With --first, the connections to those ports are tickled at once and the others only
    once their peers are connected here again (or after --hold seconds). MooseFS needs that
    order: a client that reaches the new master before the chunkservers have registered is
    told "no copies" of every chunk it reads, and mfsmount then waits a fixed 10 s
    (readdata.c) before asking again. Chunkservers reconnect only at their next
    MASTER_RECONNECTION_DELAY tick, clients at once: tickled together, the clients win.
    (A client whose own retransmission reaches the new node first learns of the move
    by itself and can still come first: measured in the lab, see README.)"""
    try:
        path, wait, first_ports, hold = parse_main_options(argv)
    except ValueError as err:
        sys.stderr.write(f"{err}\n")
        return 2
    try:
        connections = decode_connections(read_own_file(path))
    except OSError as err:
        sys.stderr.write(f"{path}: {err.strerror}\n")
        return 1
    deadline = time.monotonic() + wait
    addresses = {c[0] for c in connections}
    while connections and not any(address_is_local(a) for a in addresses):
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.05)
    time.sleep(0.05)   # the address is up; let its gratuitous ARP go out first
    first = [c for c in connections if c[1] in first_ports]
    rest = [c for c in connections if c[1] not in first_ports]
    if first:
        send_tickles(first)
        held_until = time.monotonic() + hold
        if rest:
            while time.monotonic() < held_until and not reconnected(first):
                time.sleep(0.02)
            # registration follows the connection at once; give it a moment to be processed
            time.sleep(min(0.2, max(held_until - time.monotonic(), 0)))
    send_tickles(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
