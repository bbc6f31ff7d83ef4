"""nfsexport under faults: a full or read-only export, an agent killed midway."""

import os
import signal
import subprocess
import time

import pytest

from rigs.nfs import etab_pairs

pytestmark = pytest.mark.fault("nfsexport")


def test_read_only_export_keeps_serving_and_the_previous_backup(make_node, tmp_path):
    node = make_node()
    export = tmp_path / "ro"
    export.mkdir()
    params = {"clientspec": "10.213.0.0/24", "directory": str(export), "fsid": "9"}
    assert node.agent("nfsexport", "start", params).returncode == 0
    node.write("rmtab", f"10.213.0.5:{export}:0x00000001\n")
    assert node.agent("nfsexport", "monitor", params).returncode == 0
    previous = (export / ".rmtab").read_text()
    node.write("rmtab", f"10.213.0.5:{export}:0x00000001\n10.213.0.6:{export}:0x00000001\n")
    node.prelude = f"mount --bind {export} {export}\nmount -o remount,bind,ro {export}\n"
    result = node.agent("nfsexport", "monitor", params)
    assert result.returncode == 0
    assert "cannot write the rmtab backup" in result.stderr
    assert (export / ".rmtab").read_text() == previous
    assert len(etab_pairs(node)) == 1


def test_full_export_keeps_serving_and_the_previous_backup(make_node, tmp_path):
    node = make_node()
    export = tmp_path / "full"
    export.mkdir()
    params = {"clientspec": "10.213.0.0/24", "directory": str(export), "fsid": "9"}
    lines = "".join(f"10.213.0.{i}:{export}:0x00000001\n" for i in range(1, 40))
    # A tiny filesystem holding last monitor's backup, then filled to the brim.
    node.prelude = (f"mount -t tmpfs -o size=16k tmpfs {export}\n"
                    f"printf '10.213.0.1:{export}:0x00000001\\n' > {export}/.rmtab\n"
                    f"dd if=/dev/zero of={export}/filler bs=1k count=64 2>/dev/null || true\n")
    assert node.agent("nfsexport", "start", params).returncode == 0
    node.write("rmtab", lines)
    probe = (f"{node.prelude}"
             f'"$@" monitor; rc=$?; cat {export}/.rmtab; ls -a {export}; exit $rc\n')
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f"mount --bind {node.nfs} /var/lib/nfs\n" + probe, "sh",
            str(node.agents_dir / "nfsexport")]
    result = subprocess.run(argv, env=node.env(params), text=True, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert "cannot write the rmtab backup" in result.stderr
    assert result.stdout.startswith(f"10.213.0.1:{export}:0x00000001\n")
    assert ".tmp" not in result.stdout  # no temporary file left behind


def test_start_killed_midway_then_run_again_completes(make_node, tmp_path):
    node = make_node()
    dirs = []
    for i in range(3):
        d = tmp_path / f"d{i}"
        d.mkdir()
        dirs.append(str(d))
    params = {"clientspec": "10.213.0.0/24 10.213.1.0/24", "directory": " ".join(dirs),
              "fsid": "20"}
    # An exportfs that hangs on the third directory: kill -9 the agent there.
    slow = node.bin / "exportfs"
    slow.write_text(f'#!/bin/sh\ncase "$*" in *{dirs[2]}*) sleep 30;; esac\n'
                    'exec /usr/sbin/exportfs "$@"\n')
    slow.chmod(0o755)
    agent = subprocess.Popen(node.command([str(node.agents_dir / "nfsexport"), "start"]),
                             env=node.env(params), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while len(etab_pairs(node)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait()
    assert len(etab_pairs(node)) == 4  # half done
    assert node.agent("nfsexport", "monitor", params).returncode == 7  # never reported started
    slow.unlink()
    assert node.agent("nfsexport", "start", params).returncode == 0
    assert len(etab_pairs(node)) == 6
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert etab_pairs(node) == set()


def test_stop_killed_midway_then_run_again_completes(make_node, tmp_path):
    node = make_node()
    dirs = []
    for i in range(2):
        d = tmp_path / f"s{i}"
        d.mkdir()
        dirs.append(str(d))
    params = {"clientspec": "10.213.0.0/24", "directory": " ".join(dirs), "fsid": "30"}
    assert node.agent("nfsexport", "start", params).returncode == 0
    slow = node.bin / "exportfs"
    slow.write_text(f'#!/bin/sh\ncase "$*" in *-u*{dirs[1]}*) sleep 30;; esac\n'
                    'exec /usr/sbin/exportfs "$@"\n')
    slow.chmod(0o755)
    agent = subprocess.Popen(node.command([str(node.agents_dir / "nfsexport"), "stop"]),
                             env=node.env(params), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while len(etab_pairs(node)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait()
    slow.unlink()
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert etab_pairs(node) == set()
    assert node.agent("nfsexport", "monitor", params).returncode == 7
