#!/usr/bin/python3
"""Steady-state monitor of ocf:pyha:drbd: side by side with LINBIT's ocf:linbit:drbd, under
the DRBD emulator, and against a stand-in for the real (C) drbdsetup.

  /usr/bin/python3 -m bench.bench_drbd [--runs N]
        [--mode all|paired|emulator|stand-in|both|vm] [--lab-dir DIR] [--resource r0]

Every table is for a Primary and a Secondary instance of a connected two-node resource:
median wall time of the monitor, the programs it starts and the CIB writes (crm_attribute
--update/--delete) per monitor while nothing changes.

- paired (pyha vs linbit): both agents' monitors on the same emulated resource, the same node,
  the same environment and PATH, interleaved in one loop (the order flips every round); two
  tables: drbdsetup/drbdadm are the emulator (a Python program, ~15-30 ms a call: LINBIT's
  monitor makes three calls, pyha's one), then C stand-ins (compiled with cc, else sh) that
  answer exactly the calls these monitors make with what the emulator answered (any other
  call fails the run), which is closer to the real C tools. Each table also gives the ratio
  of the two runs of every round (back to back), its median and quartiles: a check on noise.
  LINBIT's agent believes the DRBD module is loaded only if /proc/drbd exists, which only the
  kernel module provides. So this part runs in a private mount namespace (unshare(2) with
  CLONE_NEWNS, / made private recursively, so nothing propagates to the host) where a fresh
  procfs is mounted on DIR/realproc (the bench's temporary directory) and a tmpfs over /proc,
  holding `drbd` as a regular file (DRBD 9's /proc/drbd: the version lines only) and, for
  every other entry of the real procfs, a symlink to DIR/realproc/<entry>. /proc/self ->
  DIR/realproc/self resolves per reading process (checked with a child `cat /proc/self/stat`);
  processes started after the set-up are reachable through /proc/self, not by listing /proc.
  The tmpfs is then remounted read-only. The namespace ends with its last process; the bench
  then checks that no process is left in it and that no mount reached the host. Both agents
  run in it (pyha's proc_drbd is left at its default, /proc/drbd), so both see the same
  "module". Needs root (unshare, mount), as the rest of the bench does for the emulator.
  Both agents get the same fake crm_attribute (node attributes kept as files, every call
  recorded; made of sh builtins only, so it starts no program of its own); LINBIT's
  crm_master is Pacemaker's real /usr/sbin/crm_master script, which calls it. The fake answers
  in ~1 ms where the real crm_attribute (C, a round trip to the CIB manager or attrd) takes
  longer: that favours LINBIT, which calls it on every monitor.
  Programs are counted with strace (`strace -f -e trace=execve,clone,clone3,fork,vfork`,
  strace is in scripts/install-deps.sh): every process below the agent that execs a program
  (a re-exec in the same process, as drbd-utils 9 hands DRBD 8.4 over to drbdsetup-84, stays
  one), where a stand-in (the emulator's drbdsetup/drbdadm, the fake crm_attribute) counts
  as one program and whatever it runs itself is not counted (the real tools are single C
  programs). Subshells that exec nothing are not programs. Without strace: n/a.
  Targets (issue 12): pyha <= 0.5x LINBIT's wall time, 1 program per monitor, 0 CIB writes
  when nothing changed.
- emulator: pyha alone; drbdsetup is the Python emulator (~15 ms a call), so "agent own" =
  monitor - emulator call is the figure that compares with the `python3 -I -S -c pass` floor.
- stand-in: pyha alone; drbdsetup is a tiny program that prints the `events2 --now` output
  captured from the emulator for that node - a C program compiled now with cc when there is
  one (the real drbdsetup is C too; it costs about an exec plus a netlink round trip), else a
  #!/bin/sh printf script (the table says which). Here the monitor's total wall time is the
  honest figure: what Pacemaker waits for on every monitor.
  Targets (issue 3) of these two: agent monitor <= 2.5x the floor, at most one drbdsetup
  call, zero CIB writes while the score does not change.
- vm: the paired comparison on the real kernel module (DRBD 8.4, real /proc/drbd, real
  drbdsetup/drbdadm) inside the nodes of a running VM lab
  (`python3 -m lab up --backend vm --stack drbd`, PYHA_LAB_DIR or --lab-dir), through the
  lab's node.run: this file and a spec are copied to /var/tmp on each node and run there with
  --worker; the same fake crm_attribute keeps Pacemaker's CIB untouched. Not in `all`.

`all` (the default) = paired + emulator + stand-in; `both` = emulator + stand-in.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

try:
    from rigs import drbd_emulator
    EMU_BIN = str(drbd_emulator.BIN)
except ImportError:     # the copy that a VM node runs with --worker has no checkout around it
    EMU_BIN = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
LINBIT_AGENT = "/usr/lib/ocf/resource.d/linbit/drbd"
VM_PYHA_AGENT = "/usr/lib/ocf/resource.d/pyha/drbd"     # the lab links it to its ocf/ share
CRM_FEATURE_SET = "3.16.2"      # what Pacemaker 2.1.5 (Debian 12) passes to agents
# The calls a steady-state monitor makes (pyha: the first; LINBIT: all), answered by the
# paired comparison's stand-ins as the emulator answered them; any other call fails (rc 20).
STAND_IN_CALLS = {"drbdsetup": [["events2", "--now", "r0"]],
                  "drbdadm": [["--version"], ["-c", "/etc/drbd.conf", "sh-dev", "r0"]]}
COUNTER = """#!/bin/sh
echo "{name} $*" >> "{log}"
exec "{real}" "$@"
"""

# The crm_attribute both agents get in the paired comparison: records every call in
# $FAKE_CRM_LOG and keeps node attributes as files $FAKE_CRM_DIR/<node>-<name> so a query
# answers like crm_attribute (value on stdout, rc 105 when unset). sh builtins only: it starts
# no program, as the real (C) crm_attribute starts none.
FAKE_CRM_ATTRIBUTE = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_CRM_LOG"
node=local name= value= mode=query
while [ $# -gt 0 ]; do
    case "$1" in
        --node|-N) node=$2; shift ;;
        --name|-n) name=$2; shift ;;
        --update|-v) value=$2; mode=update; shift ;;
        --delete|-D) mode=delete ;;
        --lifetime|-l|--type|-t|--id|-i) shift ;;
    esac
    shift
done
file="$FAKE_CRM_DIR/$node-$name"
case $mode in
    update) printf '%s\\n' "$value" > "$file" ;;
    delete) : > "$file" ;;
    query) if [ -s "$file" ]; then read -r value < "$file"; printf '%s\\n' "$value"
           else echo "Error performing operation: No such device or address" >&2; exit 105; fi ;;
esac
"""

