"""The lab's fence device: fence_pyha_lab.

A fence agent speaking the fence-agents protocol (options as key=value lines
on stdin, or -o/--action, -n/--plug on the command line), so Pacemaker's
STONITH path is the real one: pacemaker-fenced on a surviving node runs it, it
"cuts the power" of the victim (NIC down, every process of the victim's mount
namespace SIGKILLed - see node.Machine.power_off) and reports success.

The power switch hangs off the cluster network: a node whose own link has no
carrier cannot reach it, so in a network cut only the connected side wins the
fence race, as with a switched PDU on the same switch.

"reboot" powers the node off and leaves it off (the lab boots it again when a
scenario recovers it); "on" boots it (unfencing is not used).
"""
import os
import sys
import time
from pathlib import Path

from rigs import fence_protocol

from . import LAB_DIR, REPO_ROOT

AGENT_NAME = "fence_pyha_lab"
AGENT_PATH = Path("/usr/sbin") / AGENT_NAME

METADATA = fence_protocol.metadata(
    AGENT_NAME, "Fence agent for the pyha lab cluster",
    "Powers off a node of the ocf-agents lab (a set of namespaces on one machine): takes "
    "its network link down and SIGKILLs every process of its mount namespace, which is "
    "what a crash does. The power switch is reachable only from nodes whose own link has "
    "carrier.", "Name of the lab node to act on",
    [("lab_dir", "--lab-dir=[dir]", "string", "/var/lib/pyha-lab",
      "State directory of the lab (holds each node's holder.pid)")])

EC_OK, EC_ERROR, EC_OFF = 0, 1, 2


# Command-line flags of fence_pyha_lab -> option keys (stdin uses the keys).
OPTION_NAMES = {"-o": "action", "--action": "action", "-n": "plug", "--plug": "plug",
                "--port": "plug", "--lab-dir": "lab_dir"}


def parse_options(argv, stdin):
    return fence_protocol.parse_options(argv, stdin, OPTION_NAMES)


def _log(lab_dir, message):
    line = f"{time.strftime('%H:%M:%S')} {AGENT_NAME}[{os.getpid()}] on {os.uname().nodename}: {message}"
    print(line, file=sys.stderr)
    try:
        with open(Path(lab_dir) / "fence.log", "a") as log:
            log.write(line + "\n")
    except OSError:
        pass


def _switch_reachable():
    """False when this node's own cable is cut (no carrier on eth0)."""
    carrier = Path("/sys/class/net/eth0/carrier")
    if not carrier.parent.exists():
        return True  # not run from a lab node (e.g. by hand on the host)
    try:
        return carrier.read_text().strip() == "1"
    except OSError:  # reading carrier of a down interface fails: no carrier
        return False


def main(argv=None, stdin=None):
    from .node import Node  # lazy: metadata must not pay for it
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_options(argv, sys.stdin if stdin is None else stdin)
    action = opts.get("action", "reboot")
    if action in ("metadata", "manpage"):
        sys.stdout.write(METADATA)
        return EC_OK
    lab_dir = Path(opts.get("lab_dir") or LAB_DIR)
    names = sorted(p.parent.parent.name for p in lab_dir.glob("*/etc-corosync/corosync.conf"))
    if action in ("monitor", "validate-all"):
        return EC_OK if lab_dir.is_dir() else EC_ERROR
    if action in ("list", "list-status"):
        for name in names:
            if action == "list":
                print(f"{name},")
            else:
                print(f"{name},,{'on' if Node(name, None, lab_dir).is_on() else 'off'}")
        return EC_OK
    target = opts.get("plug") or opts.get("port") or opts.get("nodename")
    if not target:
        _log(lab_dir, f"{action}: no plug/port given")
        return EC_ERROR
    if target not in names:
        _log(lab_dir, f"{action}: {target} is not a lab node")
        return EC_ERROR
    node = Node(target, None, lab_dir)
    if action == "status":
        return EC_OK if node.is_on() else EC_OFF
    if not _switch_reachable():
        _log(lab_dir, f"{action} {target}: power switch unreachable (no carrier on eth0)")
        return EC_ERROR
    if action in ("off", "reboot"):
        was_on = node.is_on()
        node.power_off()
        _log(lab_dir, f"{action} {target}: powered off" + ("" if was_on else " (was off)"))
        return EC_OK if not node.is_on() else EC_ERROR
    if action == "on":
        _log(lab_dir, f"on {target}: the lab boots nodes itself; nothing to do")
        return EC_OK if node.is_on() else EC_ERROR
    _log(lab_dir, f"unknown action {action}")
    return EC_ERROR


# ---- installation --------------------------------------------------------
def install(path=AGENT_PATH):
    """Put the agent where pacemaker-fenced and pcs look for fence agents."""
    path.write_text(
        "#!/usr/bin/python3\n"
        "# fence_pyha_lab: fence device of the ocf-agents lab (installed by `python3 -m lab up`)\n"
        "import sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from lab.fencing import main\n"
        "sys.exit(main())\n")
    path.chmod(0o755)


def uninstall(path=AGENT_PATH):
    path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
