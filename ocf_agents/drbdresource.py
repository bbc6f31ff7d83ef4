"""The DRBD resource ocf:pyha:drbd manages: drbdadm and drbdsetup for it, its state read
once per action, its kernel module's version, who holds its device open, and the agent's
small memory about it. The decisions (scores, split brain, the actions) are elsewhere:
drbd.py, drbdstate.py, drbdsplitbrain.py.
"""

import os

from ocf_agents.drbdstate import (
    decode_drbdadm_84, decode_events2, decode_gi, decode_kernel_version, decode_proc_drbd,
    decode_sh_status,
)
from ocf_agents.ocf import ERR_GENERIC, OCFError, read_file, read_head, write_file_atomically


class Drbd:
    """drbdadm/drbdsetup for one resource, plus the agent's small persistent memory."""

    def __init__(self, res):
        self.res = res
        self.name = res.params.drbd_resource
        self.memory_path = res.state_path(f"{res.instance_without_clone_suffix}.state")
        self.memory = self._load_memory()

    # memory: key=value lines in the state directory (cleared at reboot)
    def _load_memory(self):
        memory = {}
        for line in (read_file(self.memory_path, "") or "").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                memory[key] = value
        return memory

    def remember(self, **values):
        changed = False
        for key, value in values.items():
            if value is None:
                changed |= self.memory.pop(key, None) is not None
            elif self.memory.get(key) != str(value):
                self.memory[key] = str(value)
                changed = True
        if changed:
            write_file_atomically(self.memory_path,
                                  "".join(f"{k}={v}\n" for k, v in sorted(self.memory.items())))

    def forget(self):
        self.memory = {}
        try:
            os.unlink(self.memory_path)
        except FileNotFoundError:
            pass

    @property
    def stacked(self):
        """A DRBD 8.4 resource stacked on another one (found at start/validate-all)."""
        return self.memory.get("stacked") == "1"

    # commands
    def adm_argv(self, *args):
        # drbdadm 8.4 answers "'<res>' is a stacked resource, and not available in
        # normal mode" to every command on a stacked resource without -S.
        stacked = ["-S"] if self.stacked else []
        return ["drbdadm", "-c", self.res.params.drbdconf, *stacked, *args, self.name]

    def adm(self, *args, timeout=None, quiet=False, env=None):
        return self.res.run(self.adm_argv(*args), timeout=timeout, quiet=quiet, env=env)

    def kernel_version(self):
        """DRBD module version (tuple) or None when the module is not loaded.

        The module creates /proc/drbd when it loads: no file means not loaded, decided
        without a fork (every probe on a node without DRBD asks this; drbd-utils' tools
        would each try modprobe). Only a /proc/drbd without a readable version line makes
        us ask drbdadm --version.
        """
        proc = self.res.params.proc_drbd
        text = read_head(proc)
        if text:
            version = decode_proc_drbd(text)[0]
            if version:
                return version
        elif not os.path.exists(proc):
            return None
        result = self.res.run(["drbdadm", "--version"], timeout=10, quiet=True)
        return decode_kernel_version(result.out)

    def state(self, version):
        """Read the resource's state: exactly one drbdsetup call in the normal case."""
        if version[0] >= 9:
            result = self.res.run(["drbdsetup", "events2", "--now", self.name], timeout=15,
                                  quiet=True)
            if result.rc != 0:
                raise OCFError(ERR_GENERIC, f"drbdsetup events2 failed (rc {result.rc}): "
                                            f"{result.err.strip()}")
            return decode_events2(result.out, self.name)
        result = self.res.run(["drbdsetup", "sh-status", self.name], timeout=15, quiet=True)
        if result.rc == 0 and "_known=" in result.out:
            return decode_sh_status(result.out)
        outs = [self.adm(word, timeout=15, quiet=True).out for word in ("role", "cstate",
                                                                        "dstate")]
        return decode_drbdadm_84(*outs)

    def generation_ids(self, version, st, peer_id):
        """This node's data generation UUIDs towards one peer (first volume), or None.

        DRBD 9: ``drbdsetup get-gi <res> <peer-node-id> <volume>``; 8.4:
        ``drbdsetup get-gi <minor>``. Only called while a peer is not connected.
        """
        if version[0] >= 9:
            volume = st.volumes[0] if st.volumes else "0"
            argv = ["drbdsetup", "get-gi", self.name, str(peer_id), volume]
        elif st.minors and st.minors[0].isdigit():
            argv = ["drbdsetup", "get-gi", st.minors[0]]
        else:
            return None
        result = self.res.run(argv, timeout=15, quiet=True)
        return decode_gi(result.out) if result.rc == 0 else None


def holders_text(res, drbd):
    """Who holds the device open: mounts (any mount namespace) and processes."""
    result = drbd.adm("sh-dev", quiet=True)
    holders = device_holders(result.out.strip().splitlines()[0] if result.out.strip() else "")
    return f"(held open by: {', '.join(holders)})" if holders else ""


def device_holders(device):
    try:
        rdev = os.stat(device).st_rdev
    except (OSError, ValueError):
        return []
    majmin = f"{os.major(rdev)}:{os.minor(rdev)}"
    found, seen_ns = [], set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns not in seen_ns:
                seen_ns.add(ns)
                for line in (read_file(f"/proc/{pid}/mountinfo", "") or "").splitlines():
                    fields = line.split()
                    if len(fields) > 4 and fields[2] == majmin:
                        found.append(f"mount {fields[4]}")
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.stat(f"/proc/{pid}/fd/{fd}").st_rdev == rdev:
                        comm = (read_file(f"/proc/{pid}/comm", "?") or "?").strip()
                        found.append(f"{comm}[{pid}]")
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return sorted(set(found))
