"""The Debian package (issue 14): built from this tree with dpkg-buildpackage, installed
with apt-get, the agents run from /usr/lib/ocf/resource.d/pyha as Pacemaker runs them,
then removed and purged with nothing of ours left behind.

The machine is left as it was found: the package must not be installed before (someone's
install is never removed: the module is skipped), and /usr/lib/ocf/resource.d/pyha keeps
existing if it existed (the labs bind-mount their own agents over it in their mount
namespaces; removing it would detach those mounts).
"""

import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rigs import debian_package
from rigs.agents import REPO
from rigs.debian_package import CLEAN_ENV, PACKAGE
from rigs.drbd import Lab as DrbdLab
from rigs.moosefs.agent import AgentRunner
from rigs.moosefs.mfslab import MfsLab
from rigs.nfs import Node, StatdSandbox

pytestmark = pytest.mark.packaging

AGENTS = ("nfsserver", "nfsexport", "nfsnotify", "drbd", "mfsmaster")
PROVIDER_DIR = Path("/usr/lib/ocf/resource.d/pyha")
SITE = Path("/usr/lib/python3/dist-packages")
DOC = Path("/usr/share/doc") / PACKAGE
KEEP = PROVIDER_DIR / ".pyha-packaging-test-keep"
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"]


def run(argv, timeout=120, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**CLEAN_ENV, **kwargs.pop("env", {})}, **kwargs)


def package_status():
    """dpkg's status of the package ('' when dpkg never heard of it)."""
    result = run(["dpkg-query", "-W", "-f=${Status}", PACKAGE])
    return result.stdout.strip() if result.returncode == 0 else ""


def why_not():
    if os.geteuid() != 0:
        return "needs root (apt-get install)"
    for tool in ("dpkg-buildpackage", "apt-get", "dpkg-query"):
        if not shutil.which(tool, path=CLEAN_ENV["PATH"]):
            return f"{tool} is not installed: not a Debian machine"
    status = package_status()
    if status and not status.endswith("not-installed"):
        return f"{PACKAGE} is already on this machine ({status}): not removing someone's install"
    return None


