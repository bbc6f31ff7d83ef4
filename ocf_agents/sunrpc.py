"""A minimal ONC RPC (RFC 5531) client: NULL calls and portmapper look-ups over TCP.

What a deep NFS monitor needs to ask "does nfsd answer, does rpc.mountd answer,
on this address" without forking rpcinfo: one connection, one call, one reply.
Only AUTH_NONE; only procedure 0 (NULL) and the portmapper's GETPORT.
"""

import socket
import struct

PORTMAPPER = 100000
NFS = 100003
MOUNT = 100005
NLM = 100021
STATUS = 100024
NAMES = {PORTMAPPER: "rpcbind", NFS: "nfsd", MOUNT: "rpc.mountd", NLM: "lockd",
         STATUS: "rpc.statd"}

_CALL, _REPLY = 0, 1
_MSG_ACCEPTED = 0
_ACCEPT_STATES = {0: "success", 1: "program unavailable", 2: "version mismatch",
                  3: "procedure unavailable", 4: "garbage arguments", 5: "system error"}
_IPPROTO_TCP = 6
_MAX_REPLY = 1 << 16


class RPCError(Exception):
    """The service did not answer as an RPC server should; the message says how."""


def call(address, port, program, version, procedure=0, args=b"", timeout=5.0, xid=0x70796861):
    """One RPC over TCP; returns the reply's result bytes (after accept_stat)."""
    header = struct.pack(">6I", xid, _CALL, 2, program, version, procedure)
    auth_none = struct.pack(">4I", 0, 0, 0, 0)   # credential and verifier, both empty
    body = header + auth_none + args
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((address, port))
            sock.sendall(struct.pack(">I", 0x80000000 | len(body)) + body)
            reply = _read_record(sock)
    except socket.timeout:
        raise RPCError(f"no answer within {timeout:g} s") from None
    except OSError as err:
        raise RPCError(err.strerror or str(err)) from None
    return decode_reply(reply, xid)


def _read_record(sock):
    """One RPC record (the fragments of TCP record marking, joined)."""
    data = b""
    while True:
        mark = _read_exactly(sock, 4)
        (word,) = struct.unpack(">I", mark)
        length = word & 0x7FFFFFFF
        if len(data) + length > _MAX_REPLY:
            raise RPCError(f"reply larger than {_MAX_REPLY} bytes")
        data += _read_exactly(sock, length)
        if word & 0x80000000:
            return data


def _read_exactly(sock, count):
    chunks, left = [], count
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise RPCError("connection closed before the reply was complete")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def decode_reply(reply, xid):
    """The results of an accepted, successful reply; RPCError for anything else."""
    if len(reply) < 12:
        raise RPCError("reply too short")
    got_xid, kind, stat = struct.unpack(">3I", reply[:12])
    if got_xid != xid or kind != _REPLY:
        raise RPCError("answer is not a reply to this call")
    if stat != _MSG_ACCEPTED:
        raise RPCError("call refused (authentication or RPC version)")
    if len(reply) < 20:
        raise RPCError("reply too short")
    _flavor, verf_len = struct.unpack(">2I", reply[12:20])
    offset = 20 + ((verf_len + 3) & ~3)
    if len(reply) < offset + 4:
        raise RPCError("reply too short")
    (accept,) = struct.unpack(">I", reply[offset:offset + 4])
    if accept != 0:
        raise RPCError(_ACCEPT_STATES.get(accept, f"accept state {accept}"))
    return reply[offset + 4:]


def read_tcp_port(address, program, version, timeout=5.0):
    """The TCP port rpcbind has registered for program/version (0: not registered)."""
    args = struct.pack(">4I", program, version, _IPPROTO_TCP, 0)
    result = call(address, 111, PORTMAPPER, 2, procedure=3, args=args, timeout=timeout)
    if len(result) < 4:
        raise RPCError("rpcbind's reply holds no port")
    return struct.unpack(">I", result[:4])[0]


def null_call(address, program, version, port=None, timeout=5.0, any_version=False):
    """Ping program/version at address (port from rpcbind unless given). any_version:
    a "version mismatch" reply counts too (the program answers, without that version)."""
    if port is None:
        port = read_tcp_port(address, program, version, timeout)
        if port == 0:
            raise RPCError(f"{NAMES.get(program, program)} version {version} is not "
                           "registered with rpcbind")
    try:
        call(address, port, program, version, timeout=timeout)
    except RPCError as err:
        if not (any_version and str(err) == _ACCEPT_STATES[2]):
            raise
    return port
