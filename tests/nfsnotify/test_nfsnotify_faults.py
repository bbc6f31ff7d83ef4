"""ocf:pyha:nfsnotify under faults and concurrency, with the real rpc.statd and
sm-notify (rigs/nfs.py's StatdSandbox)."""

import os
import subprocess
import time

import pytest

from rigs.agents import exit_reason
from rigs.faults import hanging_tool, kill_all, kill_both_when_reached, masked, wait_for_file

pytestmark = pytest.mark.fault("nfsnotify")
SM_NOTIFY = "/usr/sbin/sm-notify"
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf"}


def env_for(statd, params, instance="notify1", path_first=None, **extra):
    env = dict(BASE_ENV, OCF_RESOURCE_INSTANCE=instance, HA_RSCTMP=str(statd.rsctmp))
    if path_first:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    env.update({f"OCF_RESKEY_{k}": str(v) for k, v in params.items()})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def inside(statd, argv):
    return ["nsenter", "-t", str(statd.pid), "-m", "-n", "--", *map(str, argv)]


def spawn(statd, action, env):
    return subprocess.Popen(inside(statd, [statd.agents_dir / "nfsnotify", action]), env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def count(names, name):
    return sum(1 for n in names if n == name)


def test_start_killed_between_two_addresses_then_start_again_notifies_all(statd_sandbox,
                                                                         tmp_path,
                                                                         record_property):
    statd = statd_sandbox
    clients = ["127.0.0.2", "127.0.0.3"]
    for client in clients:
        statd.add_client(client)
    params = {"source_host": "10.213.0.241,10.213.0.242"}
    hang = tmp_path / "hang"
    hang.mkdir()
    reached = tmp_path / "reached"
    hanging_tool(hang, "sm-notify", SM_NOTIFY, "-v 10.213.0.242", reached)
    agent = spawn(statd, "start", env_for(statd, params, path_first=hang))
    kill_both_when_reached(agent, reached)
    assert statd.agent("monitor", params, OCF_RESKEY_CRM_meta_interval=30000).returncode == 7
    result = statd.agent("start", params)
    assert result.returncode == 0, result.stderr
    names = statd.notifications(expect=2 * len(clients) + 2)
    lost = sum(max(0, len(clients) - count(names, vip)) for vip in ("nfs-vip1", "nfs-vip2"))
    record_property("data_lost", lost)
    assert lost == 0, names
    assert statd.agent("monitor", params, OCF_RESKEY_CRM_meta_interval=30000).returncode == 0


STUBBORN = """#!/bin/sh
# sm-notify that leaves a background retry behind which ignores SIGTERM
case " $* " in *" -P "*)
  ( trap 'echo $$ > {reached}' TERM; while :; do sleep 0.2; done ) >/dev/null 2>&1 </dev/null &
  exit 0 ;;
esac
exec {real} "$@"
"""


def test_stop_killed_while_waiting_for_a_stuck_sm_notify_then_stop_again(statd_sandbox,
                                                                        tmp_path):
    statd = statd_sandbox
    statd.add_client("127.0.0.2")
    params = {"source_host": "10.213.0.241"}
    stubborn = tmp_path / "stubborn"
    stubborn.mkdir()
    reached = tmp_path / "term-received"
    (stubborn / "sm-notify").write_text(STUBBORN.format(reached=reached, real=SM_NOTIFY))
    (stubborn / "sm-notify").chmod(0o755)
    start = statd.inside([str(statd.agents_dir / "nfsnotify"), "start"],
                         env=env_for(statd, params, path_first=stubborn), text=True,
                         capture_output=True, timeout=60)
    assert start.returncode == 0, start.stderr
    agent = spawn(statd, "stop", env_for(statd, params))
    try:
        wait_for_file(reached)
    finally:
        kill_all(agent.pid)
        agent.wait()
    started = time.monotonic()
    result = statd.agent("stop", params)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    # the stuck retry was killed (a zombie may linger: PID 1 here reaps nothing)
    left = statd.inside(["pgrep", "-x", "-r", "RSDT", "sm-notify"], capture_output=True,
                        text=True)
    assert left.stdout.strip() == "", result.stderr
    assert statd.agent("monitor", params, OCF_RESKEY_CRM_meta_interval=30000).returncode == 7
    assert statd.agent("start", params).returncode == 0


def test_missing_sm_notify_is_not_installed(statd_sandbox, not_a_program):
    statd = statd_sandbox
    params = {"source_host": "10.213.0.241"}
    for action, expected in (("start", 5), ("validate-all", 5), ("stop", 0)):
        argv = inside(statd, masked([statd.agents_dir / "nfsnotify", action], [SM_NOTIFY],
                                    not_a_program))
        result = subprocess.run(argv, env=env_for(statd, params), capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == expected, (action, result.stderr)
        if expected:
            assert "sm-notify is not installed" in exit_reason(result)


def test_a_hanging_sm_notify_ends_start_within_its_timeout(statd_sandbox, tmp_path):
    statd = statd_sandbox
    statd.add_client("127.0.0.2")
    hang = tmp_path / "hang"
    hang.mkdir()
    reached = tmp_path / "reached"
    hanging_tool(hang, "sm-notify", SM_NOTIFY, "-P", reached)
    params = {"source_host": "10.213.0.241"}
    started = time.monotonic()
    result = statd.inside([str(statd.agents_dir / "nfsnotify"), "start"],
                          env=env_for(statd, params, path_first=hang,
                                      OCF_RESKEY_CRM_meta_timeout=3000),
                          text=True, capture_output=True, timeout=30)
    elapsed = time.monotonic() - started
    kill_all(wait_for_file(reached))
    assert elapsed < 3.5, elapsed
    assert result.returncode == 1, result.stderr
    assert "timed out" in exit_reason(result)


def corrupt(path, how, victim):
    if os.path.lexists(path):
        os.unlink(path)
    if how == "garbage":
        path.write_bytes(b"\xff\x00pid\n" * 50)
    elif how == "empty":
        path.write_text("")
    elif how == "directory":
        path.mkdir()
        (path / "inside").write_text("x")
    elif how == "symlink":
        os.symlink(victim, path)
    elif how == "huge-pid":
        path.write_text("99999999999999999999\n")


@pytest.mark.parametrize("name", ["notify1.statd-pid", "statd-dir.lock"])
@pytest.mark.parametrize("how", ["garbage", "empty", "directory", "symlink", "huge-pid"])
def test_corrupted_state_files_are_recovered(statd_sandbox, tmp_path, name, how):
    statd = statd_sandbox
    statd.add_client("127.0.0.2")
    params = {"source_host": "10.213.0.241"}
    victim = tmp_path / "victim"
    victim.write_text("12345\n")
    state = statd.rsctmp / "nfsnotify"
    state.mkdir(parents=True, exist_ok=True)
    corrupt(state / name, how, victim)
    codes = []
    for action in ("monitor", "start", "monitor", "stop", "monitor"):
        result = statd.agent(action, params, OCF_RESKEY_CRM_meta_interval=30000)
        assert "unexpectedly" not in result.stderr and "Traceback" not in result.stderr, \
            (action, result.stderr)
        codes.append(result.returncode)
    # a pid that is not rpc.statd's reads as "statd was restarted": reported
    assert codes == [1 if how == "huge-pid" and name.endswith("pid") else 7, 0, 0, 0, 7]
    assert victim.read_text() == "12345\n"
    assert statd.notifications(expect=1) == ["nfs-vip1"]


def test_instances_starting_at_once_each_notify_every_client(statd_sandbox, record_property):
    statd = statd_sandbox
    vips = {"10.213.0.241": "nfs-vip1", "10.213.0.242": "nfs-vip2",
            "10.213.0.243": "nfs-vip3"}
    hosts = statd.base / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {n}\n" for ip, n in vips.items()))
    statd.inside(["ip", "addr", "add", "10.213.0.243/32", "dev", "lo"], check=True)
    clients = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    for client in clients:
        statd.add_client(client)
    agents = [spawn(statd, "start", env_for(statd, {"source_host": ip}, instance=f"notify{i}"))
              for i, ip in enumerate(vips, 1)]
    codes = [agent.wait(60) for agent in agents]
    names = statd.notifications(expect=len(clients) * len(vips))
    lost = sum(max(0, len(clients) - count(names, name)) for name in vips.values())
    record_property("data_lost", lost)
    assert codes == [0, 0, 0]
    assert lost == 0, sorted(names)
    for i, ip in enumerate(vips, 1):
        monitor = statd.agent("monitor", {"source_host": ip}, instance=f"notify{i}",
                              OCF_RESKEY_CRM_meta_interval=30000)
        assert monitor.returncode == 0
