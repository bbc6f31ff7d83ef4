"""Bad input for ocf:pyha:nfsserver: any value of any parameter, through validate-all, probe,
monitor, start and stop in-process with every command intercepted, gives a clean answer
(rigs/fuzz.py runs the campaign; here: a valid configuration and what the agent may run).
The node's NFS server is replaced by sandbox paths: the campaign never reaches the real
/var/lib/nfs, systemd or a daemon of this machine."""

import os

import pytest

from rigs import fuzz


def valid_configuration(sandbox, monkeypatch):
    from ocf_agents import nfsd, nfsserver
    threads = os.path.join(sandbox.root, "threads")
    with open(threads, "w") as f:
        f.write("0\n")
    monkeypatch.setattr(nfsd, "NFS_STATE_DIR", sandbox.nfs)
    monkeypatch.setattr(nfsd, "THREADS", threads)
    monkeypatch.setattr(nfsd, "SYSTEMD_RUNTIME", os.path.join(sandbox.root, "systemd"))
    monkeypatch.setattr(nfsserver, "DROP_IN", os.path.join(sandbox.root, "systemd", "x.d", "y"))
    monkeypatch.setattr(nfsd, "ROOT", sandbox.root + "/no-such-root")
    monkeypatch.setattr(nfsd, "kernel_has_nfsd", lambda: True)
    monkeypatch.setattr(nfsd, "pids_named", lambda *names: [])
    monkeypatch.setattr(nfsd, "systemd_runs", lambda: False)
    return {"shared_infodir": os.path.join(sandbox.export, "state")}



# the commands it may run, with the only options it may pass them
RULES = fuzz.Rules(valid_configuration, {
    "mount": {"--bind", "--rbind", "-t"}, "umount": {"-R"}, "modprobe": set(),
    "unshare": {"--uts"}, "nsenter": {"--uts"}, "rpcbind": {"-w"}, "rpc.statd": {"--no-notify"},
    "nfsdcld": set(), "rpc.mountd": set(), "rpc.nfsd": {"-G", "-L"}, "exportfs": {"-f"},
    "systemctl": set()})


@pytest.mark.parametrize("param", fuzz.parameters("nfsserver"))
def test_any_value_of_any_parameter_gives_a_clean_answer(param, monkeypatch, tmp_path_factory):
    fuzz.any_value_gives_a_clean_answer("nfsserver", RULES, param, monkeypatch, tmp_path_factory)


def test_a_systemctl_killed_at_the_deadline_names_the_timeout_to_raise():
    """Under emulation `systemctl start nfs-server` outlived ocf-tester's 20 s start (CI):
    the reason names the operation's timeout, not the second or so that was left of it.
    (A stand-in Resource: the deadline itself is the shim's, tested in tests/ocf.)"""
    from types import SimpleNamespace
    from ocf_agents import nfsserver
    from ocf_agents.ocf import OCFError

    class Killed:
        action, timeout = "start", 20.0

        def run(self, argv):
            return SimpleNamespace(rc=None, out="", err="systemctl: timed out after 1.7 s\n")
    with pytest.raises(OCFError) as raised:
        nfsserver.systemctl(Killed(), "start", "nfs-server.service")
    assert "did not finish within the start's timeout (20 s)" in raised.value.reason
    assert "1.7" not in raised.value.reason
