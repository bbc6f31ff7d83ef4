#!/usr/bin/python3
"""Restore-and-start of a crashed MooseFS master: ocf:pyha:mfsmaster versus bare mfsmaster -a.

For each size (filesystem objects) a crashed master's files are made once: an empty
filesystem's metadata ("MFSM NEW") and one changelog creating the objects (directories of
1000 files), exactly what a metalogger holds when the master died before its first metadata
save. Then, in rotating order, in the lab's network namespace (rigs/moosefs/mfslab.py):

  bare:        copy the files into an empty DATA_PATH, `mfsmaster -a -c CFG start`, wait
               until the master answers on its client port
  single-pass: the installed ocf:pyha:mfsmaster `start` (default restore_method) on an empty
               DATA_PATH with the files' directory as metadata_sources: checks, files placed
               into DATA_PATH, `mfsmaster -a start`, version checked over the client port
  staged:      the same with restore_method=staged: gather into staging, cut torn lines,
               `mfsmaster -a restore`, version read with mfsmetadump, install, `start`

Wall time is until the master answers. Peak memory is the largest resident set of any
process of the run: RUSAGE_CHILDREN of a fresh measuring process (restore, mfsmetadump,
the agent itself) and VmHWM of the running master daemon.

  /usr/bin/python3 -m bench.bench_mfsmaster [--sizes 10000,100000] [--full] [--runs N]

--full adds 1,000,000 objects. Targets (issue 4): agent overhead <= 10 % at 1M objects,
growth linear in objects.
"""

import argparse
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rigs.agents import REPO, install_agents
from rigs.moosefs import FAKEBIN, PROBE
from rigs.moosefs.mfslab import MfsLab


def make_crashed_files(directory, objects):
    """metadata.mfs.back ("MFSM NEW") + changelog.0.mfs creating `objects` objects."""
    shutil.copy("/var/lib/mfs/metadata.mfs.empty", directory / "metadata.mfs.back")
    now = int(time.time())
    lines = [f"1: {now}|SETMETAID({secrets.randbits(63)})\n"]
    change, inode, made = 2, 2, 0
    while made < objects:
        directory_inode = inode
        lines.append(f"{change}: {now}|CREATE(1,d{inode},2,493,18,0,0,0):{inode}\n")
        change, inode, made = change + 1, inode + 1, made + 1
        for _ in range(min(999, objects - made)):
            lines.append(f"{change}: {now}|CREATE({directory_inode},f{inode},1,420,18,0,0,0)"
                         f":{inode}\n")
            change, inode, made = change + 1, inode + 1, made + 1
    (directory / "changelog.0.mfs").write_text("".join(lines))
    for path in directory.iterdir():
        shutil.chown(path, "mfs", "mfs")
    return change - 1


def measure(variant, lab_netns, cfg, source, agent_path, cib):
    """Run in a fresh process: one restore-and-start; print JSON {seconds, peak_kib}."""
    cfg, source = Path(cfg), Path(source)
    data = Path(MfsLab.cfg_value(cfg, "DATA_PATH"))
    ns = ["nsenter", f"--net=/run/netns/{lab_netns}"]
    started = time.perf_counter()
    if variant == "bare":
        for path in source.iterdir():
            shutil.copy(path, data / path.name)
            shutil.chown(data / path.name, "mfs", "mfs")
        bare_started = time.perf_counter()
        subprocess.run([*ns, "mfsmaster", "-a", "-c", str(cfg), "start"], check=True,
                       capture_output=True)
        bare_mfsmaster = time.perf_counter() - bare_started
    else:
        env = {"PATH": f"{FAKEBIN}:/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": "bench", "OCF_RESKEY_config": str(cfg),
               "OCF_RESKEY_metadata_sources": str(source),
               "OCF_RESKEY_CRM_meta_timeout": "600000", "HA_RSCTMP": str(cib) + ".rsctmp",
               "PYHA_MFS_CIB": str(cib), "HA_LOGFILE": str(data.parent / "agent.log"),
               "OCF_TRACE_RA": "1", "OCF_TRACE_FILE": str(cib) + ".trace",
               "OCF_RESKEY_restore_method": variant}
        subprocess.run([*ns, str(agent_path), "start"], check=True, capture_output=True, env=env)
    answering = probe(ns)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    for pid in master_pids(data):
        peak = max(peak, vm_hwm(pid))
    print(json.dumps({"seconds": seconds, "peak_kib": peak, "metaversion": answering,
                      "mfsmaster_seconds": bare_mfsmaster if variant == "bare" else
                      mfsmaster_seconds(Path(str(cib) + ".trace"))}))


