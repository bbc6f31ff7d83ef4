"""ocf:pyha:nfsserver where no kernel nfsd runs (this machine; its start, stop, grace and
scope on the real kernel are in tests/lab/vm/): the answers Pacemaker gets for a node
that cannot serve NFS and for broken parameters, and the in-process RPC client the
depth-20 monitor uses, against the real rpcbind and rpc.statd."""

import os
import subprocess

import pytest

from ocf_agents import nfsd, sunrpc
from rigs.agents import exit_reason

NO_NFSD = not nfsd.kernel_has_nfsd()


def run(agents_dir, tmp_path, action, **params):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": "nfs-server", "HA_RSCTMP": str(tmp_path / "rsctmp")}
    env.update({f"OCF_RESKEY_{k}": str(v) for k, v in params.items()})
    return subprocess.run([str(agents_dir / "nfsserver"), action], env=env, text=True,
                          capture_output=True, timeout=60)


@pytest.mark.skipif(not NO_NFSD, reason="this kernel has nfsd")
@pytest.mark.parametrize("action", ["start", "validate-all"])
def test_a_node_without_kernel_nfsd_answers_not_installed(agents_dir, tmp_path, action):
    result = run(agents_dir, tmp_path, action, shared_infodir="/srv/nfs/state")
    assert result.returncode == 5
    assert "has no nfsd module" in exit_reason(result)


def test_probe_and_stop_of_a_server_never_started_here(agents_dir, tmp_path):
    assert run(agents_dir, tmp_path, "monitor", shared_infodir="/srv/x").returncode == 7
    assert run(agents_dir, tmp_path, "stop", shared_infodir="/srv/x").returncode == 0


@pytest.mark.parametrize("param, value, words", [
    ("grace_time", "5", "nfsd refuses less than 10 s"),
    ("lease_time", "2h", "outside 10-3600 s"),
    ("shared_infodir", "srv/state", "not an absolute path"),
    ("shared_infodir", "/var/lib/nfs/x", "cannot hold the state it would be mounted over"),
    ("server_scope", "a b", "not a host name"),
    ("threads", "0", "between 1 and 8192"),
    ("service_manager", "init", "auto, systemd or direct"),
    ("check_address", "vip", "not an IP address"),
])
def test_a_broken_parameter_is_refused_with_its_reason(agents_dir, tmp_path, param, value,
                                                       words):
    result = run(agents_dir, tmp_path, "validate-all", **{param: value})
    assert result.returncode == 6
    assert words in exit_reason(result) and param in exit_reason(result)


def test_state_on_the_nodes_own_root_filesystem_is_refused(monkeypatch, tmp_path):
    """A shared_infodir whose filesystem is the root's: the shared disk is not mounted
    (or the state would die with the node). Refused before anything is stopped or mounted."""
    from ocf_agents import nfsserver, ocf
    calls = []
    monkeypatch.setattr(ocf, "start_command", lambda argv, **kw: calls.append(argv))
    monkeypatch.setattr(nfsd, "ROOT", str(tmp_path))
    monkeypatch.setattr(nfsd, "kernel_has_nfsd", lambda: True)
    monkeypatch.setattr(nfsd, "pids_named", lambda *names: [])
    monkeypatch.setattr(nfsd, "THREADS", str(tmp_path / "no-threads"))
    for key in [k for k in os.environ if k.startswith(("OCF_", "HA_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("OCF_RESOURCE_INSTANCE", "nfs-server")
    monkeypatch.setenv("HA_RSCTMP", str(tmp_path / "rsctmp"))
    monkeypatch.setenv("OCF_RESKEY_shared_infodir", str(tmp_path / "state"))
    assert nfsserver.AGENT.run(["start"]) == 1
    assert calls == []          # nothing stopped, mounted or started
    assert not (tmp_path / "state").exists()


def test_rpc_client_pings_a_real_rpc_service_found_through_rpcbind(statd):
    """The depth-20 monitor's NULL call, against the real rpc.statd (100024) registered
    with the real rpcbind, inside the sandbox's network namespace."""
    code = ("import sys\nsys.path.insert(0, sys.argv[1])\nfrom ocf_agents import sunrpc\n"
            "print(sunrpc.null_call('127.0.0.1', sunrpc.STATUS, 1))\n"
            "try:\n"
            "    sunrpc.null_call('127.0.0.1', sunrpc.NFS, 3)\n"
            "except sunrpc.RPCError as e:\n"
            "    print('refused:', e)\n"
            # a version the program lacks: an answer all the same, when asked so
            "try:\n"
            "    sunrpc.null_call('127.0.0.1', sunrpc.PORTMAPPER, 99, port=111)\n"
            "except sunrpc.RPCError as e:\n"
            "    print('refused:', e)\n"
            "print(sunrpc.null_call('127.0.0.1', sunrpc.PORTMAPPER, 99, port=111,\n"
            "                       any_version=True))\n")
    repo = os.path.dirname(os.path.dirname(sunrpc.__file__))
    result = statd.inside(["/usr/bin/python3", "-c", code, repo], text=True,
                          capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    port, refused, mismatch, answered = result.stdout.splitlines()
    assert int(port) > 0
    assert refused == "refused: nfsd version 3 is not registered with rpcbind"
    assert mismatch == "refused: version mismatch" and answered == "111"


def test_rpc_reply_decoding_refuses_what_is_not_a_successful_reply():
    xid = 7
    ok = (xid.to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(4) + bytes(8) + bytes(4)
          + b"result")
    assert sunrpc.decode_reply(ok, xid) == b"result"
    with pytest.raises(sunrpc.RPCError, match="not a reply to this call"):
        sunrpc.decode_reply(ok, xid + 1)
    mismatch = ok[:20] + (2).to_bytes(4, "big")
    with pytest.raises(sunrpc.RPCError, match="version mismatch"):
        sunrpc.decode_reply(mismatch, xid)
    with pytest.raises(sunrpc.RPCError, match="too short"):
        sunrpc.decode_reply(b"\0" * 8, xid)
    with pytest.raises(sunrpc.RPCError, match="connection refused|Connection refused"):
        sunrpc.null_call("127.0.0.1", sunrpc.NFS, 3, port=1, timeout=2)
