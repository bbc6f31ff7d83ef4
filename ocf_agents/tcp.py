"""TCP sockets for the agents' every-monitor paths, without importing socket.py.

socket.py wraps the C module _socket in enums and pulls in selectors: 12.6 ms of
imports measured here (Python 3.11), more than the whole query it serves, on every
monitor of mfsmaster and at every start. What the agents need - connect with a timeout,
bind a probe, send and receive bytes - is all in _socket itself. Its socket objects are
not context managers: callers close them in a finally.
"""

import _socket

SOL_SOCKET = _socket.SOL_SOCKET
SO_REUSEADDR = _socket.SO_REUSEADDR


def tcp_socket(family=_socket.AF_INET):
    """A new, unconnected TCP socket (closed by the caller)."""
    return _socket.socket(family, _socket.SOCK_STREAM)


def connect(host, port, timeout):
    """A TCP connection to host:port (each address of host in turn), made within timeout
    seconds per address and keeping that timeout for its reads and writes; OSError when
    none answers (a name that does not resolve is an OSError too)."""
    error = OSError(f"{host} has no address")
    # (getaddrinfo encodes a str host with the idna codec, whose import costs 8 ms more;
    # an ASCII name or address is the same as bytes)
    name = host.encode("ascii") if host.isascii() else host
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0,
                                                               _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as err:
            sock.close()
            error = err
    raise error
