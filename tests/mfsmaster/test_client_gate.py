"""The client gate (mfsgate.py) on a real MooseFS: after a failover the clients reach the new
master only once every chunkserver of its metadata is back, so no read is answered "no
copies" (which mfsmount retries only after a fixed 10 s)."""
import json
import os
import signal
import socket
import time
from contextlib import contextmanager

import pytest

from ocf_agents.mfsgate import CLIENTS_HELD_S, GATE_CAP_S, gate_decision


@contextmanager
def chunkservers_frozen(lab):
    """SIGSTOP the lab's chunkservers (they cannot reconnect), SIGCONT on leaving."""
    procs = [p for name, p in lab.daemons.items() if name.startswith("chunkserver")]
    for proc in procs:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGCONT)


def gate_files(agent):
    """The gate's files in the agent's state directory (its other state files aside)."""
    directory = agent.state / "mfsmaster"
    return {p.name: p for p in directory.iterdir() if "client-gate" in p.name
            or "mfsmaster.cfg" in p.name} if directory.exists() else {}


def fail_over_with_chunkservers_frozen(lab, parts, agent):
    written = lab.write_files(parts["mnt"], 20)
    lab.kill_master(lab.root / "master")
    standby = lab.master_cfg("standby")
    with chunkservers_frozen(lab):
        code, err = agent("start", config=standby, metadata_sources=parts["metalogger"])
        assert code == 0, err
        assert "clients held out until the chunkservers are back" in err, err
        # the master runs and answers the agent (monitor), but no client gets in
        assert lab.master_info() is None
        assert agent("monitor", config=standby)[0] == 0
        assert "mfs.client-gate" in gate_files(agent)
    return standby, written


def test_clients_are_let_in_only_once_every_chunkserver_is_back(cluster, agent):
    lab, parts = cluster
    standby, written = fail_over_with_chunkservers_frozen(lab, parts, agent)
    thawed = time.monotonic()
    info = lab.wait_for(lab.master_info, "the client port open", timeout=CLIENTS_HELD_S + 5)
    assert info["chunkservers"] == 2        # both registered before any client came in
    files = gate_files(agent)
    assert "mfs.client-gate" not in files
    # the master now runs from the user's file: a later `mfsmaster reload` reads it
    assert files["mfs.mfsmaster.cfg"].is_symlink()
    assert os.readlink(files["mfs.mfsmaster.cfg"]) == str(standby)
    # every file reads back, without mfsmount's 10 s wait for a chunk "without copies"
    assert lab.checksums(parts["mnt"]) == written
    assert time.monotonic() - thawed < 10
    assert agent("monitor", config=standby)[0] == 0
    assert agent("stop", config=standby)[0] == 0
    assert gate_files(agent) == {}


def fail_over_with_recorded_connections(lab, parts, agent, local_address):
    """The old master's connections recorded by monitor (as in DATA_PATH on DRBD), moved
    to the standby's DATA_PATH with local_address as the address they reached (and so in
    the cluster's copy of the list)."""
    written = lab.write_files(parts["mnt"], 20)
    assert agent("monitor", config=lab.root / "master.cfg")[0] == 0
    recorded = (lab.root / "master" / "pyha-connections").read_text()
    assert " 9420 " in recorded     # the chunkservers' connections were there to record
    lab.kill_master(lab.root / "master")
    standby = lab.master_cfg("standby")
    moved = lab.root / "standby" / "pyha-connections"
    moved.write_text(recorded.replace(f"{lab.address} ", f"{local_address} "))
    cib = json.loads(agent.cib.read_text())
    shared = cib["crm_config//mfs-connections"]
    cib["crm_config//mfs-connections"] = shared.replace(f"{lab.address} ", f"{local_address} ")
    agent.cib.write_text(json.dumps(cib))
    return standby, written


