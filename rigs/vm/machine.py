"""One lab VM: its disks, its seed, the qemu command line, power and readiness.

A VM's directory (LAB/NAME) holds everything of it: vm.json (the spec, so the power
switch in another process can start it again), state.img (the overlay's writable layer,
ext4: the guest keeps its state across power losses), data.img (a spare disk for DRBD),
the seed copied in at the first boot, the console log, qemu's pid file, the monitor
socket and the command ports.  Power loss is a SIGKILL of qemu; power on starts it again
with the same disks.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import HERE, net
from .channel import Channel, ChannelError

PORTS = 4
MARK = "pyha-vm-"   # qemu's -name and process name: how we recognise our own qemu


class VMError(RuntimeError):
    pass


# Units the host has enabled that a lab VM must not start at boot: the cluster stack
# and the NFS server are started by the lab and the agents; the rest is noise that costs
# seconds under emulation.
NOT_AT_BOOT = ("corosync.service", "pacemaker.service", "nfs-server.service")
MASKED = ("pcsd.service", "pcsd-ruby.service", "postgresql.service", "logd.service",
          "getty@tty1.service", "serial-getty@ttyS0.service", "console-getty.service", "e2scrub_reap.service",
          "e2scrub_all.timer", "apt-daily.timer", "apt-daily-upgrade.timer",
          "dpkg-db-backup.timer", "fstrim.timer", "man-db.timer", "nfs-blkmap.service",
          "systemd-timesyncd.service",
          # Boot-time work nothing in a lab VM uses (measured under TCG: a guest's boot
          # took ~55 s, these units ~40 s of its CPU; systemd-analyze blame):
          # - the persistent journal: nothing reads the journal of an earlier boot (the
          #   lab reads /var/log/{corosync,pacemaker} and the console); journald itself
          #   stays, it is the daemons' syslog (/dev/log);
          "systemd-journal-flush.service", "systemd-journald-audit.socket",
          # - logins: no one logs in (the lab's agent runs commands itself); logind
          #   was the last unit of the boot, utmp records boots for `who`/`last`;
          "systemd-logind.service", "systemd-update-utmp.service",
          "systemd-update-utmp-runlevel.service",
          # - the host's users are there already (its /etc/passwd), and its fstab is
          #   replaced by an empty one (the initramfs mounts the root);
          "systemd-sysusers.service", "systemd-remount-fs.service",
          # - pseudo-filesystems and modules of no lab daemon: no huge pages, POSIX
          #   message queues (libqb uses /dev/shm), debugfs, tracefs, configfs (no
          #   target or nvmet, no dlm), binfmt_misc, device-mapper, DRM, EFI, loop
          #   devices (DRBD is on a virtio disk).  modprobe@fuse, kmod-static-nodes,
          #   and modules-load (drbd.conf loads DRBD as on a real node) stay: MooseFS's
          #   client mounts through FUSE;
          "dev-hugepages.mount", "dev-mqueue.mount", "sys-kernel-debug.mount",
          "sys-kernel-tracing.mount", "sys-kernel-config.mount", "modprobe@configfs.service",
          "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
          "systemd-binfmt.service", "modprobe@dm_mod.service", "modprobe@drm.service",
          "modprobe@efi_pstore.service", "modprobe@loop.service",
          # - a cleanup of /tmp and /var/tmp a quarter of an hour into a test run.
          "systemd-tmpfiles-clean.timer")
# systemd's generators the lab VMs do without (masked in /etc/systemd/system-generators,
# systemd.generator(7)): they run at boot and at every `systemctl daemon-reload`, which
# ocf:pyha:nfsserver does when it starts the NFS server, ~1 s each under emulation.  The
# guests have no crypttab, veritytab, integritytab, GPT root, hibernation image, rc.local,
# system update, getty (the consoles are masked), postgresql (masked), fstab entries (it
# is empty) or kernel command line options of these generators; every /etc/init.d script
# of the host has a native unit, so the SysV generator has nothing to make.  The NFS
# generators (nfs-server-generator, rpc-pipefs-generator) stay.
MASKED_GENERATORS = (
    "systemd-sysv-generator", "systemd-cryptsetup-generator", "systemd-veritysetup-generator",
    "systemd-integritysetup-generator", "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator", "systemd-rc-local-generator",
    "systemd-system-update-generator", "systemd-run-generator", "systemd-debug-generator",
    "systemd-getty-generator", "systemd-fstab-generator", "postgresql-generator")

GUEST_UNIT = """[Unit]
Description=pyha lab command agent (virtio-serial)
DefaultDependencies=no
After=systemd-udevd.service local-fs.target
Wants=systemd-udevd.service

