#!/usr/bin/python3
"""Steady-state monitor of ocf:pyha:drbd under the DRBD emulator.

Prints, for a Primary and a Secondary instance of a connected two-node resource: median wall
time of the monitor, the subprocesses it starts (drbdsetup/drbdadm calls) and the CIB writes
(crm_attribute calls) per monitor; alongside the `python3 -I -S -c pass` floor measured in
the same run (interleaved) and the emulator's own `drbdsetup events2 --now` cost. The emulator
is Python (the real drbdsetup is a small C program), so "agent own" = monitor - emulator call
is the figure that compares with the floor.

  /usr/bin/python3 bench/bench_drbd.py [--runs N]

Targets (issue 3): agent monitor <= 2.5x the floor, at most one drbdsetup call, zero CIB
writes while the score does not change. The linbit agent cannot run under the emulator (it
requires /proc/drbd, which only the kernel module provides), so it is not compared.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU_BIN = os.path.join(REPO, "tests", "drbd_emulator", "bin")
PYTHON = "/usr/bin/python3"
COUNTER = """#!/bin/sh
echo "{name} $*" >> "{log}"
exec "{real}" "$@"
"""


def timed(argv, env):
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    _, status, _ = os.wait4(pid, 0)
    return time.perf_counter() - started, os.waitstatus_to_exitcode(status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    runs = ap.parse_args().runs
    base = tempfile.mkdtemp(prefix="pyha-drbd-bench-")
    try:
        return bench(base, runs)
    finally:
        subprocess.run([os.path.join(EMU_BIN, "drbdemu"), "destroy", "r0"],
                       env=dict(os.environ, DRBDEMU_STATE=base + "/state"), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def bench(base, runs):
    ocf_root = base + "/ocf"
    subprocess.run([PYTHON, "-m", "ocf_agents", "install", "--ocf-root", ocf_root],
                   env=dict(os.environ, PYTHONPATH=REPO), check=True, stdout=subprocess.DEVNULL)
    agent = ocf_root + "/resource.d/pyha/drbd"
    fake = base + "/fake"
    count = base + "/count"
    os.makedirs(fake)
    os.makedirs(count)
    calls_log = base + "/calls.log"
    with open(fake + "/crm_attribute", "w") as f:
        f.write('#!/bin/sh\necho "crm_attribute $*" >> "%s"\n' % calls_log)
    os.chmod(fake + "/crm_attribute", 0o755)
    for tool in ("drbdsetup", "drbdadm"):
        with open(count + "/" + tool, "w") as f:
            f.write(COUNTER.format(name=tool, log=calls_log, real=os.path.join(EMU_BIN, tool)))
        os.chmod(count + "/" + tool, 0o755)
    env = {"PATH": f"{fake}:{EMU_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
           "DRBDEMU_STATE": base + "/state", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_TYPE": "drbd", "OCF_RESKEY_drbd_resource": "r0",
           "OCF_RESKEY_wfc_timeout": "2", "OCF_RESKEY_proc_drbd": base + "/no-proc",
           "OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone_node_max": "1",
           "OCF_RESKEY_CRM_meta_promoted_max": "1", "OCF_RESKEY_CRM_meta_promoted_node_max": "1",
           "OCF_RESKEY_CRM_meta_notify": "true", "OCF_RESKEY_CRM_meta_timeout": "20000"}
    subprocess.run([EMU_BIN + "/drbdemu", "init", "r0", "--nodes", "node1,node2", "--size", "8M",
                    "--device", base + "/dev/drbd0"], env=env, check=True)
    nodes = {}
    for i, node in enumerate(("node1", "node2")):
        nodes[node] = dict(env, DRBDEMU_NODE=node, OCF_RESKEY_CRM_meta_on_node=node,
                           HA_RSCTMP=f"{base}/rsc-{node}",
                           OCF_RESOURCE_INSTANCE=f"p_drbd_r0:{i}")
        subprocess.run([agent, "start"], env=nodes[node], check=True, capture_output=True)
    subprocess.run([agent, "promote"], env=nodes["node1"], check=True, capture_output=True)
    for node in nodes:
        nodes[node]["OCF_RESKEY_CRM_meta_interval"] = "10000"
        subprocess.run([agent, "monitor"], env=nodes[node], capture_output=True)  # settle score

    # calls per monitor (separate pass through counting wrappers, not timed)
    calls = {}
    for node, want in (("node1", 8), ("node2", 0)):
        open(calls_log, "w").close()
        cenv = dict(nodes[node], PATH=f"{fake}:{count}:{EMU_BIN}:/usr/sbin:/usr/bin:/sbin:/bin")
        for _ in range(5):
            rc = subprocess.run([agent, "monitor"], env=cenv, capture_output=True).returncode
            if rc != want:
                sys.exit(f"monitor on {node} returned {rc}, expected {want}")
        lines = open(calls_log).read().splitlines()
        calls[node] = {t: sum(1 for l in lines if l.startswith(t)) / 5
                       for t in ("drbdsetup", "drbdadm", "crm_attribute")}

    samples = {k: [] for k in ("floor", "emulator", "node1", "node2")}
    argvs = {"floor": ([PYTHON, "-I", "-S", "-c", "pass"], env),
             "emulator": ([EMU_BIN + "/drbdsetup", "events2", "--now", "r0"], nodes["node1"]),
             "node1": ([agent, "monitor"], nodes["node1"]),
             "node2": ([agent, "monitor"], nodes["node2"])}
    for _ in range(runs):
        for key, (argv, e) in argvs.items():
            samples[key].append(timed(argv, e)[0])
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}

    print(f"ocf:pyha:drbd monitor, steady state, median of {runs} (ms)")
    print(f"{'':28}{'wall':>8}{'agent own':>11}{'x floor':>9}{'drbdsetup':>11}"
          f"{'drbdadm':>9}{'CIB writes':>12}")
    print(f"{'python3 -I -S -c pass':28}{med['floor']:8.1f}")
    print(f"{'emulator events2 --now':28}{med['emulator']:8.1f}")
    ok = True
    for node, label in (("node1", "monitor Primary (rc 8)"), ("node2", "monitor Secondary (rc 0)")):
        own = med[node] - med["emulator"]
        ratio = own / med["floor"]
        c = calls[node]
        print(f"{label:28}{med[node]:8.1f}{own:11.1f}{ratio:9.2f}{c['drbdsetup']:11.1f}"
              f"{c['drbdadm']:9.1f}{c['crm_attribute']:12.1f}")
        ok &= ratio <= 2.5 and c["drbdsetup"] <= 1 and c["drbdadm"] == 0 \
            and c["crm_attribute"] == 0
    print("targets: agent own <= 2.5x floor, <= 1 drbdsetup, 0 drbdadm, 0 CIB writes: "
          + ("MET" if ok else "NOT MET"))
    print("linbit agent: not comparable here (needs /proc/drbd from the kernel module)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
