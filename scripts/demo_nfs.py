#!/usr/bin/python3
"""A short demo of ocf:pyha:nfsexport and ocf:pyha:nfsnotify, run the way
Pacemaker runs them, on two simulated nodes (private /var/lib/nfs each, in a
throw-away network namespace). Nothing on the host is changed.

  node A exports /srv/demo, a client mounts it (rmtab line), A fails over to
  node B: B's export table and rmtab know the client, and sm-notify tells the
  client (a statd record) that the server under its floating name rebooted.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

AGENTS = "/usr/lib/ocf/resource.d/pyha"  # replaced by a private installation in main()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIP = ("10.213.0.250", "nfs-demo-vip")


def say(text):
    print(f"\n== {text}", flush=True)


def agent(node, name, action, **params):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": f"demo-{name}", "HA_RSCTMP": f"{node}/run",
           "OCF_RESKEY_CRM_meta_interval": "10000" if action == "monitor" else "0"}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    started = time.monotonic()
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-ec",
                             'mount --bind "$1" /var/lib/nfs; shift; exec "$@"', "sh",
                             f"{node}/nfs", f"{AGENTS}/{name}", action], env=env, text=True,
                            capture_output=True)
    print(f"   {name} {action} -> exit {result.returncode} "
          f"({(time.monotonic() - started) * 1000:.0f} ms)")
    for line in result.stderr.splitlines():
        print(f"     | {line}")
    return result.returncode


def make_node(base, name):
    node = os.path.join(base, name)
    os.makedirs(f"{node}/nfs")
    os.makedirs(f"{node}/run")
    for f in ("etab", "rmtab"):
        open(f"{node}/nfs/{f}", "w").close()
    for d in ("sm", "sm.bak"):
        os.mkdir(f"{node}/nfs/{d}")
        shutil.chown(f"{node}/nfs/{d}", "statd")
    return node


def inside(agents):
    global AGENTS
    AGENTS = agents
    base = tempfile.mkdtemp(prefix="pyha-demo-")
    try:
        run_demo(base)
    finally:
        subprocess.run(["pkill", "-f", f"rpc.statd.*{base}"], check=False)
        shutil.rmtree(base, ignore_errors=True)


def run_demo(base):
    shared = f"{base}/srv/demo"
    os.makedirs(shared)
    node_a, node_b = make_node(base, "nodeA"), make_node(base, "nodeB")
    export = {"clientspec": "10.213.0.0/24", "directory": shared, "fsid": "7",
              "options": "rw,no_root_squash"}

    say("node A: start the export and monitor it")
    agent(node_a, "nfsexport", "start", **export)
    print("   etab:", open(f"{node_a}/nfs/etab").read().strip().split("(")[0])
    with open(f"{node_a}/nfs/rmtab", "a") as f:
        f.write(f"10.213.0.31:{shared}:0x00000001\n")  # what rpc.mountd writes on a mount
    agent(node_a, "nfsexport", "monitor", **export)
    print("   client list backed up in the export:", open(f"{shared}/.rmtab").read().strip())

    say("node A fails over: stop there, start on node B (whose rmtab is empty)")
    agent(node_a, "nfsexport", "stop", **export)
    agent(node_b, "nfsexport", "start", **export)
    print("   node B rmtab:", open(f"{node_b}/nfs/rmtab").read().strip())

    say("node B: rpc.statd knows a client that held locks; nfsnotify tells it we rebooted")
    with open("/etc/hosts", "a") as f:
        f.write(f"{VIP[0]} {VIP[1]}\n")  # a private /etc/hosts: see main()
    subprocess.run(["mount", "--bind", f"{node_b}/nfs", "/var/lib/nfs"], check=True)
    subprocess.run(["rpcbind", "-w"], check=True)
    log = open(f"{base}/statd.log", "w")
    statd = subprocess.Popen(["rpc.statd", "-F", "-d", "--no-notify", "-P", f"{node_b}/nfs"],
                             stdout=log, stderr=log)
    time.sleep(1)
    record = f"{node_b}/nfs/sm/127.0.0.2"
    with open(record, "w") as f:
        f.write(f"0100007f 000186b5 00000003 00000010 {'0' * 32} 127.0.0.2 localhost\n")
    shutil.chown(record, "statd")
    agent(node_b, "nfsnotify", "start", source_host=VIP[0])
    time.sleep(1)
    for line in open(f"{base}/statd.log"):
        if "Received SM_NOTIFY" in line:
            print("   client side:", line.strip())
    agent(node_b, "nfsnotify", "monitor", source_host=VIP[0])
    statd.terminate()
    agent(node_b, "nfsexport", "stop", **export)
    say("done")


def main():
    if "--inside" in sys.argv:
        return inside(sys.argv[-1])
    root = tempfile.mkdtemp(prefix="pyha-demo-ocf-")
    subprocess.run(["/usr/bin/python3", "-m", "ocf_agents", "install", "--ocf-root", root],
                   env=dict(os.environ, PYTHONPATH=REPO), check=True, stdout=subprocess.DEVNULL)
    netns = f"pyha-demo-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        hosts = tempfile.NamedTemporaryFile("w", prefix="pyha-demo-hosts-", delete=False)
        hosts.write("127.0.0.1 localhost\n")
        hosts.close()
        script = (f"ip link set lo up; ip addr add {VIP[0]}/32 dev lo; "
                  "mount -t tmpfs tmpfs /run; "
                  f"mount --bind {hosts.name} /etc/hosts; "
                  f'exec /usr/bin/python3 "$0" --inside "$1"')
        return subprocess.run(["ip", "netns", "exec", netns, "unshare", "-m", "--propagation",
                               "private", "sh", "-ec", script, os.path.abspath(__file__),
                               f"{root}/resource.d/pyha"]).returncode
    finally:
        subprocess.run(["ip", "netns", "pids", netns], capture_output=True)
        for pid in subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                  text=True).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "del", netns], check=False)
        os.unlink(hosts.name)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