def mfsmaster_seconds(trace):
    """Time the agent spent inside mfsmaster itself (restore, start), from its trace."""
    total = 0.0
    if trace.exists():
        for line in trace.read_text().splitlines():
            if "run ['mfsmaster'" in line and " in " in line:
                total += float(line.rsplit(" in ", 1)[1].split()[0]) / 1000
    return total


def probe(ns):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        result = subprocess.run([*ns, sys.executable, str(PROBE), "127.0.0.1", "9421"],
                                capture_output=True, text=True)
        info = json.loads(result.stdout or "null")
        if info:
            return info["metaversion"]
        time.sleep(0.05)
    raise TimeoutError("master never answered")


def master_pids(data):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if (os.readlink(f"/proc/{entry}/exe").endswith("/mfsmaster")
                        and os.readlink(f"/proc/{entry}/cwd") == str(data)):
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def vm_hwm(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


VARIANTS = ("bare", "single-pass", "staged")


def run_size(lab, objects, runs, agent_path):
    source = lab.data_dir(f"crashed-{objects}")
    last = make_crashed_files(source, objects)
    figures = {variant: [] for variant in VARIANTS}
    for run in range(runs):
        # rotate the order so that no variant always runs on a warm (or cold) page cache
        for variant in VARIANTS[run % 3:] + VARIANTS[:run % 3]:
            name = f"{variant}-{objects}-{run}"
            cfg = lab.master_cfg(name)
            result = subprocess.run(
                [sys.executable, "-m", "bench.bench_mfsmaster", "--measure", variant, lab.netns,
                 str(cfg), str(source), str(agent_path), str(lab.root / f"{name}.cib")],
                cwd=REPO, capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                sys.exit(f"{name} failed:\n{result.stdout}\n{result.stderr}")
            figure = json.loads(result.stdout)
            if figure["metaversion"] < last + 1:
                sys.exit(f"{name}: restored version {figure['metaversion']} < {last + 1}")
            figures[variant].append(figure)
            subprocess.run(lab.ns(["mfsmaster", "-c", cfg, "stop"]), capture_output=True)
            shutil.rmtree(lab.root / name, ignore_errors=True)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--full", action="store_true", help="also 1,000,000 objects")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.full else [])
    lab = MfsLab()
    ocf_root = Path(tempfile.mkdtemp(prefix="pyha-mfs-ocf-", dir="/tmp"))
    try:
        agent_path = install_agents(ocf_root) / "mfsmaster"
        table = []
        for objects in sizes:
            table.append((objects, run_size(lab, objects, args.runs, agent_path)))
    finally:
        lab.destroy()
        shutil.rmtree(ocf_root, ignore_errors=True)
    print(f"restore-and-start of a crashed master, median of {args.runs} runs, peak RSS max;")
    print("own = the agent's wall time outside mfsmaster (single-pass runs it once: -a start;\n"
          "staged twice: -a restore, then start)")
    print(f"{'objects':>10} {'variant':>12} {'wall s':>8} {'vs bare':>8} {'own s':>7} "
          f"{'own %':>6} {'mfsmaster s':>11} {'peak MiB':>9} {'us/object':>10}  every run's wall s")
    for objects, figures in table:
        bare_s = statistics.median(f["seconds"] for f in figures["bare"])
        for variant in VARIANTS:
            runs = figures[variant]
            wall = statistics.median(f["seconds"] for f in runs)
            peak = max(f["peak_kib"] for f in runs) / 1024
            versus = own = own_pct = ""
            if variant != "bare":
                own_s = statistics.median(f["seconds"] - f["mfsmaster_seconds"] for f in runs)
                versus = f"{(wall / bare_s - 1) * 100:+.0f}%"
                own, own_pct = f"{own_s:.3f}", f"{own_s / bare_s * 100:.0f}%"
            inside = statistics.median(f["mfsmaster_seconds"] for f in runs)
            print(f"{objects:>10} {variant:>12} {wall:>8.3f} {versus:>8} {own:>7} {own_pct:>6} "
                  f"{inside:>11.3f} {peak:>9.1f} {wall / objects * 1e6:>10.2f}  "
                  + " ".join(f"{f['seconds']:.2f}" for f in runs))


if __name__ == "__main__":
    main()
