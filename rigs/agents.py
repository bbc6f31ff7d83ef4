"""The agents as Pacemaker runs them: this checkout installed into an OCF root, and what
an action answered."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"


def install_agents(ocf_root):
    """This checkout's agents installed into ocf_root; returns their directory."""
    subprocess.run([PYTHON, "-m", "ocf_agents", "install", "--ocf-root", str(ocf_root)],
                   env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
                   stdout=subprocess.DEVNULL)
    return Path(ocf_root) / "resource.d" / "pyha"


def exit_reason(result):
    """The ocf-exit-reason Pacemaker would show, or None."""
    stderr = result.stderr if hasattr(result, "stderr") else result.err
    for line in stderr.splitlines():
        if line.startswith("ocf-exit-reason:"):
            return line[len("ocf-exit-reason:"):]
    return None