@pytest.fixture(scope="module")
def package():
    """The package built from a copy of this tree and installed; removed (and purged)
    again at the end whatever happened in between."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="pyha-deb-"))
    had_dir = PROVIDER_DIR.is_dir()
    before = sorted(os.listdir(PROVIDER_DIR)) if had_dir else None
    info = {"tmp": tmp, "had_dir": had_dir, "before": before}
    try:
        started = time.monotonic()
        info["deb"] = debian_package.build(tmp)
        info["build_seconds"] = time.monotonic() - started
        started = time.monotonic()
        install = run([*APT, "install", "--no-install-recommends", str(info["deb"])], timeout=300)
        info["install_seconds"] = time.monotonic() - started
        assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]
        yield info
    finally:
        if package_status().endswith(("installed", "config-files", "half-configured",
                                      "unpacked", "half-installed")):
            remove(had_dir)
        KEEP.unlink(missing_ok=True)
        if had_dir:
            PROVIDER_DIR.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def remove(had_dir):
    """apt-get remove, then dpkg --purge (apt-get no longer knows a removed package
    without conffiles; dpkg purges whatever state is left, or says there is none).
    A directory that was there before is kept: dpkg
    removes a directory it owns once empty, so it holds a file of ours meanwhile."""
    if had_dir:
        KEEP.write_text("kept by tests/packaging while the package is removed\n")
    results = [run([*APT, "remove", PACKAGE], timeout=300),
               run(["dpkg", "--purge", PACKAGE], timeout=300)]
    KEEP.unlink(missing_ok=True)
    return results


def test_the_package_holds_the_agents_the_module_and_the_docs(package):
    listing = run(["dpkg-deb", "-c", str(package["deb"])]).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for agent in AGENTS:
        assert f"{PROVIDER_DIR}/{agent}" in files
        assert f"{SITE}/ocf_agents/{agent}.py" in files
        assert f"{DOC}/metadata/{agent}.xml" in files
    assert f"{SITE}/ocf_agents/ocf.py" in files
    assert f"{DOC}/copyright" in files and f"{DOC}/README.md.gz" in files
    assert not [f for f in files if "__pycache__" in f or "/python3.11/" in f]
    fields = run(["dpkg-deb", "-f", str(package["deb"]), "Depends", "Recommends",
                  "Suggests"]).stdout
    assert "python3 (>= 3.11)" in fields
    for tool in ("pacemaker", "drbd-utils", "nfs-kernel-server", "moosefs-master"):
        assert tool in fields
    owned = run(["dpkg", "-L", PACKAGE]).stdout.split()
    assert str(PROVIDER_DIR / "nfsexport") in owned


@pytest.mark.parametrize("agent", AGENTS)
def test_installed_agent_answers_meta_data_as_pacemaker_runs_it(package, agent):
    path = PROVIDER_DIR / agent
    assert path.stat().st_mode & 0o777 == 0o755
    wrapper = path.read_text()
    assert wrapper.startswith("#!/usr/bin/python3 -IS\n")
    assert f"sys.path.insert(0, {str(SITE)!r})" in wrapper
    result = run([str(path), "meta-data"], cwd="/", env={"OCF_ROOT": "/usr/lib/ocf"},
                 timeout=30)
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(result.stdout)
    assert root.tag == "resource-agent" and root.get("name") == agent
    assert result.stdout == (DOC / "metadata" / f"{agent}.xml").read_text()


def test_pacemaker_lists_and_describes_the_installed_agents(package):
    listed = run(["crm_resource", "--list-agents", "ocf:pyha"], timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert set(AGENTS) <= set(listed.stdout.split())
    shown = run(["crm_resource", "--show-metadata", "ocf:pyha:drbd"], timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert '<resource-agent name="drbd"' in shown.stdout


def test_python_imports_the_package_from_dist_packages(package):
    result = run(["/usr/bin/python3", "-c", "import ocf_agents; print(ocf_agents.__file__)"],
                 cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{SITE}/ocf_agents/__init__.py"
    listed = run(["/usr/bin/python3", "-m", "ocf_agents", "list"], cwd="/")
    assert listed.stdout.split() == list(AGENTS)


def test_ocf_tester_passes_for_the_installed_nfsexport(package, tmp_path):
    """The whole ocf-tester sequence against /usr/lib/ocf/resource.d/pyha/nfsexport, with
    a private /var/lib/nfs (rigs/nfs.py's Node), as tests/nfsexport do for the checkout."""
    node = Node(tmp_path, PROVIDER_DIR, "packaged")
    directory = tmp_path / "tester"
    directory.mkdir()
    argv = node.command(["ocf-tester", "-n", "e", "-o", "clientspec=10.0.0.0/24",
                         "-o", f"directory={directory}", "-o", "fsid=1",
                         str(PROVIDER_DIR / "nfsexport")])
    result = subprocess.run(argv, env=node.env({}), text=True, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout


def test_ocf_tester_passes_for_the_installed_drbd(package):
    """ocf-tester against the packaged drbd agent on the DRBD emulator (rigs/drbd.py), as
    tests/drbd do for the checkout."""
    with DrbdLab.temporary(str(PROVIDER_DIR / "drbd")) as lab:
        result = lab.ocf_tester()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout


def test_ocf_tester_passes_for_the_installed_nfsnotify(package, tmp_path):
    """ocf-tester against the packaged nfsnotify with the real rpc.statd in a private
    namespace (rigs/nfs.py), as tests/nfsnotify do for the checkout."""
    sandbox = StatdSandbox(tmp_path, PROVIDER_DIR)
    try:
        result = sandbox.ocf_tester()
    finally:
        sandbox.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout


def test_ocf_tester_passes_for_the_installed_mfsmaster(package):
    """ocf-tester against the packaged mfsmaster with a real MooseFS master in a private
    namespace (rigs/moosefs), as tests/mfsmaster do for the checkout."""
    if not shutil.which("mfsmaster"):
        pytest.skip("moosefs-master is not installed")
    lab = MfsLab()
    try:
        result = AgentRunner(lab, PROVIDER_DIR / "mfsmaster").ocf_tester(lab.master_cfg())
    finally:
        lab.destroy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout


def test_remove_and_purge_leave_nothing_behind(package):
    removed, purged = remove(package["had_dir"])
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not package_status().endswith(("installed", "config-files"))
    assert run(["dpkg", "-L", PACKAGE]).returncode != 0
    for agent in AGENTS:
        assert not (PROVIDER_DIR / agent).exists()
    assert not (SITE / "ocf_agents").exists()
    assert not list(SITE.glob("ocf_agents-*"))
    assert not DOC.exists()
    if package["had_dir"]:
        assert PROVIDER_DIR.is_dir()
        assert sorted(os.listdir(PROVIDER_DIR)) == package["before"]
    else:
        assert not PROVIDER_DIR.exists()
    print(f"build {package['build_seconds']:.1f} s, "
          f"install {package['install_seconds']:.1f} s")


def test_install_with_destdir_points_the_wrappers_at_the_final_place(tmp_path):
    """What debian/rules relies on: install run from a copy staged under --destdir writes
    wrappers that name the copy's final directory, not the staging one."""
    staged = tmp_path / "stage" / "usr/lib/python3/dist-packages"
    shutil.copytree(REPO / "ocf_agents", staged / "ocf_agents",
                    ignore=shutil.ignore_patterns("__pycache__"))
    result = run(["/usr/bin/python3", "-B", "-m", "ocf_agents", "install", "--destdir",
                  str(tmp_path / "stage"), "--ocf-root", "/usr/lib/ocf"], cwd=staged)
    assert result.returncode == 0, result.stderr
    wrapper = (tmp_path / "stage/usr/lib/ocf/resource.d/pyha/nfsexport").read_text()
    assert f"sys.path.insert(0, {str(SITE)!r})" in wrapper