def test_with_the_chunkservers_address_already_here_start_returns_with_them_back(
        cluster, agent):
    """SERVER_VIP's layout (pcs-examples/mfs.sh): the address the chunkservers reached is
    on this node before the master starts, so start itself tickles them and waits; it
    returns with every chunkserver registered and the client port open, and no opener is
    left to race the clients' address (which comes up after start)."""
    import threading
    lab, parts = cluster
    standby, written = fail_over_with_recorded_connections(lab, parts, agent, lab.address)
    with chunkservers_frozen(lab):
        procs = [p for name, p in lab.daemons.items() if name.startswith("chunkserver")]
        thaw = threading.Timer(2.0, lambda: [os.kill(p.pid, signal.SIGCONT) for p in procs])
        thaw.start()
        began = time.monotonic()
        code, err = agent("start", config=standby, metadata_sources=parts["metalogger"])
        took = time.monotonic() - began
        thaw.join()
    assert code == 0, err
    assert "after the master answered: all 2 chunkserver(s)" in err, err
    assert "clients held out" not in err, err
    info = lab.master_info()        # at once: start returned with the gate open
    assert info is not None and info["chunkservers"] == 2
    assert gate_files(agent)["mfs.mfsmaster.cfg"].is_symlink()
    assert "mfs.client-gate" not in gate_files(agent)
    assert 2.0 <= took < 2.0 + CLIENTS_HELD_S, err
    assert lab.checksums(parts["mnt"]) == written


def test_with_the_chunkservers_address_not_here_yet_an_opener_holds_the_clients(
        cluster, agent):
    """One floating address after the master: start cannot wait for chunkservers that
    cannot reach it yet, and leaves the clients to the opener."""
    lab, parts = cluster
    standby, written = fail_over_with_recorded_connections(lab, parts, agent, "10.213.0.201")
    with chunkservers_frozen(lab):
        began = time.monotonic()
        code, err = agent("start", config=standby, metadata_sources=parts["metalogger"])
        assert code == 0 and "clients held out until the chunkservers are back" in err, err
        assert time.monotonic() - began < 2.0 + CLIENTS_HELD_S
        assert lab.master_info() is None
    lab.wait_for(lab.master_info, "the client port open", timeout=CLIENTS_HELD_S + 5)
    assert lab.checksums(parts["mnt"]) == written


CONNECT = """
import socket, sys, time
began = time.monotonic()
try:
    socket.create_connection((sys.argv[1], 9421), timeout=float(sys.argv[2])).close()
    print("connected", round(time.monotonic() - began, 2))
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("waiting")
"""


def connect_to_client_port(lab, timeout):
    return lab.ns_run(["python3", "-c", CONNECT, lab.address, str(timeout)]).stdout.split()


def test_a_client_that_comes_while_held_waits_instead_of_being_refused(cluster, agent):
    """A refused mfsmount sleeps 2 s; while the opener holds the client port the kernel
    drops the client's SYN instead, and the SYN sent again 1 s later gets in once the gate
    is open."""
    lab, parts = cluster
    written = lab.write_files(parts["mnt"], 20)
    lab.kill_master(lab.root / "master")
    with chunkservers_frozen(lab):
        code, err = agent("start", config=lab.master_cfg("standby"),
                          metadata_sources=parts["metalogger"])
        assert code == 0 and "clients held out" in err, err
        assert connect_to_client_port(lab, 0.5) == ["waiting"]
    gate_opened = lab.wait_for(lab.master_info, "the client port open",
                               timeout=CLIENTS_HELD_S + 5)
    assert gate_opened["chunkservers"] == 2
    assert connect_to_client_port(lab, 2)[0] == "connected"
    assert lab.checksums(parts["mnt"]) == written


def test_monitor_lets_the_clients_in_when_the_opener_is_gone(cluster, agent):
    lab, parts = cluster
    standby, written = fail_over_with_chunkservers_frozen(lab, parts, agent)
    marker = gate_files(agent)["mfs.client-gate"]
    opener = int(marker.read_text().split()[1])
    os.kill(opener, signal.SIGKILL)
    code, err = agent("monitor", config=standby)
    assert code == 0 and "opener is gone: letting the clients in now" in err, err
    assert lab.master_info() is not None
    assert lab.checksums(parts["mnt"]) == written


def test_a_stop_while_clients_are_held_leaves_nothing_of_the_gate(cluster, agent):
    lab, parts = cluster
    standby, _ = fail_over_with_chunkservers_frozen(lab, parts, agent)
    assert agent("stop", config=standby)[0] == 0
    assert agent("monitor", config=standby)[0] == 7
    time.sleep(0.3)                     # the opener sees its marker gone and ends
    assert gate_files(agent) == {}


def test_with_hold_clients_false_the_clients_are_let_in_at_once(cluster, agent):
    lab, parts = cluster
    lab.kill_master(lab.root / "master")
    standby = lab.master_cfg("standby")
    with chunkservers_frozen(lab):
        code, err = agent("start", config=standby, metadata_sources=parts["metalogger"],
                          hold_clients="false")
        assert code == 0, err
        assert lab.master_info() is not None
        assert gate_files(agent) == {}


