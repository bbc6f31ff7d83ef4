"""The VMs' private network: one network namespace holding a bridge, the VMs' taps and
the power switch's address.  Nothing of it touches the host's own network; `destroy`
deletes the namespace and with it every tap and the bridge.
"""
import subprocess
from pathlib import Path

NETNS = "pyha-vm"
BRIDGE = "br0"
SWITCH_ADDRESS = "10.213.0.254"   # the power switch (fence device) on the lab network
PREFIXLEN = 24


def _ip(*args, check=True):
    proc = subprocess.run(["ip", "-n", NETNS, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip -n {NETNS} {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def exists():
    return Path(f"/run/netns/{NETNS}").exists()


def create():
    if not exists():
        subprocess.run(["ip", "netns", "add", NETNS], check=True, capture_output=True)
    _ip("link", "set", "lo", "up")
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "replace", f"{SWITCH_ADDRESS}/{PREFIXLEN}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def tap_name(vm_name):
    return f"tap-{vm_name}"[:15]


def add_tap(vm_name):
    tap = tap_name(vm_name)
    if _ip("link", "show", tap, check=False).returncode != 0:
        _ip("tuntap", "add", "dev", tap, "mode", "tap")
    _ip("link", "set", tap, "master", BRIDGE, "up")
    return tap


def in_netns(argv):
    """argv run inside the lab's network namespace."""
    return ["ip", "netns", "exec", NETNS, *argv]


def destroy():
    if exists():
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
