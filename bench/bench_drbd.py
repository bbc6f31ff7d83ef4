#!/usr/bin/python3
"""Steady-state monitor of ocf:pyha:drbd: under the DRBD emulator, and against a stand-in
for the real (C) drbdsetup.

Prints, for a Primary and a Secondary instance of a connected two-node resource: median wall
time of the monitor, the subprocesses it starts (drbdsetup/drbdadm calls) and the CIB writes
(crm_attribute calls) per monitor; alongside the `python3 -I -S -c pass` floor measured in
the same run (interleaved).

Two tables:
- emulator: drbdsetup is the Python emulator (~15 ms a call), so "agent own" = monitor -
  emulator call is the figure that compares with the floor;
- stand-in: drbdsetup is a tiny program that prints the `events2 --now` output captured
  from the emulator for that node - a C program compiled now with cc when there is one
  (the real drbdsetup is C too; it costs about an exec plus a netlink round trip), else a
  #!/bin/sh printf script (the table says which). Here the monitor's total wall time is
  the honest figure: what Pacemaker waits for on every monitor.

  /usr/bin/python3 -m bench.bench_drbd [--runs N] [--mode both|emulator|stand-in]

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

from rigs import drbd_emulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU_BIN = str(drbd_emulator.BIN)
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
    ap.add_argument("--mode", choices=("both", "emulator", "stand-in"), default="both")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="pyha-drbd-bench-")
    try:
        return bench(base, args.runs, args.mode)
    finally:
        subprocess.run([os.path.join(EMU_BIN, "drbdemu"), "destroy", "r0"],
                       env=dict(os.environ, DRBDEMU_STATE=base + "/state"), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def c_literal(text):
    return '"' + "".join(
        {"\\": "\\\\", '"': '\\"', "\n": "\\n"}.get(c, c) for c in text) + '"'


def make_stand_in(directory, output):
    """A drbdsetup that prints `output` and exits 0: compiled C if cc works, else sh."""
    os.makedirs(directory)
    path = os.path.join(directory, "drbdsetup")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        source = path + ".c"
        with open(source, "w") as f:
            f.write("#include <unistd.h>\nstatic const char text[] = %s;\n"
                    "int main(void) { return write(1, text, sizeof text - 1) < 0; }\n"
                    % c_literal(output))
        if subprocess.run([cc, "-O2", "-o", path, source], capture_output=True).returncode == 0:
            return "C program (cc)"
    with open(path, "w") as f:
        f.write("#!/bin/sh\nprintf '%%s' '%s'\n" % output.replace("'", "'\\''"))
    os.chmod(path, 0o755)
    return "#!/bin/sh printf script"


def count_calls(agent, nodes, want, path_prefix, calls_log):
    """Subprocesses and CIB writes per monitor (counting wrappers; not timed)."""
    calls = {}
    for node, rc_wanted in want.items():
        open(calls_log, "w").close()
        cenv = dict(nodes[node], PATH=path_prefix(node))
        for _ in range(5):
            rc = subprocess.run([agent, "monitor"], env=cenv, capture_output=True).returncode
            if rc != rc_wanted:
                sys.exit(f"monitor on {node} returned {rc}, expected {rc_wanted}")
        lines = open(calls_log).read().splitlines()
        calls[node] = {t: sum(1 for l in lines if l.startswith(t)) / 5
                       for t in ("drbdsetup", "drbdadm", "crm_attribute")}
    return calls


def bench(base, runs, mode):
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

    want = {"node1": 8, "node2": 0}
    ok = True
    if mode in ("both", "emulator"):
        ok &= bench_emulator(agent, env, nodes, runs, want, fake, count, calls_log)
    if mode in ("both", "stand-in"):
        ok &= bench_stand_in(base, agent, env, nodes, runs, want, fake, calls_log)
    print("linbit agent: not comparable here (needs /proc/drbd from the kernel module)")
    return 0 if ok else 1


def bench_emulator(agent, env, nodes, runs, want, fake, count, calls_log):
    calls = count_calls(agent, nodes, want,
                        lambda n: f"{fake}:{count}:{EMU_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
                        calls_log)

    samples = {k: [] for k in ("floor", "emulator", "node1", "node2")}
    argvs = {"floor": ([PYTHON, "-I", "-S", "-c", "pass"], env),
             "emulator": ([EMU_BIN + "/drbdsetup", "events2", "--now", "r0"], nodes["node1"]),
             "node1": ([agent, "monitor"], nodes["node1"]),
             "node2": ([agent, "monitor"], nodes["node2"])}
    for _ in range(runs):
        for key, (argv, e) in argvs.items():
            samples[key].append(timed(argv, e)[0])
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}

    print(f"ocf:pyha:drbd monitor under the emulator, steady state, median of {runs} (ms)")
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
    print()
    return ok


def bench_stand_in(base, agent, env, nodes, runs, want, fake, calls_log):
    kinds, stand_in_env = {}, {}
    for node in nodes:
        captured = subprocess.run([EMU_BIN + "/drbdsetup", "events2", "--now", "r0"],
                                  env=nodes[node], capture_output=True, text=True,
                                  check=True).stdout
        directory = f"{base}/stand-in-{node}"
        kinds[node] = make_stand_in(directory, captured)
        # drbdadm stays the emulator's: a steady-state monitor must not call it (counted)
        stand_in_env[node] = dict(nodes[node],
                                  PATH=f"{fake}:{directory}:{EMU_BIN}:/usr/sbin:/usr/bin:/sbin:/bin")
    count = f"{base}/count-stand-in"
    os.makedirs(count)
    with open(count + "/drbdsetup", "w") as f:
        f.write('#!/bin/sh\necho "drbdsetup $*" >> "%s"\nexec "$STAND_IN" "$@"\n' % calls_log)
    os.chmod(count + "/drbdsetup", 0o755)
    for node in nodes:
        nodes[node] = dict(nodes[node], STAND_IN=f"{base}/stand-in-{node}/drbdsetup")
    calls = count_calls(agent, nodes, want,
                        lambda n: f"{fake}:{count}:{EMU_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
                        calls_log)
    samples = {k: [] for k in ("floor", "stand-in", "node1", "node2")}
    argvs = {"floor": ([PYTHON, "-I", "-S", "-c", "pass"], env),
             "stand-in": ([f"{base}/stand-in-node1/drbdsetup", "events2", "--now", "r0"], env),
             "node1": ([agent, "monitor"], stand_in_env["node1"]),
             "node2": ([agent, "monitor"], stand_in_env["node2"])}
    for _ in range(runs):
        for key, (argv, e) in argvs.items():
            elapsed, rc = timed(argv, e)
            if key in want and rc != want[key]:
                sys.exit(f"stand-in monitor on {key} returned {rc}, expected {want[key]}")
            samples[key].append(elapsed)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    print(f"ocf:pyha:drbd monitor against a drbdsetup stand-in ({kinds['node1']}), "
          f"steady state, median of {runs} (ms)")
    print(f"{'':28}{'wall':>8}{'x floor':>9}{'drbdsetup':>11}{'drbdadm':>9}"
          f"{'subproc':>9}{'CIB writes':>12}")
    print(f"{'python3 -I -S -c pass':28}{med['floor']:8.1f}")
    print(f"{'stand-in events2 --now':28}{med['stand-in']:8.1f}")
    ok = True
    for node, label in (("node1", "monitor Primary (rc 8)"), ("node2", "monitor Secondary (rc 0)")):
        ratio = med[node] / med["floor"]
        c = calls[node]
        subprocesses = c["drbdsetup"] + c["drbdadm"] + c["crm_attribute"]
        print(f"{label:28}{med[node]:8.1f}{ratio:9.2f}{c['drbdsetup']:11.1f}{c['drbdadm']:9.1f}"
              f"{subprocesses:9.1f}{c['crm_attribute']:12.1f}")
        ok &= ratio <= 2.5 and c["drbdsetup"] <= 1 and c["drbdadm"] == 0 \
            and c["crm_attribute"] == 0
    print("targets: monitor wall <= 2.5x floor, <= 1 drbdsetup, 0 drbdadm, 0 CIB writes: "
          + ("MET" if ok else "NOT MET"))
    print()
    return ok


if __name__ == "__main__":
    sys.exit(main())