[Service]
ExecStart=/usr/bin/python3 -I -S {guest}
Restart=always
RestartSec=1
KillMode=process
"""


def detect_accel(kernel, log=print):
    """'kvm' when /dev/kvm really runs Debian's kernel, else 'tcg'.  Some hosts have a
    /dev/kvm that stops a stock kernel with "KVM internal error": boot a probe that
    powers off at once and see.  PYHA_VM_ACCEL=kvm|tcg skips the probe."""
    forced = os.environ.get("PYHA_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    cache = kernel.vmlinux.parent / "accel"
    if cache.exists():
        return cache.read_text().strip()
    accel = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256",
                "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
                "-kernel", str(kernel.vmlinux), "-initrd", str(kernel.initrd),
                "-append", "console=ttyS0 panic=-1 rdinit=/bin/busybox -- poweroff -f"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if proc.returncode == 0 and "KVM internal error" not in proc.stderr + proc.stdout:
                accel = "kvm"
        except subprocess.TimeoutExpired:
            pass
    log(f"VM acceleration: {accel}" + ("" if accel == "kvm" else
                                       " (no KVM that runs a stock kernel here)"))
    cache.write_text(accel + "\n")
    return accel


def vm_unavailable():
    """Why this machine cannot start a lab VM at all (None when it can): qemu, the
    kernel, the tap device and a probe boot under TCG."""
    import shutil
    if os.geteuid() != 0:
        return "the VM lab needs root (network namespaces, taps)"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: qemu cannot give a VM a network"
    from .kernel import KernelError, ensure_kernel
    try:
        kernel = ensure_kernel(log=lambda message: None)
    except (KernelError, OSError) as exc:
        return f"Debian's kernel could not be fetched or unpacked: {exc}"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "256", "-nodefaults",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", str(kernel.vmlinux), "-initrd", str(kernel.initrd),
            "-append", "console=ttyS0 panic=-1 rdinit=/bin/busybox -- poweroff -f"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "a probe VM did not power off within 120 s"
    if proc.returncode != 0:
        return f"qemu cannot start a VM: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return None


class VM:
    def __init__(self, vm_dir):
        self.dir = Path(vm_dir)
        self.spec = json.loads((self.dir / "vm.json").read_text())
        self.name = self.spec["name"]
        self.channel = Channel(self.dir, self.spec["ports"])

    def __repr__(self):
        return f"<VM {self.name}>"

    # ---- creation ----------------------------------------------------------------
    @classmethod
    def create(cls, vm_dir, name, address, kernel, accel, lab_share, hosts_text,
               memory_mb=768, data_disk_mb=0, state_disk_mb=4096):
        """Disks, seed and spec of a new VM (not started)."""
        vm_dir = Path(vm_dir)
        vm_dir.mkdir(parents=True, exist_ok=True)
        spec = {"name": name, "address": address, "memory_mb": memory_mb,
                "ports": PORTS, "accel": accel, "lab_share": str(lab_share),
                "kernel": {"version": kernel.version, "vmlinux": str(kernel.vmlinux),
                           "initrd": str(kernel.initrd), "root": str(kernel.root)},
                "data_disk": data_disk_mb > 0}
        state = vm_dir / "state.img"
        state.unlink(missing_ok=True)
        with open(state, "wb") as f:
            f.truncate(state_disk_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", f"{name}-state", "-E",
                        "lazy_itable_init=1,lazy_journal_init=1", str(state)],
                       check=True, capture_output=True)
        if data_disk_mb:
            with open(vm_dir / "data.img", "wb") as f:
                f.truncate(data_disk_mb << 20)
        cls._write_seed(vm_dir, name, hosts_text, lab_share)
        (vm_dir / "vm.json").write_text(json.dumps(spec, indent=1))
        return cls(vm_dir)

    @staticmethod
    def _write_seed(vm_dir, name, hosts_text, lab_share):
        """What the first boot copies over the host's root (see init.sh)."""
        seed = vm_dir / "seed"
        units = seed / "etc" / "systemd" / "system"
        (units / "sysinit.target.wants").mkdir(parents=True, exist_ok=True)
        (seed / "etc" / "hostname").write_text(name + "\n")
        (seed / "etc" / "hosts").write_text(hosts_text)
        (seed / "etc" / "resolv.conf").write_text("")   # no DNS: names come from hosts
        (seed / "etc" / "machine-id").write_text(secrets.token_hex(16) + "\n")
        (seed / "etc" / "fstab").write_text("# lab VM: the root is set up by the initramfs\n")
        guest = Path(lab_share) / "guest.py"
        (units / "pyha-guest.service").write_text(GUEST_UNIT.format(guest=guest))
        link = units / "sysinit.target.wants" / "pyha-guest.service"
        if not link.is_symlink():
            link.symlink_to("/etc/systemd/system/pyha-guest.service")
        for unit in MASKED:
            if not (units / unit).is_symlink():
                (units / unit).symlink_to("/dev/null")
        generators = seed / "etc" / "systemd" / "system-generators"
        generators.mkdir(parents=True, exist_ok=True)
        for generator in MASKED_GENERATORS:
            if not (generators / generator).is_symlink():
                (generators / generator).symlink_to("/dev/null")
        remove = [f"/etc/systemd/system/multi-user.target.wants/{u}" for u in NOT_AT_BOOT]
        (vm_dir / "seed.remove").write_text("\n".join(remove) + "\n")

    # ---- power -------------------------------------------------------------------
    def pid(self):
        """PID of this VM's live qemu, or None (checked against its process name)."""
        try:
            pid = int((self.dir / "qemu.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"{MARK}{self.name},".encode() in cmdline else None

    def is_on(self):
        return self.pid() is not None

    def qemu_argv(self):
        s, k = self.spec, self.spec["kernel"]
        d = self.dir
        accel = ["-accel", "kvm", "-cpu", "host"] if s["accel"] == "kvm" else \
            ["-accel", "tcg,tb-size=256", "-cpu", "max"]
        append = ["console=ttyS0", "quiet", "loglevel=4", "net.ifnames=0", "panic=-1",
                  "systemd.show_status=0", f"pyha.name={s['name']}",
                  f"pyha.lab={s['lab_share']}", f"pyha.kroot={k['root']}",
                  f"pyha.ip={s['address']}/{net.PREFIXLEN}", f"pyha.ports={s['ports']}"]
        argv = ["qemu-system-x86_64", "-name", f"{MARK}{s['name']},process={MARK}{s['name']}",
                *accel, "-smp", "1", "-m", str(s["memory_mb"]),
                "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
                "-kernel", k["vmlinux"], "-initrd", k["initrd"], "-append", " ".join(append),
                "-chardev", f"file,id=console,path={d / 'console.log'},append=on",
                "-serial", "chardev:console",
                "-monitor", f"unix:{d / 'monitor.sock'},server=on,wait=off",
                "-virtfs", "local,path=/,mount_tag=root,security_model=passthrough,"
                           "readonly=on,multidevs=remap",
                "-virtfs", f"local,path={s['lab_share']},mount_tag=lab,"
                           "security_model=passthrough,multidevs=remap",
                "-drive", f"file={d / 'state.img'},if=virtio,format=raw",
                "-netdev", f"tap,id=net0,ifname={net.tap_name(s['name'])},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net0,mac={self.mac()}",
                "-device", "virtio-serial-pci,id=ser0"]
        if s["data_disk"]:
            argv += ["-drive", f"file={d / 'data.img'},if=virtio,format=raw"]
        for i in range(s["ports"]):
            argv += ["-chardev", f"socket,id=port{i},path={d / f'port{i}.sock'},server=on,wait=off",
                     "-device", f"virtserialport,bus=ser0.0,chardev=port{i},name=pyha.{i}"]
        argv += ["-daemonize", "-pidfile", str(d / "qemu.pid")]
        return argv

    def mac(self):
        last = int(self.spec["address"].rsplit(".", 1)[1])
        return f"52:54:00:d5:00:{last:02x}"

    def power_on(self):
        """Start qemu (returns at once; see wait_ready)."""
        if self.is_on():
            return
        net.add_tap(self.name)
        for stale in ("qemu.pid", "monitor.sock", *[f"port{i}.sock" for i in range(PORTS)]):
            (self.dir / stale).unlink(missing_ok=True)
        with open(self.dir / "console.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} power on ===\n".encode())
        proc = subprocess.run(net.in_netns(self.qemu_argv()), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise VMError(f"qemu for {self.name} did not start: {proc.stderr.strip()[-800:]}")

    def power_off(self, timeout=10):
        """Power loss: SIGKILL qemu (the guest gets no chance to write anything)."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
            try:   # qemu was daemonized: its parent (init) reaps it
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        (self.dir / "qemu.pid").unlink(missing_ok=True)
        return True

    def monitor(self, command, timeout=10):
        """One human-monitor command (e.g. `set_link net0 off`); returns its output."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.dir / "monitor.sock"))
            out = b""
            while b"(qemu)" not in out:
                out += sock.recv(4096)
            sock.sendall(command.encode() + b"\n")
            out = b""
            while out.count(b"(qemu)") < 1:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace")
        finally:
            sock.close()

    def link(self, up):
        """The VM's cable: the guest sees its carrier go and come back."""
        self.monitor(f"set_link net0 {'on' if up else 'off'}")

    def wait_ready(self, timeout=180):
        """Wait until the guest agent answers and systemd finished booting."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            if not self.is_on():
                raise VMError(f"{self.name} stopped while booting; console: "
                              f"{self.console_tail()}")
            if "pyha-init:" in self.console_tail(40):
                raise VMError(f"{self.name}: the initramfs failed; console: "
                              f"{self.console_tail()}")
            try:
                self.channel.ping(timeout=5)
                state = self.channel.run(["systemctl", "is-system-running", "--wait"],
                                         timeout=max(5, int(end - time.monotonic())))
                if state.stdout.strip() in ("running", "degraded"):
                    return state.stdout.strip()
                last = state.stdout.strip()
            except ChannelError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise VMError(f"{self.name} not ready after {timeout}s ({last}); console: "
                      f"{self.console_tail()}")

    def console_tail(self, lines=15):
        try:
            text = (self.dir / "console.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def install_guest_agent(lab_share):
    """guest.py into the lab share, where every VM's pyha-guest.service runs it from."""
    dest = Path(lab_share) / "guest.py"
    dest.write_bytes((HERE / "guest.py").read_bytes())
    return dest
