"""Small shared helpers: running commands, progress lines, waiting, log tails."""
import contextlib
import subprocess
import sys
import time
from pathlib import Path

_T0 = time.monotonic()
VERBOSE = False


class LabError(RuntimeError):
    """A lab step failed; .details carries the log lines that explain it."""

    def __init__(self, message, details=""):
        super().__init__(message)
        self.details = details

    def __str__(self):
        text = super().__str__()
        return f"{text}\n{self.details}" if self.details else text


def say(message):
    """One progress line on stderr, stamped with seconds since start."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def run(argv, check=True, timeout=120, input=None, env=None, quiet=False, cwd=None):
    """Run argv (never through a shell); return CompletedProcess with text output."""
    if VERBOSE and not quiet:
        say("$ " + " ".join(map(str, argv)))
    try:
        proc = subprocess.run([str(a) for a in argv], input=input, capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(map(str, argv))}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"command failed (rc={proc.returncode}): {' '.join(map(str, argv))}",
                       (proc.stdout + proc.stderr).strip())
    return proc


def wait_for(predicate, timeout, what, interval=0.5, progress_every=5.0):
    """Poll predicate() until it returns a true value; show progress while waiting."""
    start = time.monotonic()
    last_report = start
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now - start > timeout:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        if now - last_report >= progress_every:
            say(f"  ... still waiting for {what} ({now - start:.0f}s)")
            last_report = now
        time.sleep(interval)


def tail(path, lines=25, grep=None):
    """Last lines of a text file (optionally only those containing one of grep)."""
    path = Path(path)
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    if grep:
        content = [line for line in content if any(g in line for g in grep)]
    return content[-lines:]


@contextlib.contextmanager
def step(name, explain=None):
    """A named step: progress before, and on failure the step name plus the log
    lines explain() returns (a callable, so logs are only read when needed)."""
    say(name)
    try:
        yield
    except Exception as exc:
        details = ""
        if explain is not None:
            try:
                details = explain()
            except Exception as inner:  # explaining must never hide the failure
                details = f"(could not collect logs: {inner})"
        message = f"step failed: {name}: {exc}"
        raise LabError(message, details) from exc


def stop_own_process(pid_file, marker, sig, timeout=2.0):
    """Signal the pid written first in pid_file only if its command line carries marker (a
    pid reused by something else is left alone), and wait until it is gone (the agents'
    own helper, ocf_agents.ocf.stop_own_process). False when there was nothing of ours to
    stop."""
    from ocf_agents.ocf import stop_own_process as stop_pid
    try:
        pid = int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return stop_pid(pid, marker, sig, timeout)
