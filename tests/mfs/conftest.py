"""Fixtures for the MooseFS master agent: a real MooseFS in a private network namespace."""
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mfslab import MfsLab  # noqa: E402

REQUIRED = ["mfsmaster", "mfsmetalogger", "mfschunkserver", "mfsmount", "mfsmetadump",
            "nsenter", "ip"]


def pytest_collection_modifyitems(config, items):
    missing = [tool for tool in REQUIRED if not shutil.which(tool)]
    reason = None
    if os.geteuid() != 0:
        reason = "MooseFS tests need root (network namespaces, FUSE)"
    elif missing:
        reason = f"missing {', '.join(missing)} (apt-get install moosefs-master " \
                 "moosefs-metalogger moosefs-chunkserver moosefs-client moosefs-cli fuse3)"
    elif not os.path.exists("/dev/fuse"):
        reason = "no /dev/fuse"
    if reason:
        here = Path(__file__).resolve().parent
        for item in items:
            if Path(str(item.fspath)).resolve().is_relative_to(here):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def lab(request):
    """An empty lab: namespace with lo up and 10.213.0.200, a 0755 directory. Torn down always."""
    the_lab = MfsLab()
    yield the_lab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(the_lab.logs())
    the_lab.destroy()


@pytest.fixture
def cluster(lab):
    """Master, metalogger, two chunkservers and a FUSE client, ready for writes."""
    parts = lab.start_cluster(chunkservers=2)
    return lab, parts


WORKTREE = Path(__file__).resolve().parents[2]
FAKEBIN = Path(__file__).resolve().parent / "fakebin"


@pytest.fixture(scope="session")
def ocf_root():
    """The agents installed the way users install them, into a private OCF root.

    Not under pytest's 0700 tmp_path: ocf-tester runs meta-data as nobody.
    """
    import subprocess
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="pyha-mfs-ocf-", dir="/tmp"))
    root.chmod(0o755)
    subprocess.run(["/usr/bin/python3", "-m", "ocf_agents", "install", "--ocf-root", str(root)],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(WORKTREE)})
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def agent(lab, ocf_root):
    """Runs the installed ocf:pyha:mfsmaster inside the lab's network namespace."""
    return AgentRunner(lab, ocf_root / "resource.d" / "pyha" / "mfsmaster")


@pytest.fixture(params=["single-pass", "staged"])
def restoring_agent(lab, ocf_root, request):
    """The agent, once per restore_method."""
    return AgentRunner(lab, ocf_root / "resource.d" / "pyha" / "mfsmaster",
                       restore_method=request.param)


class AgentRunner:
    def __init__(self, lab, path, **defaults):
        self.lab = lab
        self.path = path
        self.defaults = defaults  # parameters given to every action unless overridden
        self.restore_method = defaults.get("restore_method", "single-pass")
        self.cib = lab.root / "cib.json"
        self.state = lab.root / "rsctmp"
        self.state.mkdir()

    def env(self, params, timeout=60, check_level=None, interval=0):
        env = {
            "PATH": f"{FAKEBIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": "mfs",
            "OCF_RESOURCE_TYPE": "mfsmaster",
            "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000)),
            "OCF_RESKEY_CRM_meta_interval": str(interval),
            "HA_RSCTMP": str(self.state),
            "PYHA_MFS_CIB": str(self.cib),
        }
        if check_level is not None:
            env["OCF_CHECK_LEVEL"] = str(check_level)
        for key, value in {**self.defaults, **params}.items():
            env[f"OCF_RESKEY_{key}"] = str(value)
        return env

    def __call__(self, action, timeout=60, check_level=None, interval=0, **params):
        """Run an action; return (exit code, stderr)."""
        result = self.lab.ns_run([str(self.path), action], check=False, timeout=timeout + 10,
                                 env=self.env(params, timeout, check_level, interval))
        return result.returncode, result.stderr

    def recorded(self):
        import json
        try:
            store = json.loads(self.cib.read_text())
        except FileNotFoundError:
            return None
        return store.get("crm_config//mfs-metadata-version")