# Runs in a new process: a private mount namespace whose /proc is a read-only tmpfs holding
# the given /proc/drbd text (argv[2]) as a regular file and a symlink to a fresh procfs
# (mounted on argv[1]) for every other entry; then execs argv[4:].
NS_SETUP = r"""
import ctypes, os, sys
real, text, sep, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
assert sep == "--" and argv
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x20000, 1, 2, 4, 8
MS_REMOUNT, MS_REC, MS_PRIVATE = 32, 16384, 1 << 18
SAFE = MS_NOSUID | MS_NODEV | MS_NOEXEC
def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
def mount(source, target, fstype, flags, data=None):
    check(libc.mount(source.encode(), target.encode(), fstype and fstype.encode(),
                     ctypes.c_ulong(flags), data and data.encode()), "mount " + target)
check(libc.unshare(CLONE_NEWNS), "unshare")
mount("none", "/", None, MS_REC | MS_PRIVATE)
mount("proc", real, "proc", SAFE)
entries = os.listdir(real)
mount("pyha-proc", "/proc", "tmpfs", SAFE, "mode=0555,size=1m")
for name in entries:
    if name != "drbd":
        os.symlink(os.path.join(real, name), os.path.join("/proc", name))
with open("/proc/drbd", "w") as f:
    f.write(text)
os.chmod("/proc/drbd", 0o444)
mount("pyha-proc", "/proc", None, MS_REMOUNT | MS_RDONLY | SAFE)
os.execvp(argv[0], argv)
"""


