"""Tickle ACKs on the real kernel: a client whose server's node vanished (link down, the
address moved to another node, announced with IPaddr2's send_arp) learns it at once when
the new node tickles the recorded connection, instead of at its next backed-off
retransmission. Three private network namespaces on a bridge; nothing else is touched."""

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocf_agents import tickle

SEND_ARP = "/usr/libexec/heartbeat/send_arp"
VIP, PORT = "10.213.0.240", 9421

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()
c, _ = s.accept()
while True:
    data = c.recv(100)
    if not data:
        break
    c.sendall(data)
"""

CLIENT = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.sendall(b"hello"); assert c.recv(5) == b"hello"
open(sys.argv[3], "w").write("connected")
while not __import__("os").path.exists(sys.argv[4]):
    time.sleep(0.01)
started = time.monotonic()
c.settimeout(60)
try:
    c.sendall(b"again")          # unanswered: retransmitted with backoff
    c.recv(5)
    outcome = "answered"
except OSError as err:
    outcome = type(err).__name__
open(sys.argv[5], "w").write(f"{outcome} {time.monotonic() - started:.3f}")
"""


def ns(name, *argv, check=True):
    return subprocess.run(["ip", "netns", "exec", name, *map(str, argv)], check=check,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def net():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 (network namespaces)")
    tag = secrets.token_hex(3)
    names = {role: f"pyha-tk-{tag}-{role}" for role in ("client", "old", "new")}
    procs = []
    try:
        for name in names.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
            ns(name, "ip", "link", "set", "lo", "up")
        c = names["client"]
        ns(c, "ip", "link", "add", "br0", "type", "bridge")
        ns(c, "ip", "addr", "add", "10.213.0.251/24", "dev", "br0")
        ns(c, "ip", "link", "set", "br0", "up")
        for index, role in enumerate(("old", "new"), 1):
            ns(c, "ip", "link", "add", f"p{index}", "type", "veth", "peer", "name", "eth0",
               "netns", names[role])
            ns(c, "ip", "link", "set", f"p{index}", "master", "br0", "up")
            ns(names[role], "ip", "addr", "add", f"10.213.0.24{index}/24", "dev", "eth0")
            ns(names[role], "ip", "link", "set", "eth0", "up")
        yield names, procs
    finally:
        for proc in procs:      # only what this test started, by pid
            proc.kill()
            proc.wait()
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], check=False)


def fail_over(net, tmp_path, tickled):
    names, procs = net
    old, new, client = names["old"], names["new"], names["client"]
    ns(old, "ip", "addr", "add", f"{VIP}/24", "dev", "eth0")
    procs.append(subprocess.Popen(["ip", "netns", "exec", old, sys.executable, "-c", SERVER,
                                   VIP, str(PORT)]))
    time.sleep(0.3)
    connected, go, result = tmp_path / "connected", tmp_path / "go", tmp_path / "result"
    procs.append(subprocess.Popen(["ip", "netns", "exec", client, sys.executable, "-c", CLIENT,
                                   *map(str, (VIP, PORT, connected, go, result))]))
    deadline = time.monotonic() + 10
    while not connected.exists():
        assert time.monotonic() < deadline, "the client never connected"
        time.sleep(0.05)
    # The serving node records its connections (what the agent's monitor does) ...
    recorded = tmp_path / "connections"
    record = ns(old, sys.executable, "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); from ocf_agents import tickle; "
                "print(tickle.encode_connections(tickle.read_connections({int(sys.argv[2])})),"
                " end='')", Path(tickle.__file__).parents[1], PORT)
    recorded.write_text(record.stdout)
    assert tickle.decode_connections(record.stdout)[0][:2] == (VIP, PORT)
    # ... and vanishes; the address comes up on the new node, announced as IPaddr2 does.
    ns(old, "ip", "link", "set", "eth0", "down")
    go.write_text("")
    # The client retransmits meanwhile, ~0.2, 0.6, 1.4, 3.0 s after its send (the last one
    # lost in ARP resolution); the next one comes ~6.2 s after it: the failover lands in
    # that gap, as it did in the lab (1-3.5 s from the address up to the peers noticing).
    time.sleep(4.5)
    ns(new, "ip", "addr", "add", f"{VIP}/24", "dev", "eth0")
    ns(new, SEND_ARP, "-i", "200", "-r", "2", "eth0", VIP, "auto", "not_used", "not_used")
    moved = time.monotonic()
    if tickled:
        tickler = ns(new, sys.executable, "-m", "ocf_agents.tickle", recorded, "5", check=False)
        assert tickler.returncode == 0, tickler.stderr
    deadline = time.monotonic() + 20
    while not result.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return (result.read_text() if result.exists() else "no answer in 20 s",
            time.monotonic() - moved)


@pytest.mark.skipif(not os.path.exists(SEND_ARP), reason="resource-agents' send_arp missing")
def test_a_tickled_client_of_a_vanished_node_is_reset_at_once(net, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(tickle.__file__).parents[1])
    outcome, after_move = fail_over(net, tmp_path, tickled=True)
    print(f"tickled: {outcome} s after the client's send, {after_move:.2f} s after the move")
    assert outcome.startswith("ConnectionResetError"), outcome
    assert after_move < 1.0, (outcome, after_move)


