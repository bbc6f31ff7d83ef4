"""The VM rig's pieces that need no VM: the initramfs archive, module ordering, the
kernel extraction's refusal, the guest agent's requests over the host channel, the
fence agent's option parsing and the first-boot seed.  (The VMs themselves are exercised by tests/lab/vm.)"""
import json
import socket
import stat
import threading

import pytest

from rigs.vm import channel, guest, kernel, machine, power


def test_cpio_archive_is_newc_with_aligned_entries_and_a_trailer():
    archive = kernel.Cpio()
    archive.dir("bin")
    archive.file("init", b"#!/bin/sh\n", 0o755)
    blob = archive.bytes()
    assert blob.startswith(b"070701")
    assert b"TRAILER!!!\0" in blob
    # each header starts on a 4-byte boundary
    offsets = [i for i in range(0, len(blob), 4) if blob.startswith(b"070701", i)]
    assert len(offsets) == 3
    init_header = blob[offsets[1]:offsets[1] + 110]
    mode = int(init_header[14:22], 16)
    assert stat.S_ISREG(mode) and mode & 0o777 == 0o755
    assert int(init_header[54:62], 16) == len(b"#!/bin/sh\n")


def test_modules_load_with_their_dependencies_first(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko\nkernel/net/9p/9pnet.ko:\n")
    order = kernel.load_order(tmp_path, ["ext4", "9pnet_virtio"])
    assert order.index("kernel/fs/jbd2/jbd2.ko") < order.index("kernel/fs/ext4/ext4.ko")
    assert order.index("kernel/net/9p/9pnet.ko") < order.index("kernel/net/9p/9pnet_virtio.ko")
    with pytest.raises(kernel.KernelError, match="not in this kernel"):
        kernel.load_order(tmp_path, ["drbd"])


def test_a_kernel_without_an_xz_payload_is_refused(tmp_path):
    fake = tmp_path / "vmlinuz"
    fake.write_bytes(b"MZ" + b"\0" * 1000)
    with pytest.raises(kernel.KernelError, match="no xz payload"):
        kernel.extract_vmlinux(fake, tmp_path / "vmlinux")


@pytest.fixture
def fake_guest(tmp_path):
    """The guest agent's request handling behind unix sockets like qemu's ports."""
    servers = []
    for i in range(2):
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(tmp_path / f"port{i}.sock"))
        srv.listen(4)
        servers.append(srv)

    def serve(srv):
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    conn.sendall(guest.handle(line))
    for srv in servers:
        threading.Thread(target=serve, args=(srv,), daemon=True).start()
    yield channel.Channel(tmp_path, 2)
    for srv in servers:
        srv.close()


def test_the_channel_runs_commands_and_moves_files_through_the_guest_agent(fake_guest, tmp_path):
    proc = fake_guest.run(["sh", "-c", "echo out; echo err >&2; exit 3"],
                          env={"PATH": "/usr/bin:/bin"})
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    assert fake_guest.run(["cat"], input="fed\n").stdout == "fed\n"
    assert fake_guest.run(["/no/such/program"]).returncode == 127
    with pytest.raises(channel.ChannelError, match="timed out after 1s"):
        fake_guest.run(["sleep", "30"], timeout=1)
    target = tmp_path / "file"
    fake_guest.write(target, "data\n", 0o600)
    assert target.read_text() == "data\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert fake_guest.read(target) == b"data\n"
    with pytest.raises(channel.ChannelError, match="No such file"):
        fake_guest.read(tmp_path / "missing")


