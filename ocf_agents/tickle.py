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
local (``send_tickles``; ``python3 -m ocf_agents.tickle FILE`` from a shell). The
MooseFS master's takeover sends them in an order of its own (mfsgate.py).
"""

import os
import _socket     # not socket.py: 12.6 ms of imports on every monitor (see tcp.py)
import struct
import sys
import time

ESTABLISHED = "01"   # /proc/net/tcp's st field


def decode_proc_net_tcp(text, ports):
    """[(local ip, local port, remote ip, remote port)] of the established IPv4
    connections whose local port is one of ports, from /proc/net/tcp's text. Loopback
    connections are left out: they never move to another node (e.g. the client gate's own
    connections to the held port, recorded by the first monitor after a start)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        try:
            local, remote = (_decode_endpoint(f) for f in fields[1:3])
        except ValueError:
            continue
        if local[1] in ports and not local[0].startswith("127."):
            found.append((*local, *remote))
    return sorted(set(found))


def _decode_endpoint(field):
    """'0100007F:24CD' (address in host byte order, little-endian here) -> ('127.0.0.1', 9421)."""
    address, port = field.split(":")
    if len(address) != 8:
        raise ValueError(field)
    return _socket.inet_ntoa(struct.pack("<I", int(address, 16))), int(port, 16)


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
            if not all(_socket.inet_ntoa(_socket.inet_aton(a)) == a for a in fields[::2]):
                continue    # only dotted quads (inet_aton also takes '1.2.3')
            found.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
        except (OSError, ValueError):
            continue
    return found


def record_connections(path, connections, write):
    """Write connections (read_connections' list) into path when they changed; True if
    written. No connections (a master just started, its peers not back yet) leave the last
    list: tickling a connection that is gone costs one packet, not tickling one costs seconds.

    write(path, text) writes atomically (the shim's write_file_atomically)."""
    text = encode_connections(connections)
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
    pseudo = _socket.inet_aton(src) + _socket.inet_aton(dst) + struct.pack("!BBH", 0, 6,
                                                                           len(header))
    return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]


def address_is_local(address):
    """True when address is configured on this node (binding to it works)."""
    probe = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        probe.bind((address, 0))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def send_tickles(connections, rounds=3, gap=0.1):
    """Tickle every connection whose local address is on this node; returns how many."""
    local = [c for c in connections if address_is_local(c[0])]
    if not local:
        return 0
    sockets = {}
    try:
        for lip, _, _, _ in local:
            if lip not in sockets:
                raw = _socket.socket(_socket.AF_INET, _socket.SOCK_RAW, _socket.IPPROTO_TCP)
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


def wait_for_address(connections, wait):
    """Wait up to wait seconds for one of the connections' local addresses to be on this
    node; True once it is (and its gratuitous ARP had a moment to go out)."""
    deadline = time.monotonic() + wait
    addresses = {c[0] for c in connections}
    while not any(address_is_local(a) for a in addresses):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    time.sleep(0.05)
    return True


def main(argv):
    """python3 -m ocf_agents.tickle FILE [WAIT [PORT]]: once one of the recorded local
    addresses is on this node (within WAIT seconds, default 30), tickle the recorded
    connections (only those to the local PORT, when given)."""
    if len(argv) not in (1, 2, 3) or any(a.startswith("-") for a in argv):
        sys.stderr.write("usage: python3 -m ocf_agents.tickle FILE [WAIT [PORT]]\n")
        return 2
    path = argv[0]
    try:
        wait = float(argv[1]) if len(argv) > 1 else 30.0
        port = int(argv[2]) if len(argv) > 2 else None
    except ValueError:
        sys.stderr.write(f"WAIT must be a number of seconds and PORT a port: {argv[1:]!r}\n")
        return 2
    try:
        connections = decode_connections(read_own_file(path))
    except ValueError:
        sys.stderr.write(f"{path}: not a connection list\n")
        return 1
    except OSError as err:
        sys.stderr.write(f"{path}: {err.strerror}\n")
        return 1
    if port is not None:
        connections = [c for c in connections if c[1] == port]
    if connections and not wait_for_address(connections, wait):
        return 1
    send_tickles(connections)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
