"""ocf:pyha:nfsnotify with the real rpcbind, rpc.statd and sm-notify.

Each test gets a network namespace (only lo, so nothing can leave it) with a
private /var/lib/nfs, /run and /etc/hosts, where rpcbind and rpc.statd run in
user space (the `statd` fixture: rigs/nfs.py's StatdSandbox). "Clients" are
records in statd's sm/ directory for loopback addresses, which this same statd
answers: its debug log shows every SM_NOTIFY it received and under which
server name.
"""

import os
import subprocess

import pytest

from rigs.agents import exit_reason


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
    # documented once, but sm-notify 2.6.2 has no -q: start would fail (issue 11, item 4)
    ({"notify_args": "-q"}, "'-q' is not allowed: use only -f, -n, -m MINUTES and -p PORT"),
    ({"notify_args": "-f -q -n"}, "'-q' is not allowed"),
    ({"statd_dir": "relative/dir"}, "statd_dir"),
    ({"statd_dir": "/" + "a" * 5000}, "(5001 characters) is longer than a path can be"),
    ({"source_host": "a..b"}, "'a..b' is not a host name: 253 characters at most"),
    ({"source_host": "a" * 64 + ".example"}, "labels 1-63"),
])
def test_bad_parameters_are_refused_with_a_reason(statd, params, words):
    result = statd.agent("validate-all", params)
    assert result.returncode == 6
    assert words in exit_reason(result)


def test_every_allowed_notify_arg_is_one_the_installed_sm_notify_accepts(tmp_path):
    from ocf_agents import nfsnotify
    missing = str(tmp_path / "missing")
    allowed = [[flag] for flag in sorted(nfsnotify._FLAG_OPTIONS)] + \
        [[option, "1"] for option in sorted(nfsnotify._VALUE_OPTIONS)]
    for args in allowed:
        assert nfsnotify.parse_notify_args(" ".join(args)) == args
        # A state directory that does not exist: sm-notify parses its options, then
        # stops at the directory without notifying anyone.
        result = subprocess.run(["sm-notify", *args, "-P", missing], text=True,
                                capture_output=True, timeout=10)
        assert "invalid option" not in result.stderr and "Failed to stat" in result.stderr, \
            (args, result.stderr)
    refused = subprocess.run(["sm-notify", "-q", "-P", missing], text=True,
                             capture_output=True, timeout=10)
    assert "invalid option -- 'q'" in refused.stderr


def test_start_with_allowed_notify_args_notifies(statd):
    statd.add_client("127.0.0.2")
    params = {"source_host": "10.213.0.241", "notify_args": "-n -m 1"}
    result = statd.agent("start", params)
    assert result.returncode == 0, result.stderr
    assert statd.notifications(expect=1) == ["nfs-vip1"]


def test_a_huge_source_host_is_refused_with_a_short_reason(statd):
    # issue 11: a 5,000-character source_host ended in "start failed unexpectedly:
    # UnicodeError" (the resolver refuses a name longer than DNS allows)
    for action in ("validate-all", "start"):
        result = statd.agent(action, {"source_host": "a" * 5000})
        assert result.returncode == 6, result.stderr
        reason = exit_reason(result)
        assert len(reason) <= 128, reason
        assert "'aaaa" in reason and "(5000 characters) is not a host name" in reason
        assert "unexpectedly" not in result.stderr and "Traceback" not in result.stderr


def test_stop_is_idempotent_and_monitor_then_reports_not_running(statd):
    statd.add_client("127.0.0.2")
    assert statd.agent("start").returncode == 0
    assert statd.agent("stop").returncode == 0
    assert statd.agent("stop").returncode == 0
    assert statd.agent("monitor", OCF_RESKEY_CRM_meta_interval=30000).returncode == 7


def test_ocf_tester_passes(statd):
    result = statd.ocf_tester()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout


def test_start_reports_which_clients_acknowledged(statd):
    statd.add_client("127.0.0.2")
    result = statd.agent("start", {"source_host": "10.213.0.241"})
    assert result.returncode == 0, result.stderr
    assert "1 of 1 clients acknowledged (127.0.0.2)" in result.stderr


def test_start_with_nobody_to_notify_says_so(statd):
    result = statd.agent("start", {"source_host": "10.213.0.241"})
    assert result.returncode == 0, result.stderr
    assert "nobody to notify" in result.stderr


def test_a_client_out_of_reach_is_named_and_left_to_sm_notify(statd):
    statd.add_client("127.0.0.2")
    statd.add_client("10.213.0.199")   # no route from the sandbox (only lo)
    result = statd.agent("start", {"source_host": "10.213.0.241", "notify_wait": "2"})
    assert result.returncode == 0, result.stderr
    assert "not reached yet as 10.213.0.241: 10.213.0.199" in result.stderr
    assert "1 of 2 clients acknowledged (127.0.0.2)" in result.stderr
    assert statd.agent("stop").returncode == 0
