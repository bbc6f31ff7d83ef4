"""The lab VMs' power switch and its fence agent, fence_pyha_qemu.

The switch is a small daemon on the lab network (SWITCH_ADDRESS, inside the lab's
namespace), like a networked PDU or a hypervisor that fence_virsh reaches over ssh: it
powers VMs off (SIGKILL of qemu: a real power loss), on (qemu started again with the same
disks) and reboots them.  A node whose cable is cut cannot reach it, so in a network
partition only the connected side can fence.

fence_pyha_qemu speaks the fence-agents protocol (key=value lines on stdin, or
-o/--action, -n/--plug, -p/--password on the command line) and asks the switch over TCP:
one line "PASSWORD ACTION PLUG", one line back ("OK", "ON", "OFF" or "ERROR reason").
Registered with `pcs stonith create NAME fence_pyha_qemu ipaddr=... password=...`.
"""
import os
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

from rigs import fence_protocol

PORT = 1229
AGENT_NAME = "fence_pyha_qemu"

METADATA = fence_protocol.metadata(
    AGENT_NAME, "Fence agent for the pyha lab's qemu VMs",
    "Powers a VM of the ocf-agents lab off, on or through a reboot by asking the lab's "
    "power switch on the lab network. Power off is a SIGKILL of the VM's qemu process: "
    "exactly a power loss. A node whose network cable is cut cannot reach the switch.",
    "Name of the VM to act on",
    [("ipaddr", "-a, --ip=[ip]", "string", "10.213.0.254", "Address of the power switch"),
     ("ipport", "-u, --ipport=[port]", "integer", "1229", "TCP port of the power switch"),
     ("password", "-p, --password=[password]", "string", None,
      "Password of the power switch")])

EC_OK, EC_ERROR, EC_OFF = 0, 1, 2
ACTIONS = ("on", "off", "reboot", "status", "list")


# ---- the switch (host side, inside the lab's network namespace) ----------------------
class Switch:
    def __init__(self, lab_dir):
        self.lab_dir = Path(lab_dir)
        self.secret = (self.lab_dir / "power.secret").read_text().strip()
        self.lock = threading.Lock()   # one power action at a time, as a PDU does

    def vms(self):
        from .machine import VM
        return {p.parent.name: VM(p.parent) for p in self.lab_dir.glob("*/vm.json")}

    def log(self, message):
        line = f"{time.strftime('%H:%M:%S')} power switch: {message}"
        with open(self.lab_dir / "fence.log", "a") as log:
            log.write(line + "\n")

    def handle(self, line, peer):
        words = line.split()
        if len(words) < 2 or words[0] != self.secret:
            return "ERROR bad password or request"
        action, plug = words[1], (words[2] if len(words) > 2 else "")
        vms = self.vms()
        if action == "list":
            return "OK " + " ".join(f"{n}={'on' if v.is_on() else 'off'}"
                                    for n, v in sorted(vms.items()))
        if action not in ACTIONS:
            return f"ERROR unknown action {action}"
        vm = vms.get(plug)
        if vm is None:
            return f"ERROR {plug or '(none)'} is not a lab VM"
        if action == "status":
            return "ON" if vm.is_on() else "OFF"
        with self.lock:
            if action in ("off", "reboot"):
                was_on = vm.power_off()
                self.log(f"{action} {plug}: powered off" + ("" if was_on else " (was off)")
                         + f" (asked by {peer})")
            if action in ("on", "reboot"):
                vm.power_on()
                self.log(f"{action} {plug}: powered on (asked by {peer})")
        return "OK"

    def serve(self, address, port=PORT):
        switch = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline(4096).decode(errors="replace")
                try:
                    reply = switch.handle(line, self.client_address[0])
                except Exception as exc:   # a failed action is an answer, not a crash
                    reply = f"ERROR {type(exc).__name__}: {exc}"
                self.wfile.write((reply + "\n").encode())

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        with socketserver.ThreadingTCPServer((address, port), Handler) as server:
            (self.lab_dir / "power.pid").write_text(str(os.getpid()))
            server.serve_forever()


# ---- the fence agent (runs on the cluster nodes) --------------------------------------
# Command-line flags of fence_pyha_qemu -> option keys (stdin uses the keys).
OPTION_NAMES = {"-o": "action", "--action": "action", "-n": "plug", "--plug": "plug",
                "--port": "plug", "-a": "ipaddr", "--ip": "ipaddr", "-u": "ipport",
                "--ipport": "ipport", "-p": "password", "--password": "password"}


def parse_options(argv, stdin):
    return fence_protocol.parse_options(argv, stdin, OPTION_NAMES)


def ask_switch(opts, action, plug="", timeout=30):
    address = opts.get("ipaddr") or "10.213.0.254"
    port = int(opts.get("ipport") or PORT)
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.sendall(f"{opts.get('password') or '-'} {action} {plug}\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode(errors="replace").strip()


def fence_main(argv=None, stdin=None):
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_options(argv, sys.stdin if stdin is None else stdin)
    action = opts.get("action", "reboot")
    if action in ("metadata", "manpage"):
        sys.stdout.write(METADATA)
        return EC_OK
    plug = opts.get("plug") or opts.get("port") or opts.get("nodename") or ""
    try:
        if action in ("monitor", "validate-all", "list", "list-status"):
            reply = ask_switch(opts, "list")
            if action.startswith("list") and reply.startswith("OK"):
                for item in reply.split()[1:]:
                    name, _, state = item.partition("=")
                    print(f"{name}," + (f",{state}" if action == "list-status" else ""))
            return EC_OK if reply.startswith("OK") else EC_ERROR
        if not plug:
            print(f"{AGENT_NAME}: {action} needs a plug (the VM's name)", file=sys.stderr)
            return EC_ERROR
        reply = ask_switch(opts, action, plug)
    except (OSError, ValueError) as exc:
        print(f"{AGENT_NAME}: power switch unreachable: {exc}", file=sys.stderr)
        return EC_ERROR
    if action == "status":
        return {"ON": EC_OK, "OFF": EC_OFF}.get(reply, EC_ERROR)
    if reply != "OK":
        print(f"{AGENT_NAME}: {action} {plug}: {reply}", file=sys.stderr)
        return EC_ERROR
    return EC_OK


def install_fence_agent(path, repo_root):
    """The fence agent as a small program (guests see it through the host's root). Its
    metadata is answered without importing anything: pacemaker-fenced gives that call 10 s,
    and under emulation on a loaded host an interpreter with site-packages and this package
    read through the guests' share did not always make it (a VM lab's setup failed so)."""
    path = Path(path)
    path.write_text(
        "#!/usr/bin/python3 -IS\n"
        f"# {AGENT_NAME}: fence device of the ocf-agents lab's VMs (installed by the lab)\n"
        "import sys\n"
        "args = sys.argv[1:]\n"
        "stdin = [] if args else sys.stdin.readlines()\n"
        "asked = set(args) | {line.strip() for line in stdin}\n"
        "if asked & {'metadata', '--action=metadata', 'action=metadata', 'option=metadata'}:\n"
        f"    sys.stdout.write({METADATA!r})\n"
        "    sys.exit(0)\n"
        f"sys.path.insert(0, {str(repo_root)!r})\n"
        "from rigs.vm.power import fence_main\n"
        "sys.exit(fence_main(args, stdin))\n")
    path.chmod(0o755)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        from .net import SWITCH_ADDRESS
        Switch(sys.argv[2]).serve(SWITCH_ADDRESS)
    else:
        sys.exit(fence_main())
