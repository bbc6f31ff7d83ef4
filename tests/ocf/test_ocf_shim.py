"""The OCF shim: dispatch, exit codes, parameters, meta-data, logging, tracing,
commands, attributes and the installer."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocf_agents import ocf
from ocf_agents.ocf import Action, Agent, OCFError, Parameter
from rigs.agents import REPO, exit_reason

AGENT_NAMES = ("nfsserver", "nfsexport", "nfsnotify", "drbd", "mfsmaster")


def toy_agent(handler=None, validate=None):
    return Agent(
        name="toy", shortdesc="A toy", longdesc="A toy agent for <tests> & checks.",
        parameters=[Parameter("count", "integer", default=3, shortdesc="count"),
                    Parameter("flag", "boolean", default=False, shortdesc="flag"),
                    Parameter("delay", "time", default="2s", shortdesc="delay"),
                    Parameter("name", required=True, shortdesc="name")],
        actions=[Action("start", timeout=20, handler=handler or (lambda res: 0)),
                 Action("stop", timeout=20, handler=lambda res: 0),
                 Action("monitor", timeout=20, interval=10, handler=handler or (lambda r: 7))],
        validate=validate)


def run_toy(monkeypatch, capsys, args, agent=None, **env):
    for key in [k for k in os.environ if k.startswith(("OCF_", "HA_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = (agent or toy_agent()).run(args)
    return code, capsys.readouterr()


def test_unknown_action_is_unimplemented_and_prints_usage(monkeypatch, capsys):
    code, out = run_toy(monkeypatch, capsys, ["frobnicate"])
    assert code == ocf.ERR_UNIMPLEMENTED
    assert "usage: toy" in out.err


def test_action_comes_from_ocf_action_variable_when_argv_is_empty(monkeypatch, capsys):
    code, out = run_toy(monkeypatch, capsys, [], __OCF_ACTION="meta-data")
    assert code == 0 and "<resource-agent" in out.out


def test_methods_lists_the_actions(monkeypatch, capsys):
    code, out = run_toy(monkeypatch, capsys, ["methods"])
    assert code == 0
    assert out.out.split() == ["start", "stop", "monitor", "meta-data", "validate-all"]


def test_unexpected_exception_is_generic_error_with_reason_and_no_traceback(monkeypatch, capsys):
    def broken(res):
        raise KeyError("boom")
    code, out = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=broken),
                        OCF_RESKEY_name="x")
    assert code == ocf.ERR_GENERIC
    assert "ocf-exit-reason:start failed unexpectedly: KeyError" in out.err
    assert "Traceback" not in out.out + out.err


def test_ocf_error_sets_code_and_exit_reason(monkeypatch, capsys):
    def refuse(res):
        raise OCFError(ocf.ERR_CONFIGURED, "no\nnewlines in reasons")
    code, out = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=refuse),
                        OCF_RESKEY_name="x")
    assert code == 6
    assert "ocf-exit-reason:no newlines in reasons\n" in out.err


def test_exit_reason_prefix_can_be_overridden(monkeypatch, capsys):
    def refuse(res):
        raise OCFError(1, "why")
    _, out = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=refuse),
                     OCF_RESKEY_name="x", OCF_EXIT_REASON_PREFIX="reason=")
    assert "reason=why" in out.err


@pytest.mark.parametrize("env,words", [
    ({}, "parameter name: is required"),
    ({"OCF_RESKEY_name": "x", "OCF_RESKEY_count": "3x"}, "parameter count: '3x' is not an integer"),
    ({"OCF_RESKEY_name": "x", "OCF_RESKEY_flag": "perhaps"}, "parameter flag"),
    ({"OCF_RESKEY_name": "x", "OCF_RESKEY_delay": "soon"}, "parameter delay"),
])
def test_bad_parameter_values_are_not_configured_and_named(monkeypatch, capsys, env, words):
    code, out = run_toy(monkeypatch, capsys, ["start"], **env)
    assert code == ocf.ERR_CONFIGURED
    assert words in exit_reason(out)


def test_stop_with_unusable_parameters_succeeds_because_nothing_started(monkeypatch, capsys):
    code, out = run_toy(monkeypatch, capsys, ["stop"], OCF_RESKEY_count="x")
    assert code == 0
    assert "ocf-exit-reason" not in out.err


def test_typed_values_reach_the_handler(monkeypatch, capsys):
    seen = {}

    def start(res):
        seen.update(vars(res.params))
    run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start),
            OCF_RESKEY_name="x", OCF_RESKEY_flag="yes", OCF_RESKEY_delay="1min",
            OCF_RESKEY_count="")
    assert seen == {"count": 3, "flag": True, "delay": 60.0, "name": "x"}


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("2min", 120),
                                          ("500ms", 0.5), ("1h", 3600), ("3m", 180)])
def test_time_values_follow_pacemaker_units(text, seconds):
    assert ocf.parse_time(text) == seconds


def test_pacemaker_environment(monkeypatch, capsys):
    seen = {}

    def monitor(res):
        seen.update(probe=res.is_probe, timeout=res.timeout, clone=res.is_clone,
                    promotable=res.is_promotable, promoted=res.notify_unames("promoted"),
                    node=res.node_name, instance=res.instance_without_clone_suffix,
                    level=res.check_level)
        return 0
    run_toy(monkeypatch, capsys, ["monitor"], agent=toy_agent(handler=monitor),
            OCF_RESKEY_name="x", OCF_RESKEY_CRM_meta_interval="0",
            OCF_RESKEY_CRM_meta_timeout="15000", OCF_RESKEY_CRM_meta_clone_max="2",
            OCF_RESKEY_CRM_meta_promotable="true",
            OCF_RESKEY_CRM_meta_notify_master_uname="node1 node2",
            OCF_RESKEY_CRM_meta_on_node="node7", OCF_RESOURCE_INSTANCE="p_drbd:1",
            OCF_CHECK_LEVEL="10")
    assert seen == {"probe": True, "timeout": 15.0, "clone": True, "promotable": True,
                    "promoted": ["node1", "node2"], "node": "node7", "instance": "p_drbd",
                    "level": 10}


# --- meta-data ------------------------------------------------------------------
def installed_agent_modules():
    import importlib
    return [importlib.import_module(f"ocf_agents.{name}") for name in AGENT_NAMES
            if importlib.util.find_spec(f"ocf_agents.{name}")]


@pytest.mark.parametrize("module", installed_agent_modules(), ids=lambda m: m.__name__)
def test_metadata_is_valid_against_the_dtd_and_the_relaxng_schema(module, tmp_path):
    xml = module.AGENT.metadata_xml()
    dtd = subprocess.run(["xmllint", "--noout", "--valid", "-"], input=xml, text=True,
                         cwd="/usr/share/resource-agents", capture_output=True)
    assert dtd.returncode == 0, dtd.stderr
    path = tmp_path / "meta.xml"
    path.write_text(xml)
    rng = subprocess.run(["xmllint", "--noout", "--relaxng",
                          "/usr/share/resource-agents/metadata.rng", str(path)],
                         capture_output=True, text=True)
    assert rng.returncode == 0, rng.stderr


@pytest.mark.parametrize("module", installed_agent_modules(), ids=lambda m: m.__name__)
def test_committed_metadata_equals_the_generated_xml(module):
    name = module.AGENT.name
    committed = (REPO / "metadata" / f"{name}.xml").read_text()
    assert committed == module.AGENT.metadata_xml(), \
        f"regenerate: PYTHONPATH=. python3 -m ocf_agents metadata --write metadata {name}"


def test_toy_metadata_escapes_text_and_declares_time_as_string():
    xml = toy_agent().metadata_xml()
    assert "for &lt;tests&gt; &amp; checks" in xml
    assert '<content type="string" default="2s"/>' in xml
    assert '<action name="monitor" timeout="20s" interval="10s"/>' in xml


# --- logging and tracing --------------------------------------------------------------
def test_logfile_gets_tagged_lines_and_debug_only_with_ha_debug(monkeypatch, capsys, tmp_path):
    def start(res):
        res.log.debug("hidden detail")
        res.log.info("visible news")
    logfile, debuglog = tmp_path / "ha.log", tmp_path / "debug.log"
    run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start), OCF_RESKEY_name="x",
            HA_LOGFILE=str(logfile), HA_DEBUGLOG=str(debuglog), HA_debug="0",
            OCF_RESOURCE_INSTANCE="toy1")
    text = logfile.read_text()
    assert "toy(toy1)[" in text and "INFO: visible news" in text
    assert "hidden detail" not in text + debuglog.read_text()
    run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start), OCF_RESKEY_name="x",
            HA_LOGFILE=str(logfile), HA_DEBUGLOG=str(debuglog), HA_debug="1")
    assert "DEBUG: hidden detail" in debuglog.read_text()
    assert "hidden detail" not in logfile.read_text()


def test_syslog_facility_without_dev_log_does_not_crash(monkeypatch, capsys):
    def start(res):
        res.log.warning("to syslog")
    code, _ = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start),
                      OCF_RESKEY_name="x", HA_LOGFACILITY="daemon")
    assert code == 0


def test_trace_records_commands_exit_codes_and_durations(monkeypatch, capsys, tmp_path):
    def start(res):
        res.run(["true"])
        res.run(["false"], quiet=True)
    run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start), OCF_RESKEY_name="x",
            OCF_TRACE_RA="1", HA_VARLIB=str(tmp_path), OCF_RESOURCE_INSTANCE="t1",
            OCF_RESOURCE_TYPE="toy")
    traces = list((tmp_path / "trace_ra" / "toy").glob("t1.start.*"))
    assert len(traces) == 1
    text = traces[0].read_text()
    assert "run ['true'] -> rc=0 in" in text and "run ['false'] -> rc=1 in" in text
    assert "exit 0 (OCF_SUCCESS)" in text


# --- commands ---------------------------------------------------------------------------
def test_run_command_captures_output_and_exit_code():
    result = ocf.run_command(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert (result.rc, result.out, result.err) == (3, "out\n", "err\n")


def test_run_command_never_interprets_a_shell_string(tmp_path):
    marker = tmp_path / "injected"
    result = ocf.run_command(["echo", f"; touch {marker}"], timeout=5)
    assert result.out == f"; touch {marker}\n"
    assert not marker.exists()


def test_run_command_kills_a_hung_command_and_its_children_at_the_timeout():
    started = time.monotonic()
    result = ocf.run_command(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert result.timed_out and result.rc is None
    assert time.monotonic() - started < 5


def test_run_command_reports_a_missing_program():
    result = ocf.run_command(["pyha-no-such-program"], timeout=5)
    assert result.missing and result.rc == 127


def test_missing_program_through_resource_run_is_not_installed(monkeypatch, capsys):
    def start(res):
        res.run(["pyha-no-such-program"])
    code, out = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start),
                        OCF_RESKEY_name="x")
    assert code == ocf.ERR_INSTALLED
    assert "pyha-no-such-program is not installed" in exit_reason(out)


def test_begun_commands_run_while_the_agent_goes_on(monkeypatch, capsys):
    """begin(): two commands of 1 s each, started one after the other, finish together
    (one after the other would take 2 s); result() is what run() returns, once."""
    seen = {}

    def start(res):
        started = time.monotonic()
        first = res.begin(["sh", "-c", "sleep 1; echo one"])
        second = res.begin(["sh", "-c", "sleep 1; echo two; exit 3"], quiet=True)
        seen["begun in"] = time.monotonic() - started
        seen["results"] = (first.result().out, second.result().out, second.result().rc)
        seen["both in"] = time.monotonic() - started
        assert first.result() is first.result()
        return 0
    code, _ = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start),
                      OCF_RESKEY_name="x")
    assert code == 0
    assert seen["results"] == ("one\n", "two\n", 3)
    assert seen["begun in"] < 0.9 and seen["both in"] < 1.9


def test_a_begun_missing_program_is_not_installed_when_its_result_is_asked(monkeypatch,
                                                                          capsys):
    def start(res):
        pending = res.begin(["pyha-no-such-program"])
        pending.result()
    code, out = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start),
                        OCF_RESKEY_name="x")
    assert code == ocf.ERR_INSTALLED
    assert "pyha-no-such-program is not installed" in exit_reason(out)


def test_action_timeout_bounds_commands(monkeypatch, capsys):
    def start(res):
        result = res.run(["sleep", "30"])
        return 1 if result.timed_out else 0
    started = time.monotonic()
    code, _ = run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start),
                      OCF_RESKEY_name="x", OCF_RESKEY_CRM_meta_timeout="2000")
    assert code == 1
    assert time.monotonic() - started < 4


# --- attributes, state, locks ----------------------------------------------------------
def test_promotion_score_goes_through_crm_attribute(monkeypatch, capsys, tmp_path):
    log = tmp_path / "calls"
    fake = tmp_path / "crm_attribute"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)

    def start(res):
        res.set_promotion_score(1000)
        res.set_promotion_score(None)
    run_toy(monkeypatch, capsys, ["start"], agent=toy_agent(handler=start), OCF_RESKEY_name="x",
            PATH=f"{tmp_path}:{os.environ['PATH']}", OCF_RESOURCE_INSTANCE="p_drbd:0",
            OCF_RESKEY_CRM_meta_on_node="node1")
    calls = log.read_text().splitlines()
    assert calls == [
        "--quiet --lifetime reboot --name master-p_drbd --node node1 --update 1000",
        "--quiet --lifetime reboot --name master-p_drbd --node node1 --delete"]


def test_lock_is_exclusive_and_times_out(tmp_path):
    path = str(tmp_path / "lock")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl,os,time,sys;fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT);"
                               "fcntl.lockf(fd,fcntl.LOCK_EX);print('held',flush=True);time.sleep(30)",
                               path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OCFError, match="timed out waiting for the lock"):
            with ocf.FileLock(path, 0.3):
                pass
    finally:
        holder.kill()
        holder.wait()
    with ocf.FileLock(path, 1):
        pass


def test_atomic_write_replaces_a_planted_symlink_without_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "file"
    link.symlink_to(victim)
    ocf.write_file_atomically(str(link), "new", 0o600)
    assert victim.read_text() == "keep"
    assert link.read_text() == "new" and not link.is_symlink()
    assert link.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()].count("file") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- installer -------------------------------------------------------------------------------
def test_install_and_uninstall_wrappers(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(["/usr/bin/python3", "-m", "ocf_agents", "install", "--destdir", str(tmp_path),
                    "--ocf-root", "/usr/lib/ocf"], env=env, check=True, capture_output=True)
    provider = tmp_path / "usr/lib/ocf/resource.d/pyha"
    wrapper = provider / "nfsexport"
    assert os.access(wrapper, os.X_OK)
    assert wrapper.read_text().startswith("#!/usr/bin/python3 -IS\n")
    # The wrapper finds the package without PYTHONPATH.
    meta = subprocess.run([str(wrapper), "meta-data"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert meta.returncode == 0 and 'resource-agent name="nfsexport"' in meta.stdout
    foreign = provider / "mfsmaster"
    if not foreign.exists():
        foreign.write_text("#!/bin/sh\n")
    else:
        foreign.write_text("#!/bin/sh\n# someone else's\n")
    subprocess.run(["/usr/bin/python3", "-m", "ocf_agents", "uninstall", "--destdir",
                    str(tmp_path)], env=env, check=True, capture_output=True)
    assert not wrapper.exists()
    assert foreign.exists()


def test_monitor_imports_nothing_heavy(agents_dir, tmp_path):
    """Start-up cost: a monitor must not pull in subprocess, re, logging or json
    (each costs milliseconds on every monitor, forever)."""
    heavy = {"subprocess", "re", "logging", "json", "socket", "tempfile", "shutil"}
    env = {"PATH": "/usr/bin:/bin", "HA_RSCTMP": str(tmp_path), "OCF_RESKEY_clientspec": "*",
           "OCF_RESKEY_directory": str(tmp_path), "OCF_RESKEY_CRM_meta_interval": "10000"}
    for name in ("nfsexport", "nfsnotify"):
        result = subprocess.run(["/usr/bin/python3", "-IS", "-X", "importtime",
                                 str(agents_dir / name), "monitor"],
                                capture_output=True, text=True, env=env)
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert result.returncode == 7, result.stderr
        assert heavy & imported == set(), name


def test_pip_install_then_install_wrappers_that_point_at_site_packages(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "-q", "--no-deps",
                            "--no-build-isolation", "--target", str(target), str(REPO)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    assert (target / "ocf_agents" / "nfsexport.py").exists()
    subprocess.run(["/usr/bin/python3", "-m", "ocf_agents", "install", "--ocf-root",
                    str(tmp_path / "ocf")], env={**os.environ, "PYTHONPATH": str(target)},
                   check=True, capture_output=True, cwd=tmp_path)
    wrapper = (tmp_path / "ocf/resource.d/pyha/nfsexport").read_text()
    assert f"sys.path.insert(0, {str(target)!r})" in wrapper


def test_pacemaker_tools_list_and_describe_the_installed_agents():
    """crm_resource and pcs see the agents in the standard OCF root (a private
    tmpfs over resource.d/pyha, so the host's installation is untouched)."""
    provider = Path("/usr/lib/ocf/resource.d/pyha")
    provider.mkdir(parents=True, exist_ok=True)
    script = (f"mount -t tmpfs tmpfs {provider}\n"
              f"PYTHONPATH={REPO} /usr/bin/python3 -m ocf_agents install >/dev/null\n"
              "echo '--list'; crm_resource --list-agents ocf:pyha\n"
              "echo '--show'; crm_resource --show-metadata ocf:pyha:nfsexport | head -3\n"
              "echo '--pcs'; pcs resource describe ocf:pyha:nfsnotify\n")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-ec", script],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("--show")[0].split()
    assert "nfsexport" in listed and "nfsnotify" in listed
    assert '<resource-agent name="nfsexport"' in result.stdout
    assert "ocf:pyha:nfsnotify - Sends NFSv3 reboot notifications" in result.stdout
    assert "source_host:" in result.stdout


def test_exit_reasons_are_bounded_and_keep_their_start_and_end(monkeypatch, capsys):
    # issue 11: a 100,000-character value gave a 100,059-character exit reason
    def handler(res):
        raise OCFError(1, "cannot frobnicate " + "y" * 100000 + " because the disk is full")
    code, out = run_toy(monkeypatch, capsys, ["start"], toy_agent(handler=handler),
                        OCF_RESKEY_name="n")
    reason = exit_reason(out)
    assert code == 1
    assert len(reason) <= ocf.EXIT_REASON_MAX
    assert reason.startswith("cannot frobnicate yyy")
    assert reason.endswith("yyy because the disk is full")
    assert "characters cut" in reason


def test_a_huge_parameter_value_is_shown_shortened_with_its_length(monkeypatch, capsys):
    code, out = run_toy(monkeypatch, capsys, ["validate-all"], OCF_RESKEY_name="n",
                        OCF_RESKEY_count="9" * 99999 + "x")
    reason = exit_reason(out)
    assert code == 6
    assert reason == ("parameter count: '" + "9" * ocf.SHOWN_MAX + "'... (100000 characters) "
                      "is not an integer")


@pytest.mark.parametrize("script,expected", [
    ("echo 4711", "4711"),                                       # set
    ("echo 'Error performing operation: No such device or address' >&2; exit 105", None),
    ("exit 6", None),                                            # not set (Pacemaker 1.1)
])
def test_an_attribute_query_tells_a_value_from_not_set(monkeypatch, tmp_path, script, expected):
    fake = tmp_path / "crm_attribute"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    res = ocf.Resource(toy_agent(), "start")
    assert res.cluster_attribute("x") == expected


@pytest.mark.parametrize("script", [
    "echo 'Could not connect to the CIB: Transport endpoint is not connected' >&2; exit 102",
    "exit 1"])
def test_an_attribute_that_cannot_be_read_is_not_taken_for_not_set(monkeypatch, tmp_path, script):
    """A CIB that does not answer raised nothing and read as "not set": mfsmaster's start
    then served stale metadata (issue 13.2); the shim now says which it is."""
    fake = tmp_path / "crm_attribute"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    res = ocf.Resource(toy_agent(), "start")
    with pytest.raises(ocf.AttributeUnreadable, match="crm_attribute --query x: exited"):
        res.node_attribute("x")
