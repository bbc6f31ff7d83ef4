"""ocf:pyha:nfsnotify with the real rpcbind, rpc.statd and sm-notify.

Each test gets a network namespace (only lo, so nothing can leave it) with a
private /var/lib/nfs, /run and /etc/hosts, where rpcbind and rpc.statd run in
user space. "Clients" are records in statd's sm/ directory for loopback
addresses, which this same statd answers: its debug log shows every
SM_NOTIFY it received and under which server name.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from support import exit_reason

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


@pytest.fixture
def statd(tmp_path, agents_dir):
    sandbox = StatdSandbox(tmp_path, agents_dir)
    yield sandbox
    sandbox.close()


def test_start_notifies_every_client_once_per_floating_address(statd):
    statd.add_client("127.0.0.2")
    statd.add_client("127.0.0.3")
    params = {"source_host": "10.213.0.241,10.213.0.242"}
    result = statd.agent("start", params)
    assert result.returncode == 0, result.stderr
    names = statd.notifications(expect=4)
    assert sorted(names) == ["nfs-vip1", "nfs-vip1", "nfs-vip2", "nfs-vip2"]
    # The snapshot the agent keeps still lists the clients for re-notification.
    backup = statd.nfs / "nfsnotify.bu.notify1" / "sm"
    assert sorted(os.listdir(backup)) == ["127.0.0.2", "127.0.0.3"]
    assert os.stat(backup).st_uid == os.stat(statd.nfs / "sm").st_uid
    assert statd.agent("monitor", params, OCF_RESKEY_CRM_meta_interval=30000).returncode == 0


def test_start_without_source_host_notifies_under_the_node_name(statd):
    statd.add_client("127.0.0.2")
    assert statd.agent("start").returncode == 0
    assert len(statd.notifications(expect=1)) == 1


def test_monitor_fails_after_statd_restart_and_restart_notifies_again(statd):
    statd.add_client("127.0.0.2")
    params = {"source_host": "10.213.0.241"}
    assert statd.agent("start", params).returncode == 0
    assert statd.notifications(expect=1) == ["nfs-vip1"]
    statd.stop_statd()
    stopped = statd.agent("monitor", params, OCF_RESKEY_CRM_meta_interval=30000)
    assert stopped.returncode == 1
    assert "rpc.statd is not running" in exit_reason(stopped)
    statd.start_statd()
    restarted = statd.agent("monitor", params, OCF_RESKEY_CRM_meta_interval=30000)
    assert restarted.returncode == 1
    assert "rpc.statd was restarted" in exit_reason(restarted)
    # Pacemaker's recovery: stop + start. sm/ was consumed by the first run,
    # the snapshot still knows the client.
    assert statd.agent("stop", params).returncode == 0
    assert statd.agent("start", params).returncode == 0
    assert statd.notifications(expect=2) == ["nfs-vip1", "nfs-vip1"]


def test_start_without_statd_fails_with_a_clear_reason(statd):
    statd.stop_statd()
    result = statd.agent("start", {"source_host": "10.213.0.241"})
    assert result.returncode == 1
    assert "rpc.statd is not running" in exit_reason(result)
    assert statd.agent("monitor", {}, OCF_RESKEY_CRM_meta_interval=0).returncode == 7


def test_unresolvable_source_host_is_named_in_the_reason(statd):
    result = statd.agent("start", {"source_host": "10.213.0.243"})
    assert result.returncode == 1
    assert "10.213.0.243 does not resolve" in exit_reason(result)


@pytest.mark.parametrize("params,words", [
    ({"source_host": "vip;reboot"}, "source_host"),
    ({"source_host": "-d"}, "source_host"),
    ({"notify_args": "-d"}, "notify_args"),
    ({"notify_args": "-P /tmp"}, "notify_args"),
    ({"notify_args": "-m"}, "-m needs a number"),
    ({"statd_dir": "relative/dir"}, "statd_dir"),
])
def test_bad_parameters_are_refused_with_a_reason(statd, params, words):
    result = statd.agent("validate-all", params)
    assert result.returncode == 6
    assert words in exit_reason(result)


def test_stop_is_idempotent_and_monitor_then_reports_not_running(statd):
    statd.add_client("127.0.0.2")
    assert statd.agent("start").returncode == 0
    assert statd.agent("stop").returncode == 0
    assert statd.agent("stop").returncode == 0
    assert statd.agent("monitor", OCF_RESKEY_CRM_meta_interval=30000).returncode == 7


def test_ocf_tester_passes(statd, agents_dir):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HA_RSCTMP": str(statd.rsctmp)}
    result = statd.inside(["ocf-tester", "-n", "notify", "-o", "source_host=10.213.0.241",
                           str(agents_dir / "nfsnotify")], env=env, text=True,
                          capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout
