"""Ask a MooseFS master for its state over the client port; print JSON.

Run inside the test network namespace (``nsenter --net=...``). Standalone and
stdlib-only on purpose: the harness must not depend on the agent it tests.
Prints ``null`` when the master does not answer.
"""
import json
import socket
import struct
import sys

CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST = 500, 501
CLTOMA_INFO, MATOCL_INFO = 510, 511


def ask(sock, command, answer):
    sock.sendall(struct.pack(">LL", command, 0))
    header = recv_exactly(sock, 8)
    got, length = struct.unpack(">LL", header)
    if got != answer:
        raise RuntimeError(f"unexpected answer {got}")
    return recv_exactly(sock, length)


def recv_exactly(sock, length):
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise RuntimeError("connection closed")
        data += chunk
    return data


def main(host, port):
    try:
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            info = ask(sock, CLTOMA_INFO, MATOCL_INFO)
            servers = ask(sock, CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST)
    except (OSError, RuntimeError):
        print("null")
        return
    # 3.0.x answers 149 bytes: version, memory, cpu, 3 space figures, trash,
    # sustained, object counts, last save, then (after 8 bytes) the HA state
    # block whose last field is the metadata version.
    major, mid, minor = struct.unpack(">HBB", info[:4])
    total_space, avail_space = struct.unpack(">QQ", info[28:44])
    nodes, dirs, files = struct.unpack(">LLL", info[76:88])
    offset = 8 if len(info) in (137, 149) else 0
    metaversion = struct.unpack(">Q", info[offset + 113:offset + 121])[0]
    connected = sum(1 for i in range(0, len(servers), 69) if not servers[i] & 1)
    print(json.dumps({
        "version": f"{major}.{mid}.{minor // 2}", "metaversion": metaversion,
        "total_space": total_space, "avail_space": avail_space,
        "nodes": nodes, "dirs": dirs, "files": files,
        "chunkservers": connected,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:3])
