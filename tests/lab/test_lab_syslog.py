"""The lab's syslog listener: daemons' messages land in one file, each with the lab
machine it came from (its network namespace), and the listener leaves nothing behind.
Runs on a socket of its own (not /dev/log) and namespaces with a prefix of its own."""

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import REPO_ROOT
from lab import syslog

SENDER = ("import socket, sys, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
          "s.sendto(sys.argv[2].encode(), sys.argv[1]); time.sleep(1)")


def wait_for_lines(path, count, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{count} lines expected in {path}: {lines}")


@pytest.fixture
def netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 (network namespaces)")
    prefix = f"pyha-sl{secrets.token_hex(2)}-"
    subprocess.run(["ip", "netns", "add", prefix + "node1"], check=True)
    try:
        yield prefix
    finally:
        subprocess.run(["ip", "netns", "del", prefix + "node1"], check=False)


def test_messages_are_written_with_the_machine_that_sent_them(tmp_path, netns):
    sock, log = tmp_path / "log.sock", tmp_path / "syslog.log"
    listener = subprocess.Popen([sys.executable, "-c",
                                 "import sys; from lab.syslog import serve; "
                                 "serve(sys.argv[1], sys.argv[2], sys.argv[3])",
                                 str(log), str(sock), netns], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            assert time.monotonic() < deadline and listener.poll() is None
            time.sleep(0.02)
        senders = [subprocess.Popen(["ip", "netns", "exec", netns + "node1", sys.executable,
                                     "-c", SENDER, str(sock), "<13>mfsmount[7]: registered"]),
                   subprocess.Popen([sys.executable, "-c", SENDER, str(sock),
                                     "<13>tool[8]: on the host\n"])]
        lines = wait_for_lines(log, 2)
        for sender in senders:
            sender.wait()
    finally:
        listener.kill()
        listener.wait()
    machine_of = {line.split()[-1]: line.split()[1] for line in lines}
    assert machine_of["registered"] == "node1"
    assert machine_of["host"] == "host"
    assert all(line[:2].isdigit() and line[8] == "." for line in lines)    # HH:MM:SS.mmm


def test_the_listener_starts_once_and_stop_removes_its_socket(tmp_path):
    sock = tmp_path / "log.sock"
    pid = syslog.start_listener(tmp_path, str(sock))
    assert pid and sock.exists() and (tmp_path / "syslog.pid").exists()
    assert syslog.start_listener(tmp_path, str(sock)) is None     # taken: left alone
    syslog.stop_listener(tmp_path, str(sock))
    assert not sock.exists() and not (tmp_path / "syslog.pid").exists()
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_a_socket_someone_else_made_is_not_removed(tmp_path):
    sock = tmp_path / "log.sock"
    sock.write_text("")                             # e.g. a syslog daemon's
    assert syslog.start_listener(tmp_path, str(sock)) is None
    syslog.stop_listener(tmp_path, str(sock))
    assert sock.exists()
