"""ocf.stop_own_process: the agents' (and the lab's) way to end a helper they started, by
pid, without ever signalling a process that only reuses the pid."""
import signal
import subprocess
import sys
import time

from ocf_agents.ocf import stop_own_process


def test_a_process_without_the_marker_is_left_alone():
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert stop_own_process(other.pid, "ocf_agents.mfsgate", signal.SIGTERM) is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_process_with_the_marker_is_stopped_and_reaped():
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "pyha-test-marker"])
    time.sleep(0.2)     # exec'd: its command line is the marked one
    began = time.monotonic()
    assert stop_own_process(ours.pid, "pyha-test-marker", signal.SIGTERM, timeout=5) is True
    assert time.monotonic() - began < 2
    assert ours.poll() is not None or ours.wait(1) is not None


def test_a_pid_that_is_gone_is_nothing_to_stop():
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert stop_own_process(gone.pid, "true", signal.SIGTERM) is False
