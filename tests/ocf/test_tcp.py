"""ocf_agents.tcp: TCP connections for every-monitor paths, on _socket alone."""
import socket
import subprocess
import sys
import threading

import pytest

from ocf_agents.tcp import connect
from rigs.agents import REPO


def test_connect_talks_to_a_listener_and_keeps_its_timeout_for_reads():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def echo():
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(5))
        thread = threading.Thread(target=echo)
        thread.start()
        sock = connect("127.0.0.1", port, 2.0)
        try:
            assert sock.gettimeout() == 2.0
            sock.sendall(b"hello")
            assert sock.recv(5) == b"hello"
        finally:
            sock.close()
            thread.join()


def test_a_refused_port_and_an_unknown_name_are_oserrors():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    with pytest.raises(OSError):
        connect("127.0.0.1", port, 1.0)     # nobody listens there any more
    with pytest.raises(OSError):
        connect("no-such-host.invalid", port, 1.0)


def test_a_connection_imports_neither_socket_py_nor_the_idna_codec():
    # their imports cost 12.6 and 8 ms measured here: more than the query they would serve
    code = ("import sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from ocf_agents.tcp import connect\n"
            "try:\n"
            "    connect('127.0.0.1', 1, 1.0)\n"
            "except OSError:\n"
            "    pass\n"
            "print(sorted(m for m in ('socket', 'selectors', 'encodings.idna') if m in sys.modules))")
    out = subprocess.run(["/usr/bin/python3", "-IS", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