def test_a_new_filesystem_lets_its_clients_in_at_once(lab, agent):
    """No chunkserver in its metadata: nothing to wait for, nothing left behind."""
    cfg = lab.master_cfg("fresh")
    code, err = agent("start", config=cfg, create_filesystem="true")
    assert code == 0 and "clients let in at once" in err, err
    assert lab.master_info() is not None
    assert "mfs.client-gate" not in gate_files(agent)
    assert agent("stop", config=cfg)[0] == 0


def test_a_master_whose_gate_cannot_open_is_not_left_running(lab, agent):
    """Started, but its client port never opened (stand-in: the opening fails in the
    agent's own interpreter): start fails with the reason, the master is stopped, nothing
    of the gate is left, and a start without the fault serves the same filesystem."""
    from rigs.faults import in_process_fault
    cfg = lab.master_cfg("fresh")
    never = in_process_fault("mfsmaster", "start", (
        "from ocf_agents.mfsgate import ClientGate\n"
        "ClientGate.open = lambda self, cfg, pid, wait=2.0: 'injected: the port never opened'"))
    code, err = agent("start", config=cfg, create_filesystem="true", argv=never)
    assert code == 1 and "clients cannot reach the master: injected" in err, err
    assert not lab.master_pids(lab.root / "fresh")
    assert gate_files(agent) == {}
    assert agent("monitor", config=cfg)[0] == 7
    assert agent("start", config=cfg)[0] == 0
    assert lab.master_info() is not None


def test_an_opener_that_cannot_be_spawned_lets_the_clients_in_at_start(cluster, agent):
    """Stand-in fault: spawning the opener fails (EAGAIN) in the agent's interpreter.
    Clients are let in at once rather than held out with nobody to open the gate."""
    from rigs.faults import in_process_fault
    lab, parts = cluster
    written = lab.write_files(parts["mnt"], 5)
    lab.kill_master(lab.root / "master")
    standby = lab.master_cfg("standby")
    no_spawn = in_process_fault("mfsmaster", "start", (
        "import errno, ocf_agents.ocf as ocf\n"
        "def refuse(module, args): raise OSError(errno.EAGAIN, 'injected: no process')\n"
        "ocf.spawn_detached = refuse"))
    with chunkservers_frozen(lab):
        code, err = agent("start", config=standby, metadata_sources=parts["metalogger"],
                          argv=no_spawn)
        assert code == 0, err
        assert "could not start the gate's opener" in err, err
        assert lab.master_info() is not None
        assert "mfs.client-gate" not in gate_files(agent)
    assert lab.checksums(parts["mnt"]) == written


def test_a_client_address_not_on_this_node_fails_start_before_anything_changed(lab, agent):
    """MATOCL_LISTEN_HOST names an address this node does not have (the floating address
    ordered after the master): start refuses before creating or restoring anything."""
    cfg = lab.master_cfg("elsewhere", MATOCL_LISTEN_HOST="10.213.0.222")
    code, err = agent("start", config=cfg, create_filesystem="true")
    assert code == 1 and "10.213.0.222 is not an address of this node" in err, err
    assert os.listdir(lab.root / "elsewhere") == []
    assert gate_files(agent) == {}


@pytest.mark.parametrize("recorded_after", [0.4, None])
def test_an_opener_waits_for_start_to_record_it_before_it_may_open(
        tmp_path, monkeypatch, recorded_after):
    """The opener runs before start has written its pid into the marker: were it to open
    the gate then, start's write would bring the marker back over an open gate. It begins
    only once its pid is there (or, start never writing it, after 2 s)."""
    import threading
    from ocf_agents import mfsgate
    from ocf_agents.moosefs import MasterConfig
    user = tmp_path / "mfsmaster.cfg"
    user.write_text("DATA_PATH = /nonexistent\n")
    gate = mfsgate.ClientGate(str(tmp_path / "state"), "mfs", str(user))
    gate.close(MasterConfig(str(user), user.read_text()), user.read_text())
    port = gate.read_marker()[0]
    began = []
    monkeypatch.setattr(mfsgate, "hold_clients",
                        lambda *a, **k: began.append(time.monotonic()))
    if recorded_after is not None:
        timer = threading.Timer(recorded_after, gate.write_marker, (port, os.getpid()))
        timer.start()
    started = time.monotonic()
    assert mfsgate.main([str(user), gate.directory, "mfs", "/dev/null"]) == 0
    waited = began[0] - started
    if recorded_after is None:
        assert 1.9 < waited < 3
    else:
        timer.join()
        assert recorded_after <= waited < recorded_after + 0.5