def in_proc_namespace(argv, proc_drbd, workdir, env=None, **kwargs):
    """Run argv (a list) in a private mount namespace whose /proc/drbd is `proc_drbd` and whose
    other /proc entries are the real ones; wait for it and check that nothing is left.

    `workdir` (a directory of the caller's, which it removes) holds workdir/realproc, where
    the real procfs is mounted inside the namespace only. Returns the CompletedProcess; raises
    RuntimeError if a process was left in the namespace (it is killed) or one of its mounts is
    visible here.
    """
    real = os.path.join(workdir, "realproc")
    os.makedirs(real, exist_ok=True)
    try:
        p = subprocess.run([PYTHON, "-I", "-S", "-c", NS_SETUP, real, proc_drbd, "--", *argv],
                           env=env, **kwargs)
    except BaseException:       # interrupted: its first process was killed; end the rest
        end_namespace(real, workdir, interrupted=True)
        raise
    end_namespace(real, workdir)
    return p


def end_namespace(real, workdir, interrupted=False):
    """Kill what is left in the namespace: processes whose mount table has a mount on `real`
    (a path of ours: no one else's namespace has it), and check none of it shows here."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                if any(line.split()[4] == real for line in f):
                    left.append(int(pid))
        except OSError:
            pass
    for pid in left:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    with open("/proc/self/mountinfo") as f:
        leaked = [line for line in f if workdir in line or " pyha-proc " in line]
    if (left and not interrupted) or leaked:
        raise RuntimeError(f"namespace with {real} not clean: processes {left} (killed), "
                           f"mounts visible here {leaked}")


def proc_drbd_text(state_dir, node, env):
    """DRBD 9's /proc/drbd for `node`: the emulator's own rendering when it writes one
    ($DRBDEMU_STATE/proc/<node>/drbd), else built from `drbdadm --version` (same lines)."""
    try:
        with open(os.path.join(state_dir, "proc", node, "drbd")) as f:
            return f.read()
    except FileNotFoundError:
        pass
    out = subprocess.run([EMU_BIN + "/drbdadm", "--version"], env=env, capture_output=True,
                         text=True, check=True).stdout
    v = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    ver, api = v["DRBD_KERNEL_VERSION"], v.get("DRBDADM_API_VERSION", "2")
    return (f"version: {ver} (api:{api}/proto:86-122)\n"
            f"GIT-hash: {'0' * 40} build by pyha-bench@localhost, 2024-01-01 00:00:00\n"
            f"Transports (api:21): tcp ({ver})\n")


# ---------------------------------------------------------------- counting programs (strace)

STRACE_LINE = re.compile(r"^(\d+) +(.*)$")
RESULT = re.compile(r"\) += (-?\d+)")


def count_programs(trace_path, stand_ins):
    """Programs started below the traced agent: (count, [names]).

    A program is a process below the agent that made a successful execve; one that execs
    again (drbd-utils 9's drbdadm/drbdsetup hand DRBD 8.4 over to drbdadm-84/drbdsetup-84)
    stays one program, named "drbdsetup>drbdsetup-84". A program in `stand_ins` (real paths)
    counts once and what it starts does not (it stands for a single C program)."""
    parent, execs, pending = {}, [], {}
    with open(trace_path, errors="replace") as f:
        for line in f:
            m = STRACE_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, rest = int(m.group(1)), m.group(2)
            if rest.startswith("<... "):                     # "<... execve resumed>) = 0"
                call = rest[5:].split(" ", 1)[0]
                path = pending.pop((pid, call), None)
            else:
                call = rest.split("(", 1)[0]
                path = None
                if call == "execve":
                    q = rest.split('"', 2)
                    path = q[1] if len(q) > 2 else "?"
                if rest.endswith("<unfinished ...>"):
                    pending[(pid, call)] = path
                    continue
            r = RESULT.search(rest)
            if not r:
                continue
            value = int(r.group(1))
            if call in ("clone", "clone3", "fork", "vfork") and value > 0:
                parent[value] = pid
            elif call == "execve" and value == 0:
                execs.append((pid, path))
    stand_ins = {os.path.realpath(p) for p in stand_ins}
    agent = execs[0][0] if execs else None
    inside, labels = set(), {}          # pids that became a stand-in; pid -> "name[>name]"
    for pid, path in execs:
        p, hidden = pid, pid == agent
        while p is not None and not hidden:
            hidden = p in inside
            p = parent.get(p)
        if hidden:
            continue
        name = os.path.basename(path)
        labels[pid] = labels[pid] + ">" + name if pid in labels else name
        if os.path.realpath(path) in stand_ins:
            inside.add(pid)
    return len(labels), list(labels.values())


def cib_writes(lines):
    return sum(1 for line in lines if {"--update", "-v", "--delete", "-D"} & set(line.split()))


# ---------------------------------------------------------------- the worker (runs anywhere)

def timed(argv, env):
    """(wall seconds, cpu seconds of the process and its children, exit code)."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def proc_facts():
    """What /proc looks like here: its file system type, /proc/drbd, /proc/self per process."""
    fstype = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == "/proc":
                fstype = right.split()[0]        # the last mount on /proc wins
    child = subprocess.Popen(["cat", "/proc/self/stat"], stdout=subprocess.PIPE, text=True)
    out = child.communicate()[0]
    drbd = "/proc/drbd"
    return {"fstype": fstype,
            "drbd_regular_file": os.path.isfile(drbd) and not os.path.islink(drbd),
            "drbd": read_lines(drbd)[:3],
            "self_is_reader": out.split()[:1] == [str(child.pid)],
            "mntns": os.readlink("/proc/self/ns/mnt")}


def worker(spec_path):
    """Run the spec's monitors: once each to settle (exit codes checked), traced with strace,
    then `runs` interleaved timed rounds (order flipped every round). JSON on stdout."""
    with open(spec_path) as f:
        spec = json.load(f)
    items = spec["items"]
    out = {"proc": proc_facts(), "settle": {}, "programs": {}, "names": {}, "wall": {},
           "cpu": {}, "bad_rc": {}, "crm_calls": {}, "cib_writes": {}}
    for it in items:
        out["settle"][it["key"]] = timed(it["argv"], it["env"])[2]
    strace = shutil.which("strace")
    for it in items:
        if not strace:
            break
        counts, names = [], []
        for n in range(spec["trace_runs"]):
            trace = os.path.join(spec["dir"], f"trace-{it['key']}-{n}")
            subprocess.run([strace, "-f", "-qq", "-s", "4096", "-e", "signal=none",
                            "-e", "trace=execve,clone,clone3,fork,vfork", "-o", trace,
                            *it["argv"]], env=it["env"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            c, names = count_programs(trace, spec["stand_ins"])
            counts.append(c)
            os.unlink(trace)
        out["programs"][it["key"]] = statistics.mean(counts)
        out["names"][it["key"]] = names
    before = {it["key"]: len(read_lines(it["env"]["FAKE_CRM_LOG"])) for it in items}
    for it in items:
        out["wall"][it["key"]], out["cpu"][it["key"]], out["bad_rc"][it["key"]] = [], [], []
    for r in range(spec["runs"]):
        for it in (items if r % 2 == 0 else items[::-1]):
            wall, cpu, rc = timed(it["argv"], it["env"])
            out["wall"][it["key"]].append(wall)
            out["cpu"][it["key"]].append(cpu)
            if rc != it["want"]:
                out["bad_rc"][it["key"]].append(rc)
    for it in items:
        calls = read_lines(it["env"]["FAKE_CRM_LOG"])[before[it["key"]]:]
        out["crm_calls"][it["key"]] = sorted(set(calls))
        out["cib_writes"][it["key"]] = cib_writes(calls) / spec["runs"]
    json.dump(out, sys.stdout)
    return 0


# ---------------------------------------------------------------- the command

MODES = {"all": ("paired", "emulator", "stand-in"), "both": ("emulator", "stand-in"),
         "paired": ("paired",), "emulator": ("emulator",), "stand-in": ("stand-in",),
         "vm": ("vm",)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--mode", choices=tuple(MODES), default="all")
    ap.add_argument("--lab-dir", default=os.environ.get("PYHA_LAB_DIR", "/var/lib/pyha-lab"),
                    help="--mode vm: the running VM lab")
    ap.add_argument("--resource", default="r0", help="--mode vm: the DRBD resource")
    ap.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    # SIGTERM unwinds like ^C: the finally clauses end the namespace's processes and remove
    # the emulated resource, its loop devices and the temporary directory
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.mode == "vm":
        return bench_vm(args.runs, args.lab_dir, args.resource)
    base = tempfile.mkdtemp(prefix="pyha-drbd-bench-")
    try:
        return bench(base, args.runs, MODES[args.mode])
    finally:
        subprocess.run([os.path.join(EMU_BIN, "drbdemu"), "destroy", "r0"],
                       env=dict(os.environ, DRBDEMU_STATE=base + "/state"), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


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


ANSWERING_C = """#include <stdio.h>
#include <string.h>
#include <unistd.h>
static const struct { const char *args, *out; size_t len; } answers[] = {
%s};
int main(int argc, char **argv) {
    char line[4096];
    size_t n = 0;
    line[0] = 0;
    for (int i = 1; i < argc; i++) {
        size_t l = strlen(argv[i]);
        if (n + l + 2 > sizeof line) break;
        if (i > 1) line[n++] = ' ';
        memcpy(line + n, argv[i], l + 1);
        n += l;
    }
    for (size_t k = 0; k < sizeof answers / sizeof *answers; k++)
        if (!strcmp(line, answers[k].args)) return write(1, answers[k].out, answers[k].len) < 0;
    fprintf(stderr, "stand-in: unexpected call: %%s\\n", line);
    return 20;
}
"""


def make_answering_stand_in(path, answers):
    """A program that prints answers[" ".join(argv[1:])] and exits 0 (an unexpected call:
    message on stderr, rc 20): compiled C if cc works, else sh. Returns its kind."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        rows = "".join("    {%s, %s, sizeof(%s) - 1},\n" % (c_literal(a), c_literal(o),
                                                          c_literal(o))
                       for a, o in answers.items())
        with open(path + ".c", "w") as f:
            f.write(ANSWERING_C % rows)
        if subprocess.run([cc, "-O2", "-o", path, path + ".c"],
                          capture_output=True).returncode == 0:
            return "C programs (cc)"
    write_exe(path, "#!/bin/sh\ncase \"$*\" in\n" + "".join(
        "    %s) printf '%%s' %s ;;\n" % (shlex.quote(a), shlex.quote(o))
        for a, o in answers.items())
        + "    *) echo \"stand-in: unexpected call: $*\" >&2; exit 20 ;;\nesac\n")
    return "#!/bin/sh case scripts"


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


def bench(base, runs, parts):
    ocf_root = base + "/ocf"
    subprocess.run([PYTHON, "-m", "ocf_agents", "install", "--ocf-root", ocf_root],
                   env=dict(os.environ, PYTHONPATH=REPO), check=True, stdout=subprocess.DEVNULL)
    agent = ocf_root + "/resource.d/pyha/drbd"
    fake = base + "/fake"
    count = base + "/count"
    os.makedirs(fake)
    os.makedirs(count)
    calls_log = base + "/calls.log"
    write_exe(fake + "/crm_attribute", '#!/bin/sh\necho "crm_attribute $*" >> "%s"\n' % calls_log)
    for tool in ("drbdsetup", "drbdadm"):
        write_exe(count + "/" + tool,
                  COUNTER.format(name=tool, log=calls_log, real=os.path.join(EMU_BIN, tool)))
    env = {"PATH": f"{fake}:{EMU_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
           "DRBDEMU_STATE": base + "/state", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_TYPE": "drbd", "OCF_RESKEY_drbd_resource": "r0",
           "OCF_RESKEY_wfc_timeout": "2",
           "OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone_node_max": "1",
           "OCF_RESKEY_CRM_meta_promoted_max": "1", "OCF_RESKEY_CRM_meta_promoted_node_max": "1",
           "OCF_RESKEY_CRM_meta_notify": "true", "OCF_RESKEY_CRM_meta_timeout": "20000"}
    subprocess.run([EMU_BIN + "/drbdemu", "init", "r0", "--nodes", "node1,node2", "--size", "8M",
                    "--device", base + "/dev/drbd0"], env=env, check=True)
    nodes = {}
    for i, node in enumerate(("node1", "node2")):
        # the emulator's /proc/drbd stand-in for that node (the agent reads no other)
        nodes[node] = dict(env, DRBDEMU_NODE=node, OCF_RESKEY_CRM_meta_on_node=node,
                           OCF_RESKEY_proc_drbd=f"{base}/state/proc/{node}/drbd",
                           HA_RSCTMP=f"{base}/rsc-{node}",
                           OCF_RESOURCE_INSTANCE=f"p_drbd_r0:{i}")
        subprocess.run([agent, "start"], env=nodes[node], check=True, capture_output=True)
    subprocess.run([agent, "promote"], env=nodes["node1"], check=True, capture_output=True)
    for node in nodes:
        nodes[node]["OCF_RESKEY_CRM_meta_interval"] = "10000"
        subprocess.run([agent, "monitor"], env=nodes[node], capture_output=True)  # settle score

    want = {"node1": 8, "node2": 0}
    ok = True
    if "paired" in parts:
        ok &= bench_paired(base, agent, nodes, runs, want, "emulator")
        ok &= bench_paired(base, agent, nodes, runs, want, "stand-in")
    if "emulator" in parts:
        ok &= bench_emulator(agent, env, nodes, runs, want, fake, count, calls_log)
    if "stand-in" in parts:
        ok &= bench_stand_in(base, agent, env, nodes, runs, want, fake, calls_log)
    return 0 if ok else 1


def paired_env(common, fake_dir, logs_dir, key):
    """The environment of one agent's monitor: `common` (identical for both agents) plus the
    fake crm_attribute's log and attribute directory of its own."""
    os.makedirs(os.path.join(logs_dir, key), exist_ok=True)
    return dict(common, PATH=f"{fake_dir}:{common['PATH']}",
                FAKE_CRM_LOG=os.path.join(logs_dir, key + ".log"),
                FAKE_CRM_DIR=os.path.join(logs_dir, key))


def bench_paired(base, agent, nodes, runs, want, variant):
    """pyha and LINBIT side by side in the /proc stand-in namespace, with drbdsetup/drbdadm
    the emulator (variant "emulator") or C stand-ins answering what the emulator answered
    to the calls these monitors make (variant "stand-in")."""
    if not os.access(LINBIT_AGENT, os.X_OK):
        print(f"paired: {LINBIT_AGENT} is not installed (drbd-utils): NOT MET\n")
        return False
    work = f"{base}/paired-{variant}"
    fake_dir, logs = work + "/fake-crm", work + "/crm"
    os.makedirs(fake_dir)
    write_exe(fake_dir + "/crm_attribute", FAKE_CRM_ATTRIBUTE)
    items, stand_ins, kind = [], [fake_dir + "/crm_attribute"], "the emulator"
    for node in nodes:
        tools = EMU_BIN
        if variant == "stand-in":
            tools = f"{work}/tools-{node}"
            os.makedirs(tools)
            for tool, calls in STAND_IN_CALLS.items():
                answers = {}
                for args in calls:
                    p = subprocess.run([f"{EMU_BIN}/{tool}", *args], env=nodes[node],
                                       capture_output=True, text=True, check=True)
                    answers[" ".join(args)] = p.stdout
                kind = make_answering_stand_in(f"{tools}/{tool}", answers)
                stand_ins.append(f"{tools}/{tool}")
        common = dict(nodes[node], PATH=f"{tools}:/usr/sbin:/usr/bin:/sbin:/bin",
                      OCF_RESKEY_CRM_meta_master_max="1",          # LINBIT's names of
                      OCF_RESKEY_CRM_meta_master_node_max="1",     # promoted-max/-node-max
                      OCF_RESKEY_CRM_meta_promotable="true",
                      OCF_RESKEY_crm_feature_set=CRM_FEATURE_SET)
        common.pop("OCF_RESKEY_proc_drbd")      # both read /proc/drbd: the namespace's
        for name, path in (("pyha", agent), ("linbit", LINBIT_AGENT)):
            key = f"{name}-{node}"
            items.append({"key": key, "argv": [path, "monitor"], "want": want[node],
                          "env": paired_env(common, fake_dir, logs, key)})
    if variant == "emulator":
        stand_ins += [EMU_BIN + "/drbdsetup", EMU_BIN + "/drbdadm"]
    spec = {"items": items, "runs": runs, "trace_runs": 3, "dir": work, "stand_ins": stand_ins}
    with open(work + "/spec.json", "w") as f:
        json.dump(spec, f)
    proc_drbd = proc_drbd_text(base + "/state", "node1", nodes["node1"])
    p = in_proc_namespace([PYTHON, "-I", os.path.abspath(__file__), "--worker",
                           work + "/spec.json"], proc_drbd, work,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                          capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"paired worker failed (rc {p.returncode}): {p.stderr.strip()}")
    res = json.loads(p.stdout)
    pf = res["proc"]
    proc_ok = (pf["fstype"] == "tmpfs" and pf["drbd_regular_file"] and pf["self_is_reader"]
               and pf["drbd"][:1] == proc_drbd.splitlines()[:1])
    print(f"ocf:pyha:drbd vs ocf:linbit:drbd monitor, drbdsetup/drbdadm: {kind}; same resource, "
          f"node and environment, interleaved, median of {runs} (ms)")
    print(f"/proc stand-in ({pf['mntns']}): /proc on {pf['fstype']}, /proc/drbd "
          f"{'a regular file' if pf['drbd_regular_file'] else 'MISSING'} "
          f"({pf['drbd'][0] if pf['drbd'] else ''}), /proc/self per process "
          f"{'ok' if pf['self_is_reader'] else 'BROKEN'}; namespace gone after the run")
    return paired_table(res, nodes, want, runs) and proc_ok


def paired_table(res, nodes, want, runs, labels=None):
    """Print the pyha-vs-linbit table from a worker's result; True if the targets are met."""
    med = {k: statistics.median(v) * 1000 for k, v in res["wall"].items()}
    cpu = {k: statistics.median(v) * 1000 for k, v in res["cpu"].items()}
    progs = res["programs"]
    print(f"{'':26}{'pyha ms':>9}{'linbit ms':>11}{'pyha/linbit':>13}{'pyha cpu':>10}"
          f"{'linbit cpu':>12}{'pyha progs':>12}{'linbit progs':>14}{'pyha CIB w':>12}"
          f"{'linbit CIB w':>14}")
    ok = True
    roles = labels or {}
    for node in nodes:
        label = roles.get(node) or ("monitor Primary (rc 8)" if want[node] == 8
                                    else "monitor Secondary (rc 0)")
        p, l = f"pyha-{node}", f"linbit-{node}"
        for key in (p, l):
            if res["settle"][key] != want[node] or res["bad_rc"][key]:
                sys.exit(f"{key}: monitor returned {res['settle'][key]} "
                         f"{res['bad_rc'][key][:5]}, expected {want[node]}")
        ratio = med[p] / med[l]
        pp, lp = progs.get(p), progs.get(l)
        print(f"{label:26}{med[p]:9.1f}{med[l]:11.1f}{ratio:13.2f}{cpu[p]:10.1f}{cpu[l]:12.1f}"
              f"{'n/a' if pp is None else f'{pp:.1f}':>12}"
              f"{'n/a' if lp is None else f'{lp:.1f}':>14}"
              f"{res['cib_writes'][p]:12.1f}{res['cib_writes'][l]:14.1f}")
        ok &= ratio <= 0.5 and res["cib_writes"][p] == 0 and (pp is None or pp <= 1)
    for node in nodes:
        per_round = [a / b for a, b in zip(res["wall"][f"pyha-{node}"],
                                           res["wall"][f"linbit-{node}"])]
        if len(per_round) >= 4:
            q1, q2, q3 = statistics.quantiles(per_round, n=4)
            print(f"  {node}: pyha/linbit per round (run back to back): median {q2:.2f}, "
                  f"quartiles {q1:.2f}-{q3:.2f}")
    for node in nodes:
        for name in ("pyha", "linbit"):
            key = f"{name}-{node}"
            if key in res["names"]:
                print(f"  {key} starts: " + (", ".join(
                    f"{n} x{c}" if c > 1 else n for n, c in counted(res["names"][key]))
                    or "nothing"))
    for node in nodes:
        calls = res["crm_calls"][f"linbit-{node}"]
        print(f"  linbit-{node} crm_attribute calls (via crm_master): "
              + ("; ".join(calls) if calls else "none"))
    print("targets: pyha <= 0.5x linbit wall, <= 1 program per monitor, 0 CIB writes when "
          "nothing changed: " + ("MET" if ok else "NOT MET")
          + ("" if progs else " (programs not counted: strace not installed)"))
    print()
    return ok


def counted(names):
    seen = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return list(seen.items())


def bench_vm(runs, lab_dir, resource, cluster=None, node_env=None):
    """The paired comparison on the real DRBD module, inside each node of a running VM lab.

    `cluster` and `node_env` (node name -> extra environment for both agents) are for a dry
    run of this code path without VMs; by default the lab in `lab_dir`."""
    if cluster is None:
        sys.path.insert(0, REPO)
        from lab.cluster import Cluster
        cluster = Cluster.load(lab_dir)
        if cluster is None or getattr(cluster, "backend", None) != "vm":
            sys.exit(f"no VM lab in {lab_dir} (python3 -m lab up --backend vm --stack drbd)")
    here = f"/var/tmp/pyha-drbd-bench-{os.getpid()}"     # /run may be noexec on the nodes
    with open(os.path.abspath(__file__)) as f:
        source = f.read()
    want, results, version = {}, {}, ""
    for node in cluster.running_nodes():
        role = node.run(["drbdadm", "role", resource], check=False).stdout.strip().split("/")[0]
        if role not in ("Primary", "Secondary"):
            print(f"{node.name}: {resource} is {role or 'not configured'}; skipped")
            continue
        want[node.name] = 8 if role == "Primary" else 0
        fake_dir, logs = here + "/fake-crm", here + "/crm"
        node.run(["mkdir", "-p", fake_dir, logs, here + "/rsc"])
        try:
            node.write_file(here + "/bench_drbd.py", source, 0o755)
            node.write_file(fake_dir + "/crm_attribute", FAKE_CRM_ATTRIBUTE, 0o755)
            common = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                      "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "drbd_" + resource,
                      "OCF_RESOURCE_TYPE": "drbd", "OCF_RESKEY_drbd_resource": resource,
                      "HA_RSCTMP": here + "/rsc", "OCF_RESKEY_CRM_meta_on_node": node.name,
                      "OCF_RESKEY_CRM_meta_interval": "10000",
                      "OCF_RESKEY_CRM_meta_timeout": "20000",
                      "OCF_RESKEY_CRM_meta_clone_max": "2",
                      "OCF_RESKEY_CRM_meta_clone_node_max": "1",
                      "OCF_RESKEY_CRM_meta_promoted_max": "1",
                      "OCF_RESKEY_CRM_meta_promoted_node_max": "1",
                      "OCF_RESKEY_CRM_meta_master_max": "1",
                      "OCF_RESKEY_CRM_meta_master_node_max": "1",
                      "OCF_RESKEY_CRM_meta_promotable": "true",
                      "OCF_RESKEY_CRM_meta_notify": "true",
                      "OCF_RESKEY_crm_feature_set": CRM_FEATURE_SET}
            common.update(node_env(node.name) if node_env else {})
            items = []
            for name, path in (("pyha", VM_PYHA_AGENT),
                               ("linbit", LINBIT_AGENT)):
                key = f"{name}-{node.name}"
                env = dict(common, PATH=f"{fake_dir}:{common['PATH']}",
                           FAKE_CRM_LOG=f"{logs}/{key}.log", FAKE_CRM_DIR=f"{logs}/{key}")
                node.run(["mkdir", "-p", env["FAKE_CRM_DIR"]])
                items.append({"key": key, "argv": [path, "monitor"], "env": env,
                              "want": want[node.name]})
            spec = {"items": items, "runs": runs, "trace_runs": 3, "dir": here,
                    "stand_ins": [fake_dir + "/crm_attribute"]}
            node.write_file(here + "/spec.json", json.dumps(spec))
            p = node.run([PYTHON, "-I", here + "/bench_drbd.py", "--worker", here + "/spec.json"],
                         check=False, timeout=300 + runs * 60)
            if p.returncode != 0:
                sys.exit(f"{node.name}: worker failed (rc {p.returncode}): {p.stderr.strip()}")
            results[node.name] = json.loads(p.stdout)
            version = version or " ".join(results[node.name]["proc"]["drbd"][:1])
        finally:
            node.run(["rm", "-rf", here], check=False)
    if not results:
        sys.exit("no node has the resource Primary or Secondary")
    merged = {k: {} for k in ("settle", "programs", "names", "wall", "cpu", "bad_rc",
                              "crm_calls", "cib_writes")}
    for res in results.values():
        for k in merged:
            merged[k].update(res[k])
    print(f"ocf:pyha:drbd vs ocf:linbit:drbd monitor on the real module in the VM lab "
          f"({version}), interleaved per node, median of {runs} (ms)")
    ok = paired_table(merged, list(results), want, runs,
                      {n: f"{n} {'Primary (rc 8)' if want[n] == 8 else 'Secondary (rc 0)'}"
                       for n in results})
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
            elapsed, _, rc = timed(argv, e)
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