def test_concurrent_callers_each_get_their_own_port_and_reply(fake_guest):
    results = {}

    def call(n):
        results[n] = fake_guest.run(["sh", "-c", f"sleep 0.2; echo {n}"]).stdout.strip()
    threads = [threading.Thread(target=call, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: str(n) for n in range(5)}


def test_a_malformed_request_gets_an_error_reply_not_a_dead_agent():
    reply = json.loads(guest.handle(b"{not json"))
    assert "error" in reply
    reply = json.loads(guest.handle(json.dumps({"op": "nope", "id": 7}).encode()))
    assert reply["id"] == 7 and "error" in reply


def test_fence_agent_reads_options_the_fence_agents_way():
    opts = power.parse_options([], ["action=off", "plug=node2", "ipaddr=10.213.0.254",
                                    "password=s3cret", "# comment"])
    assert opts == {"action": "off", "plug": "node2", "ipaddr": "10.213.0.254",
                    "password": "s3cret"}
    opts = power.parse_options(["-o", "status", "--plug=node1", "-p", "x"], [])
    assert opts == {"action": "status", "plug": "node1", "password": "x"}
    assert power.parse_options([], ["option=reboot", "port=node1"])["action"] == "reboot"


def test_fence_agent_fails_cleanly_when_the_switch_is_unreachable(capsys):
    rc = power.fence_main(["-o", "off", "-n", "node1", "-a", "127.0.0.1", "-u", "1"])
    assert rc == power.EC_ERROR
    assert "power switch unreachable" in capsys.readouterr().err
    assert power.fence_main(["-o", "metadata"]) == power.EC_OK
    assert '<resource-agent name="fence_pyha_qemu"' in capsys.readouterr().out


def test_power_switch_refuses_a_wrong_password_and_unknown_vms(tmp_path):
    (tmp_path / "power.secret").write_text("abc\n")
    switch = power.Switch(tmp_path)
    assert switch.handle("wrong off node1", "10.213.0.2").startswith("ERROR bad password")
    assert switch.handle("abc list", "10.213.0.2") == "OK "
    assert switch.handle("abc off node9", "10.213.0.2") == "ERROR node9 is not a lab VM"
    assert switch.handle("abc explode node1", "10.213.0.2").startswith("ERROR unknown action")
    assert not (tmp_path / "fence.log").exists()   # nothing was powered


def test_the_seed_masks_the_boot_units_and_generators_the_lab_vms_do_without(tmp_path):
    machine.VM._write_seed(tmp_path, "node1", "127.0.0.1 localhost\n", tmp_path / "lab")
    etc = tmp_path / "seed" / "etc" / "systemd"
    for unit in machine.MASKED:
        assert (etc / "system" / unit).is_symlink(), unit
        assert str((etc / "system" / unit).readlink()) == "/dev/null"
    for generator in machine.MASKED_GENERATORS:
        assert str((etc / "system-generators" / generator).readlink()) == "/dev/null"
    # what the lab's stacks need stays: the daemons' syslog, FUSE for MooseFS's client,
    # DRBD's module at boot, the NFS generators, the units the stacks start
    masked = set(machine.MASKED) | set(machine.MASKED_GENERATORS)
    for needed in ("systemd-journald.service", "systemd-journald-dev-log.socket",
                   "modprobe@fuse.service", "kmod-static-nodes.service",
                   "systemd-modules-load.service", "systemd-tmpfiles-setup.service",
                   "dbus.service", "rpcbind.socket", "rpc-statd.service",
                   "rpc-statd-notify.service", "run-rpc_pipefs.mount",
                   "nfs-server-generator", "rpc-pipefs-generator",
                   *machine.NOT_AT_BOOT):
        assert needed not in masked, needed
    # a second seed of the same VM (a lab made again) keeps them
    machine.VM._write_seed(tmp_path, "node1", "127.0.0.1 localhost\n", tmp_path / "lab")


def test_the_installed_fence_agent_answers_metadata_without_importing_the_lab(tmp_path):
    """pacemaker-fenced gives the metadata call 10 s; under emulation the lab's package,
    read through the guests' share, did not always load in time. The installed program
    answers it from its own text (here with a repository that does not exist), and passes
    every other action to fence_main."""
    import subprocess
    import sys
    from pathlib import Path
    nowhere = tmp_path / "agent-without-repo"
    power.install_fence_agent(nowhere, tmp_path / "no-such-repo")
    for argv, stdin in ((["-o", "metadata"], ""), ([], "action=metadata\n"),
                        ([], "option=metadata\nport=node1\n")):
        done = subprocess.run([sys.executable, "-IS", str(nowhere), *argv], input=stdin,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout == power.METADATA
    assert nowhere.read_text().startswith("#!/usr/bin/python3 -IS\n")
    real = tmp_path / "agent"
    power.install_fence_agent(real, Path(power.__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-IS", str(real)], input=(
        "action=off\nplug=node1\nipaddr=127.0.0.1\nipport=1\n"), capture_output=True,
        text=True, timeout=30)
    assert done.returncode == power.EC_ERROR and "power switch unreachable" in done.stderr