@pytest.mark.parametrize("elapsed, since_first_back, connected, disconnected, opens", [
    (0.1, None, 0, 0, "all 0 chunkserver"),          # a new filesystem: nothing to wait for
    (0.1, 0.0, 3, 0, "all 3 chunkserver"),
    (2.0, None, 0, 2, None),                         # nobody back yet
    (3.0, CLIENTS_HELD_S - 0.1, 1, 1, None),         # one back, the other gets its time
    (8.0, CLIENTS_HELD_S, 1, 1, "still disconnected"),
    (GATE_CAP_S, None, 0, 2, "no chunkserver came back"),
    (GATE_CAP_S, 1.0, 1, 1, "still disconnected 20 s after the start"),
])
def test_the_gate_opens_when_every_chunkserver_is_back_or_waiting_is_pointless(
        elapsed, since_first_back, connected, disconnected, opens):
    reason = gate_decision(elapsed, since_first_back, connected, disconnected)
    assert (reason is None) if opens is None else (opens in reason)


def test_the_gates_port_is_free_and_on_loopback(tmp_path):
    """The configuration the master starts from is the user's with two lines more."""
    from ocf_agents.mfsgate import ClientGate
    from ocf_agents.moosefs import MasterConfig
    user = tmp_path / "mfsmaster.cfg"
    user.write_text("DATA_PATH = /var/lib/mfs\nMATOCL_LISTEN_PORT = 9421")
    cfg = MasterConfig(str(user), user.read_text())
    gate = ClientGate(str(tmp_path / "state"), "mfs", str(user))
    gate.close(cfg, user.read_text())
    started_from = MasterConfig(cfg.launch_path, open(cfg.launch_path).read())
    assert started_from.client_host == "127.0.0.1" == cfg.query_host
    assert started_from.client_port == cfg.query_port != 9421
    assert started_from.data_path == "/var/lib/mfs"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", cfg.query_port))
    assert gate.read_marker() == (cfg.query_port, 0)
    gate.discard()
    assert not os.listdir(tmp_path / "state")


def test_chunkservers_and_metaloggers_are_tickled_before_the_gate_opens(tmp_path, monkeypatch):
    """The opener's order, with the master's answers scripted: the previous master's
    chunkservers (9420) and metaloggers (9419) are tickled as soon as the address is here;
    the gate opens when the master lists none disconnected, not before."""
    from ocf_agents import mfsgate, moosefs, tickle
    from ocf_agents.mfsgate import ClientGate, hold_clients
    from ocf_agents.moosefs import MasterConfig, MasterInfo
    user = tmp_path / "mfsmaster.cfg"
    user.write_text("DATA_PATH = /var/lib/mfs\n")
    cfg = MasterConfig(str(user), user.read_text())
    gate = ClientGate(str(tmp_path / "state"), "mfs", str(user))
    gate.close(cfg, user.read_text())
    answers = iter([None, MasterInfo(5, 0, 0, 2), MasterInfo(5, 0, 1, 1),
                    MasterInfo(5, 0, 2, 0)])
    events = []
    monkeypatch.setattr(moosefs, "query_master",
                        lambda *a, **k: events.append("asked") or next(answers))
    monkeypatch.setattr(moosefs, "lock_holder", lambda path: 4242)
    monkeypatch.setattr(tickle, "address_is_local", lambda address: True)
    monkeypatch.setattr(tickle, "send_tickles",
                        lambda connections, **_: events.append(sorted(c[1] for c in connections)))
    connections = [("10.213.0.240", 9420, "10.213.0.251", 41000),
                   ("10.213.0.240", 9419, "10.213.0.252", 41001),
                   ("10.213.0.240", 9421, "10.213.0.253", 41002)]
    reason = hold_clients(gate, cfg, "/nonexistent", connections, sleep=lambda s: None)
    assert reason == "all 2 chunkserver(s) of the metadata connected"
    assert events == [[9419, 9420], "asked", "asked", "asked", "asked"]
    assert mfsgate.gate_decision(0, None, 2, 0) == reason
