"""NFS servers for the nfsexport and nfsnotify agents, on this machine, never touching
the host's /var/lib/nfs.

Node: one simulated NFS server node, a private copy of /var/lib/nfs bind-mounted over
the real path inside a throw-away mount namespace for each agent call (unshare -m), plus
its own HA_RSCTMP and a bin/ first on PATH.

StatdSandbox: a network namespace (only lo, so nothing can leave it) with a private
/var/lib/nfs, /run and /etc/hosts, where rpcbind and rpc.statd run in user space.
"Clients" are records in statd's sm/ directory for loopback addresses, which this same
statd answers: its debug log shows every SM_NOTIFY it received and under which server
name.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path


class Node:
    """One simulated NFS server node: private /var/lib/nfs, HA_RSCTMP, PATH."""

    def __init__(self, base, agents_dir, name):
        self.name = name
        self.base = Path(base) / name
        self.nfs = self.base / "nfs"
        self.rsctmp = self.base / "run"
        self.bin = self.base / "bin"
        self.agents_dir = agents_dir
        self.nfs.mkdir(parents=True)
        self.rsctmp.mkdir()
        self.bin.mkdir()
        for name in ("etab", "rmtab"):
            (self.nfs / name).write_text("")
            (self.nfs / name).chmod(0o644)
        for name in ("sm", "sm.bak"):
            (self.nfs / name).mkdir()
        self.extra_mounts = []  # (source, target) bind mounts inside the namespace
        self.prelude = ""  # more shell run inside the namespace before the agent

    def env(self, params, instance="export1", **extra):
        env = {
            "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": instance,
            "HA_RSCTMP": str(self.rsctmp),
        }
        env.update({f"OCF_RESKEY_{k}": str(v) for k, v in params.items()})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def command(self, argv):
        """argv wrapped to run with this node's /var/lib/nfs."""
        mounts = [(str(self.nfs), "/var/lib/nfs")] + self.extra_mounts
        script = "".join(f'mount --bind "${i * 2 + 1}" "${i * 2 + 2}"\n'
                         for i in range(len(mounts)))
        script += self.prelude + f"shift {len(mounts) * 2}\nexec \"$@\"\n"
        flat = [part for pair in mounts for part in pair]
        return ["unshare", "-m", "--propagation", "private", "sh", "-ec", script, "sh",
                *flat, *argv]

    def agent(self, agent, action, params, instance="export1", timeout=60, **extra):
        argv = self.command([str(self.agents_dir / agent), action])
        return subprocess.run(argv, env=self.env(params, instance, **extra), text=True,
                              capture_output=True, timeout=timeout)

    def read(self, name):
        return (self.nfs / name).read_text()

    def write(self, name, text):
        (self.nfs / name).write_text(text)


def etab_pairs(node):
    """{(directory, client)} of what node's export table holds."""
    pairs = set()
    for line in node.read("etab").splitlines():
        path, _, rest = line.partition("\t")
        pairs.add((path, rest.split("(")[0]))
    return pairs


VIPS = {"10.213.0.241": "nfs-vip1", "10.213.0.242": "nfs-vip2"}


class StatdSandbox:
    def __init__(self, base, agents_dir):
        self.base = base
        self.agents_dir = agents_dir
        self.netns = f"pyha-nfs-{uuid.uuid4().hex[:8]}"
        self.nfs = base / "nfs"
        self.nfs.mkdir()
        for name in ("sm", "sm.bak"):
            (self.nfs / name).mkdir()
            shutil.chown(self.nfs / name, "statd", "nogroup")
        (self.nfs / "state").write_bytes(b"")
        shutil.chown(self.nfs / "state", "statd")
        hosts = base / "hosts"
        hosts.write_text("127.0.0.1 localhost\n" +
                         "".join(f"{ip} {name}\n" for ip, name in VIPS.items()))
        self.rsctmp = base / "rsctmp"
        self.statd_log = base / "statd.log"
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        addrs = "".join(f"ip addr add {ip}/32 dev lo\n" for ip in VIPS)
        script = (f"ip link set lo up\n{addrs}"
                  f"mount --bind {self.nfs} /var/lib/nfs\n"
                  f"mount --bind {hosts} /etc/hosts\n"
                  "mount -t tmpfs tmpfs /run\n"
                  "echo ready\nexec sleep infinity\n")
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "-m", "--propagation", "private",
             "sh", "-ec", script], stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "ready"
        self.pid = self.holder.pid
        self.inside(["rpcbind", "-w"], check=True)
        self.start_statd()

    def inside(self, argv, **kwargs):
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-n", "--"] + argv,
                              **kwargs)

    def ocf_tester(self):
        """ocf-tester's whole sequence against agents_dir's nfsnotify, inside the sandbox
        (its rpc.statd, its /var/lib/nfs)."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HA_RSCTMP": str(self.rsctmp)}
        return self.inside(["ocf-tester", "-n", "notify", "-o", "source_host=10.213.0.241",
                            str(self.agents_dir / "nfsnotify")], env=env, text=True,
                           capture_output=True, timeout=120)

    def start_statd(self):
        log = open(self.statd_log, "a")
        self.statd = subprocess.Popen(
            ["nsenter", "-t", str(self.pid), "-m", "-n", "--", "rpc.statd", "-F", "-d",
             "--no-notify"], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while "Waiting for client connections" not in self.statd_log.read_text():
            assert time.monotonic() < deadline, self.statd_log.read_text()
            time.sleep(0.05)

    def stop_statd(self):
        self.statd.send_signal(signal.SIGTERM)
        self.statd.wait(10)

    def add_client(self, address):
        """A client that holds locks: statd's monitor record for it."""
        record = self.nfs / "sm" / address
        # addr prog vers proc priv(16 bytes hex) mon_name my_name, as statd writes it
        record.write_text(f"0100007f 000186b5 00000003 00000010 {'0' * 32} {address} "
                          "localhost\n")
        shutil.chown(record, "statd", "nogroup")

    def agent(self, action, params=None, instance="notify1", **extra):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": instance, "HA_RSCTMP": str(self.rsctmp)}
        env.update({f"OCF_RESKEY_{k}": str(v) for k, v in (params or {}).items()})
        env.update({k: str(v) for k, v in extra.items()})
        return self.inside([str(self.agents_dir / "nfsnotify"), action], env=env, text=True,
                           capture_output=True, timeout=60)

    def notifications(self, timeout=10, expect=0):
        """Server names in the SM_NOTIFY messages statd received so far."""
        deadline = time.monotonic() + timeout
        while True:
            names = [line.split("Received SM_NOTIFY from ", 1)[1].split(",")[0]
                     for line in self.statd_log.read_text().splitlines()
                     if "Received SM_NOTIFY from " in line]
            if len(names) >= expect or time.monotonic() > deadline:
                return names
            time.sleep(0.1)

    def close(self):
        for pid in [self.statd.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Everything started inside dies with the namespace's processes.
        self.inside(["sh", "-c", "pkill -9 -x rpcbind; pkill -9 -x sm-notify; true"])
        self.holder.kill()
        self.holder.wait()
        subprocess.run(["ip", "netns", "del", self.netns], check=False)