@pytest.mark.skipif(not os.path.exists(SEND_ARP), reason="resource-agents' send_arp missing")
def test_without_tickles_the_client_waits_for_its_next_retransmission(net, tmp_path):
    """The reference: the same failover without tickles."""
    outcome, after_move = fail_over(net, tmp_path, tickled=False)
    print(f"not tickled: {outcome} s after the client's send, {after_move:.2f} s after the move")
    assert outcome.startswith("ConnectionResetError"), outcome
    assert after_move > 1.0, (outcome, after_move)


def test_proc_net_tcp_is_decoded_to_established_connections_of_the_ports_but_loopback():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
            "   0: 00000000:24CD 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0\n"
            "   1: F000D50A:24CD FB00D50A:A2C4 01 00000000:00000000 00:00000000 00000000 0\n"
            "   2: F000D50A:24CC FB00D50A:A2C6 01 00000000:00000000 00:00000000 00000000 0\n"
            "   3: F000D50A:0016 FB00D50A:A2C8 01 00000000:00000000 00:00000000 00000000 0\n"
            "   4: 0100007F:24CD 0100007F:A2CA 01 00000000:00000000 00:00000000 00000000 0\n")
    assert tickle.decode_proc_net_tcp(text, {9420, 9421}) == [
        ("10.213.0.240", 9420, "10.213.0.251", 41670),
        ("10.213.0.240", 9421, "10.213.0.251", 41668)]


def test_the_tickle_segment_carries_a_valid_tcp_checksum():
    segment = tickle.tickle_segment("10.213.0.240", 9421, "10.213.0.251", 41668)
    pseudo = (bytes([10, 213, 0, 240, 10, 213, 0, 251]) + b"\0\x06" + len(segment).to_bytes(2, "big"))
    assert len(segment) == 20 and segment[13] == 0x10      # ACK only
    assert tickle.checksum(pseudo + segment) == 0           # a correct checksum sums to 0


def test_a_recorded_list_survives_garbage_lines():
    text = "10.213.0.240 9421 10.213.0.251 41668\nnonsense\n1.2.3 9 4.5.6.7 8\n"
    assert tickle.decode_connections(text) == [("10.213.0.240", 9421, "10.213.0.251", 41668)]


def test_a_list_someone_else_wrote_is_not_acted_on(tmp_path, capsys):
    """The list sits in the service user's directory; the tickler runs as root: it acts
    only on a file root wrote that no one else can change."""
    if os.geteuid() != 0:
        pytest.skip("needs root (chown)")
    listed = tmp_path / "connections"
    listed.write_text("10.213.0.240 9421 10.213.0.251 41668\n")
    os.chown(listed, 65534, 65534)
    assert tickle.main([str(listed), "0"]) == 1
    assert "not written by this agent" in capsys.readouterr().err
    os.chown(listed, 0, 0)
    listed.chmod(0o666)
    assert tickle.main([str(listed), "0"]) == 1


def test_no_connections_leave_the_last_recorded_list(tmp_path):
    """A master just started has no peers yet: its first monitor must not wipe the list
    the next failover needs."""
    listed = tmp_path / "connections"
    listed.write_text("10.213.0.240 9421 10.213.0.251 41668\n")
    writes = []
    assert not tickle.record_connections(str(listed), [], lambda p, t: writes.append(t))
    assert writes == [] and listed.read_text().startswith("10.213.0.240 9421")


PROC_NET_TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
                       "retrnsmt   uid\n")


def test_bad_tickler_arguments_are_refused_with_the_usage(capsys):
    assert tickle.main(["/nonexistent", "--fast=1"]) == 2
    assert "usage" in capsys.readouterr().err
    assert tickle.main(["/nonexistent", "soon"]) == 2
    assert "WAIT must be a number" in capsys.readouterr().err


def test_with_a_port_only_those_connections_wait_for_their_address_and_are_tickled(
        tmp_path, monkeypatch):
    """The MooseFS master with two floating addresses: its chunkservers' address is here
    already, its clients' comes later; the clients' tickles (PORT 9421) wait for theirs."""
    listed = tmp_path / "connections"
    listed.write_text("10.213.0.101 9420 10.213.0.50 41000\n"
                      "10.213.0.100 9421 10.213.0.50 41002\n")
    listed.chmod(0o644)
    waited, sent = [], []
    monkeypatch.setattr(tickle, "wait_for_address",
                        lambda connections, wait: waited.append(connections) or True)
    monkeypatch.setattr(tickle, "send_tickles", lambda connections: sent.append(connections))
    assert tickle.main([str(listed), "5", "9421"]) == 0
    assert waited == sent == [[("10.213.0.100", 9421, "10.213.0.50", 41002)]]
    assert tickle.main([str(listed), "5", "a-port"]) == 2
