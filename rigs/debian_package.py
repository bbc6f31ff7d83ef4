"""The Debian package built from this tree with Debian's own tools: what tests/packaging
installs on the machine and what the real-kernel lab's nodes install (issue 14)."""

import shutil
import subprocess
from pathlib import Path

from .agents import REPO

PACKAGE = "ocf-agents-pyha"
VERSION = "0.1.0-1"
DEB_NAME = f"{PACKAGE}_{VERSION}_all.deb"
# Debian's tools only: no pyenv or venv python3 ahead of /usr/bin on PATH.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
             "DEBIAN_FRONTEND": "noninteractive"}
# What a working tree may hold that is no source: VCS, caches, earlier builds.
NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                   ".pytest_cache", ".hypothesis", ".benchmarks", ".pybuild",
                                   "*.deb", "*.buildinfo", "*.changes")


class BuildError(RuntimeError):
    pass


def build(workdir, timeout=300):
    """dpkg-buildpackage -b on a copy of this tree in workdir/ocf-agents; returns the .deb
    (in workdir). The copy keeps the checkout free of build products."""
    workdir = Path(workdir)
    src = workdir / "ocf-agents"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(REPO, src, ignore=NOT_SOURCE, symlinks=True)
    try:
        result = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src,
                                capture_output=True, text=True, timeout=timeout,
                                env={**CLEAN_ENV, "HOME": str(workdir)})
    except FileNotFoundError:
        raise BuildError("dpkg-buildpackage is not installed (bash scripts/install-deps.sh)") \
            from None
    finally:
        shutil.rmtree(src, ignore_errors=True)
    deb = workdir / DEB_NAME
    if result.returncode != 0 or not deb.exists():
        raise BuildError(f"dpkg-buildpackage failed (exit {result.returncode}):\n"
                         + (result.stdout + result.stderr)[-4000:])
    return deb
