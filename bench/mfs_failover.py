"""Where the MooseFS stack's failover time goes (issue 13), on a running namespace lab
(`python3 -m lab up --stack mfs`, `mfs-2vip` or `mfs-ml`): fail the active node, then time from the failure what
the client machine sees, sampled there every 50 ms, beside Pacemaker's own steps on the
new node:

  answers    the master answers an info request on the floating address
  servers    both chunkservers registered with it
  write      a new file created, written and fsynced through the FUSE mount

  python3 -m bench.mfs_failover [--runs 3] [standby crash ...]

One clock: the namespace lab's machines share this kernel, so the client's time.time()
and the failure's are comparable (not so on the VM backend).
"""
import argparse
import json
import re
import sys
import time

from lab import LAB_DIR
from lab.cluster import Cluster
from lab.scenarios import SCENARIOS
from lab.stacks import STACKS
from lab.util import wait_for

# Runs on the client machine: one line per event, "<time> <what> [detail]".
SAMPLER = r"""
import os, socket, sys, threading, time
sys.path.insert(0, sys.argv[4])
from rigs.moosefs.mfsprobe import ask, CLTOMA_INFO, MATOCL_INFO, CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST
vip, mnt, log = sys.argv[1], sys.argv[2], open(sys.argv[3], "a", buffering=1)
open(sys.argv[3] + ".pid", "w").write(str(os.getpid()))
def master():
    while True:
        try:
            with socket.create_connection((vip, 9421), timeout=0.3) as s:
                s.settimeout(0.3)
                ask(s, CLTOMA_INFO, MATOCL_INFO)
                servers = ask(s, CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST)
                n = sum(1 for i in range(0, len(servers), 69) if not servers[i] & 1)
                log.write(f"{time.time():.3f} answers {n}\n")
        except Exception as e:
            log.write(f"{time.time():.3f} silent {type(e).__name__}\n")
        time.sleep(0.05)
def writer():
    os.makedirs(f"{mnt}/failover-probe", exist_ok=True)
    i = 0
    while True:
        i += 1
        try:
            with open(f"{mnt}/failover-probe/{i % 200}", "w") as f:
                f.write("x" * 100)
                f.flush()
                os.fsync(f.fileno())
            log.write(f"{time.time():.3f} write ok\n")
        except OSError as e:
            log.write(f"{time.time():.3f} write {e.errno}\n")
        time.sleep(0.05)
threading.Thread(target=master, daemon=True).start()
writer()
"""

PCMK_STAMP = re.compile(r"(\w{3} [ \d]\d \d\d:\d\d:\d\d)(\.\d+)?")
PCMK_LINE = re.compile(r"Result of (start|promote|stop|demote) operation for (\S+) on (\S+): "
                       r"(\S+)")


def first_after(events, t0, what, test=lambda detail: True):
    for t, kind, detail in events:
        if t >= t0 and kind == what and test(detail):
            return t - t0
    return None


def pacemaker_steps(node, t0):
    """(seconds after t0, 'promote drbd-r0') for each action completed on node, read from
    its pacemaker.log (Pacemaker 2.1 through libqb 2 stamps milliseconds; an older log's
    whole seconds are taken as they are: +-1 s)."""
    steps = []
    year = time.localtime().tm_year
    for line in node.pacemaker_log.read_text(errors="replace").splitlines()[-3000:]:
        match = PCMK_LINE.search(line)
        stamp = PCMK_STAMP.match(line)
        if not match or not stamp:
            continue
        try:
            whole = time.mktime(time.strptime(f"{year} {stamp.group(1)}", "%Y %b %d %H:%M:%S"))
        except ValueError:
            continue
        at = whole + float(stamp.group(2) or 0)
        if at >= (t0 if stamp.group(2) else int(t0)):
            steps.append((at - t0, f"{match.group(1)} {match.group(2)}"))
    return steps


def run_once(cluster, stack, scenario, log_path):
    client = cluster.clients[0]
    inject, recover, _ = SCENARIOS[scenario]
    active = stack.wait_active(cluster)
    peers = [n for n in cluster.running_nodes() if n is not active]
    # Steady state before the failure: the sampler running, and a monitor (every 10 s)
    # has recorded the connections since the last failover.
    time.sleep(12)
    t0 = time.time()
    inject(cluster, stack, active)

    def events():
        text = client.run(["cat", log_path], quiet=True).stdout
        parsed = []
        for line in text.splitlines():
            fields = line.split(maxsplit=2)
            if len(fields) >= 2:
                parsed.append((float(fields[0]), fields[1], fields[2] if len(fields) > 2 else ""))
        return parsed
    def written_again():
        got = events()
        silent = first_after(got, t0, "silent")
        return silent is not None and first_after(
            got, t0 + silent + 0.1, "write", lambda d: d == "ok") is not None
    wait_for(written_again, 120, "a client write after the master went away", interval=0.5)
    got = events()
    lost_write = max((t for t, k, d in got if k == "write" and d == "ok" and t < t0),
                     default=None)
    # A standby stops the old master some time after the command: everything is timed
    # from the moment the master stopped answering (for a crash: at once).
    silent = first_after(got, t0, "silent")
    gone = t0 + (silent or 0.0)
    oks = [t for t, k, d in got if k == "write" and d == "ok" and t >= t0 - 5]
    row = {
        "scenario": scenario, "from": active.name,
        "last write before (s)": None if lost_write is None else round(lost_write - t0, 2),
        "master silent (s)": silent,
        "answers (s)": first_after(got, gone + 0.1, "answers"),
        "servers (s)": first_after(got, gone + 0.1, "answers", lambda d: d == "2"),
        "write (s)": first_after(got, gone + 0.1, "write", lambda d: d == "ok"),
        "longest write gap (s)": round(max(b - a for a, b in zip(oks, oks[1:])), 2)
        if len(oks) > 1 else None,
        "pacemaker": [(round(s, 1), what) for s, what in
                      sum((pacemaker_steps(p, t0) for p in peers), [])],
    }
    recover(cluster, stack, active)
    stack.wait_active(cluster)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["standby", "crash"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    cluster = Cluster.load(LAB_DIR)
    if cluster is None or cluster.stack not in ("mfs", "mfs-2vip", "mfs-ml") or cluster.backend != "ns":
        sys.exit("needs a running namespace lab with the MooseFS stack: "
                 "python3 -m lab up --stack mfs")
    stack = STACKS[cluster.stack]()
    client = cluster.clients[0]
    log_path = "/tmp/mfs-failover-sampler.log"
    from lab import REPO_ROOT
    client.run(["rm", "-f", log_path])
    client.spawn(["python3", "-c", SAMPLER, stack.vip, stack.mnt, log_path, str(REPO_ROOT)])
    try:
        for _ in range(args.runs):
            for scenario in args.scenarios:
                print(json.dumps(run_once(cluster, stack, scenario, log_path)), flush=True)
    finally:
        pid = client.run(["cat", log_path + ".pid"], check=False, quiet=True).stdout.strip()
        if pid.isdigit():   # the sampler we started, by its pid
            client.run(["kill", pid], check=False)


if __name__ == "__main__":
    main()
