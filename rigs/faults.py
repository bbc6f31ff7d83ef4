"""Fault injection for every agent's fault tests: a tool made "not installed" or hanging, the
agent killed mid-action; and what the safe-file tests check: the files an action created,
their modes, nothing temporary or world-writable left, no symlink followed."""

import os
import stat
from pathlib import Path


def masked(argv, programs, not_a_program):
    """argv run in a private mount namespace where each of programs is not executable."""
    script = "".join(f'mount --bind {not_a_program} "{p}"\n' for p in programs)
    return ["unshare", "-m", "--propagation", "private", "sh", "-ec",
            script + 'exec "$@"', "sh", *map(str, argv)]


def in_process_fault(agent, action, patch):
    """argv of ocf:pyha:<agent> run from this checkout in one interpreter that first runs
    patch (Python source): a stand-in for a fault that cannot be caused from outside (a
    failing spawn, say), named as such by the test using it."""
    from ocf_agents.__main__ import wrapper_text
    from rigs.agents import PYTHON, REPO
    # the patch, then exactly the text `install` writes (its #! line is a comment here)
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n{patch}\n"
            + wrapper_text(agent, PYTHON, str(REPO)))
    return [PYTHON, "-IS", "-c", code, action]


def hanging_tool(directory, name, real, match, reached, before=True):
    """A stand-in for a tool, first on PATH: when its arguments contain match it
    writes its pid to reached and hangs (before or after running the real tool);
    otherwise it is the real tool."""
    path = Path(directory) / name
    run_real = f'"{real}" "$@"\n'
    hang = f'echo $$ > "{reached}.tmp"; mv "{reached}.tmp" "{reached}"; exec sleep 60\n'
    path.write_text("#!/bin/sh\n"
                    f'case " $* " in *"{match}"*)\n'
                    + ("" if before else f"  {run_real}")
                    + f"  {hang}"
                    ";;\nesac\n"
                    f'exec "{real}" "$@"\n')
    path.chmod(0o755)
    return path


def wait_for_file(path, timeout=20):
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return int(Path(path).read_text().strip() or 0)


def kill_both_when_reached(agent, reached, timeout=20):
    """Once the hanging stand-in has written its pid to reached, kill -9 the agent
    (mid-action: agent is its Popen) and then the stand-in."""
    try:
        stand_in = wait_for_file(reached, timeout=timeout)
    finally:
        kill_all(agent.pid)
        agent.wait()
    kill_all(stand_in)


def kill_all(*pids):
    """SIGKILL each pid (and its process group when it leads one)."""
    import signal
    for pid in pids:
        if not pid:
            continue
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def tree(root):
    """{relative path: (kind, mode)} of everything under root (symlinks not followed)."""
    found = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
            found[os.path.relpath(path, root)] = (kind, stat.S_IMODE(st.st_mode))
    return found


def created(before, after):
    return {path: value for path, value in after.items() if path not in before}


def assert_safe(files):
    for path, (kind, mode) in files.items():
        assert ".tmp" not in os.path.basename(path), f"temporary file left: {path}"
        assert not mode & 0o002, f"{path} is world-writable ({mode:o})"
        assert kind != "l", f"{path} is a symlink"
