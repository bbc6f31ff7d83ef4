"""ocf:pyha:nfsexport - NFS exports that fail over with their client list.

Exports one or several directories to one or several clients with the real
exportfs, and keeps each directory's lines of /var/lib/nfs/rmtab in a backup
file inside the directory, so the node taking over knows which clients had
it mounted (showmount, NFSv3 lock recovery).

Monitor reads the export table (etab) directly: no fork on the hot path.
"""

import os
import time

from ocf_agents.ocf import (
    ERR_CONFIGURED, ERR_GENERIC, ERR_INSTALLED, NOT_RUNNING, SUCCESS,
    Action, Agent, OCFError, Parameter, have_binary, read_file, read_head, shown,
    write_file_atomically,
)

NFS_STATE_DIR = "/var/lib/nfs"
ETAB = NFS_STATE_DIR + "/etab"
RMTAB = NFS_STATE_DIR + "/rmtab"
# rpc.mountd and exportfs take this fcntl lock around their rmtab updates;
# taking the same lock keeps our merges from racing theirs and each other's.
RMTAB_LOCK = NFS_STATE_DIR + "/.rmtab.lock"
UNLOCK_FILESYSTEM = "/proc/fs/nfsd/unlock_filesystem"
LEASE_TIME = "/proc/fs/nfsd/nfsv4leasetime"
EXPORT_CACHE = "/proc/net/rpc/nfsd.export/content"

NAME_MAX, PATH_MAX = 255, 4095
FSID_MAX = 2 ** 32 - 1

# Characters with a meaning to exportfs or the shell that no client spec needs.
_CLIENT_FORBIDDEN = set("()\"'`$;&|<>\\,=!{}") | set(" \t\n\r\v\f")
_OPTION_FORBIDDEN = set("()\"'`$;&|<>\\ \t\n\r\v\f")
_HEX = set("0123456789abcdefABCDEF")


# --- parameter checks -----------------------------------------------------------
def parse_clientspecs(value):
    specs = value.split()
    if not specs:
        raise ValueError("is empty")
    clients = []
    for spec in specs:
        if spec.startswith("-") or _CLIENT_FORBIDDEN & set(spec) or not spec.isprintable():
            raise ValueError(f"{shown(spec)} is not a host, network, @netgroup or wildcard")
        if spec.startswith("["):
            spec = _ipv6_client(spec)
        if not spec or "[" in spec or "]" in spec:
            raise ValueError(f"{shown(spec)} is not a host, network, @netgroup or wildcard")
        clients.append(spec)
    return clients


def _ipv6_client(spec):
    """[addr] or [addr]/prefix as the export table records it: without brackets
    ("[fe80::1]/64" is stored as fe80::1/64). exportfs needs the brackets on its
    command line, where a colon ends the client (see exportfs_target)."""
    address, _, rest = spec[1:].partition("]")
    prefix = rest[1:] if rest.startswith("/") else None
    if not (":" in address and set(address) <= _HEX | set(":.")) or \
            (rest and (prefix is None or not prefix.isdigit() or int(prefix) > 128)):
        raise ValueError(f"{shown(spec)} is not an IPv6 address or network: write "
                         "[address] or [address]/prefix (prefix 0-128)")
    return address if prefix is None else f"{address}/{int(prefix)}"


_OCTAL = set("01234567")
_OCTAL_BYTES = set(b"01234567")


def split_escaped(value):
    """The words of a space-separated list in which a word may hold spaces.

    The list is split at whitespace; inside a word, \\ooo (three octal digits: \\040 is a
    space) is that byte, as /etc/exports, /proc/mounts and the export table write it,
    and a backslash before a space or a backslash keeps that character ("my\\ dir"), the
    quoting a shell user types. Both can be written in pcs (directory='/srv/my\\040dir').
    """
    words, word, i, started = [], bytearray(), 0, False
    while i < len(value):
        char = value[i]
        if char == "\\":
            octal = value[i + 1:i + 4]
            if len(octal) == 3 and set(octal) <= _OCTAL and int(octal, 8) < 256:
                word.append(int(octal, 8))
                i += 4
            elif value[i + 1:i + 2] in (" ", "\\"):
                word += value[i + 1].encode()
                i += 2
            else:
                raise ValueError(f"{shown(value)}: a backslash must start \\040 (a space), "
                                 "another \\ooo octal escape, '\\ ' or \\\\")
            started = True
        elif char.isspace():
            if started:
                words.append(word)
            word, started = bytearray(), False
            i += 1
        else:
            word += char.encode(errors="surrogatepass")
            started = True
            i += 1
    if started:
        words.append(word)
    try:
        return [w.decode() for w in words]
    except UnicodeDecodeError:
        raise ValueError(f"{shown(value)} is not valid UTF-8 once its escapes are "
                         "decoded") from None


def parse_directories(value):
    directories = []
    for directory in split_escaped(value):
        if not directory.startswith("/"):
            raise ValueError(f"{shown(directory)} is not an absolute path")
        if not directory.isprintable():
            raise ValueError(f"{shown(directory)} contains a control character (a tab, a "
                             "newline...): rename the directory")
        if "/../" in directory + "/" or "/./" in directory + "/":
            raise ValueError(f"{shown(directory)} must not contain . or .. components")
        if len(directory.encode()) > PATH_MAX or \
                any(len(part.encode()) > NAME_MAX for part in directory.split("/")):
            raise ValueError(f"{shown(directory)} is longer than a path can be "
                             f"({PATH_MAX} bytes, {NAME_MAX} per name)")
        directory = directory.rstrip("/") or "/"
        if directory not in directories:
            directories.append(directory)
    if not directories:
        raise ValueError("is empty")
    return directories


def parse_options(value):
    if _OPTION_FORBIDDEN & set(value) or value.startswith("-") or not value.isprintable():
        raise ValueError(f"{shown(value)} is not a comma-separated exportfs option list")
    return [o for o in value.split(",") if o]


def parse_fsid(value):
    value = value.strip()
    if value == "root":
        return value
    if value.isdigit():
        # exportfs reads fsid= with strtoul into an int (nfs-utils support/nfs/exports.c,
        # parseopts) and the kernel keeps it as 32 bits (fs/nfsd/export.c: ex_fsid; the
        # file handle's FSID_NUM is a u32): 4294967296 becomes fsid=0 (the NFSv4 root!),
        # larger values fsid=-1. So a number must fit 32 bits unsigned.
        if int(value) > FSID_MAX:
            raise ValueError(f"{shown(value)} is too large: a numeric fsid is at most "
                             f"{FSID_MAX} (32 bits)")
        return int(value)
    digits = value.replace("-", "")
    if len(digits) == 32 and set(digits) <= _HEX:
        return value.lower()
    raise ValueError(f"{shown(value)} is not an fsid (a number, a UUID or root)")


def parse_backup_name(value):
    if value == "none":
        return None
    if not value or "/" in value or value in (".", "..") or not value.isprintable() \
            or len(value.encode()) > NAME_MAX:
        raise ValueError(f"{shown(value)} must be a plain file name (or none)")
    return value


# --- the export table ---------------------------------------------------------
def kernel_escape(path):
    """path as the kernel's qword_get reads it (net/sunrpc/cache.c): a word ends at a
    space or newline, \\ooo is a byte. The export cache's content is printed the same
    way (seq_escape of space, tab, newline and backslash)."""
    if not any(c in path for c in " \t\n\\"):
        return path
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def unescape_etab_path(path):
    """exportfs writes a path's spaces and odd bytes as octal escapes (\\040):
    nfs-utils putexportent escapes control characters, spaces, ", # and \\ as \\%03o."""
    if "\\" not in path:
        return path
    raw = path.encode()
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) and set(raw[i + 1:i + 4]) <= _OCTAL_BYTES:
            out.append(int(raw[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode(errors="replace")


def exported_pairs():
    """The (directory, client) pairs in the export table."""
    pairs = set()
    for line in (read_file(ETAB, "") or "").splitlines():
        path, _, rest = line.partition("\t")
        if rest:
            pairs.add((unescape_etab_path(path), rest.split("(", 1)[0]))
    return pairs


def wanted_pairs(directories, params):
    return [(d, c) for d in directories for c in params.clientspec]


def export_directories(params):
    """Directories as exportfs records them: symlinks resolved."""
    return [os.path.realpath(d) for d in params.directory]


def exportfs_target(client, directory):
    """client:directory for exportfs's command line. An IPv6 address needs brackets,
    and a network's prefix goes after them, as exports(5) writes it: exportfs takes
    "[fe80::1]/64:/dir" (and records fe80::1/64) and refuses "fe80::1/64:/dir"."""
    if ":" not in client:
        return f"{client}:{directory}"
    address, slash, prefix = client.partition("/")
    return f"[{address}]{slash}{prefix}:{directory}"


def export_options(params, index):
    options = list(params.options)
    fsid = params.fsid
    if fsid is None:
        return options
    options = [o for o in options if not o.startswith("fsid=")]
    options.append(f"fsid={fsid + index if isinstance(fsid, int) else fsid}")
    return options


# --- rmtab backup -------------------------------------------------------------
# rmtab lines are "client:path:0xCOUNT" (nfs-utils support/nfs/rmtab.c: the path is
# written as is, colons in an IPv6 client become semicolons). rpc.mountd's mountlist_add
# increments the count of the first line for a client:path, or appends one with count 1;
# mountlist_del decrements every line for it and drops those at 1. Two lines for one
# client:path are therefore never right: each extra copy outlives the client's unmount,
# and merging backups line by line (counts differ) made them multiply without bound
# (issue 11: 5,464 lines for 8 clients). So the agent keeps one line per client:path,
# the first one, which is the one rpc.mountd counts on.
def parse_rmtab_line(line):
    """(client, path) of an rmtab line, or None when it is not one."""
    client, sep, rest = line.partition(":")
    path, sep2, count = rest.rpartition(":")
    if not (client and sep and sep2 and path) or count[:2] != "0x" or len(count) < 3 \
            or not set(count[2:]) <= _HEX:
        return None
    return client, path


def rmtab_lines_for(directory, rmtab_text):
    """rmtab lines naming exactly this directory, one per client (the first one)."""
    lines, seen = [], set()
    for line in rmtab_text.splitlines():
        key = parse_rmtab_line(line)
        if key is not None and key[1] == directory and key not in seen:
            seen.add(key)
            lines.append(line)
    return lines


def save_rmtab(res, directories):
    """Refresh each directory's backup; a failure warns but never fails the action."""
    name = res.params.rmtab_backup
    if name is None:
        return
    try:
        # Read under rpc.mountd's lock: never a line it is in the middle of writing.
        with res.lock(RMTAB_LOCK, timeout=max(0.5, min(5.0, res.time_left() - 2))):
            rmtab_text = read_file(RMTAB, "") or ""
    except OCFError as err:
        res.log.warning(f"{err.reason}: the rmtab backups are not refreshed this time")
        return
    mode = _rmtab_mode()
    for directory in directories:
        backup = os.path.join(directory, name)
        wanted = "".join(line + "\n" for line in rmtab_lines_for(directory, rmtab_text))
        try:
            if read_file(backup) == wanted:
                continue  # unchanged: no write on every monitor
            write_file_atomically(backup, wanted, mode)
        except OSError as err:
            res.log.warning(f"cannot write the rmtab backup {backup}: {err}; "
                            "the previous backup is kept")


def restore_rmtab(res, directories):
    """Make rmtab's lines for the directories exactly their backups' lines.

    The backup travels with the data, so it is the record of who has each directory
    mounted; this node's own lines for it are stale whenever the service ran elsewhere
    since (clients that unmounted there must stay gone after a failback). A directory
    without a backup file (never monitored, or rmtab_backup just enabled) has no record:
    its local lines are left alone. Lines of other paths are never touched.
    """
    name = res.params.rmtab_backup
    if name is None:
        return
    records = {}
    for directory in directories:
        try:
            text = read_file(os.path.join(directory, name))
        except OSError as err:
            res.log.warning(f"cannot read the rmtab backup in {directory}: {err}; "
                            "its local rmtab lines are kept")
            continue
        if text is not None:
            records[directory] = rmtab_lines_for(directory, text)
    if not records:
        return
    with res.lock(RMTAB_LOCK, timeout=max(1.0, min(10.0, res.time_left() - 2))):
        current = (read_file(RMTAB, "") or "").splitlines()
        kept = [line for line in current
                if (parse_rmtab_line(line) or (None, None))[1] not in records]
        restored = [line for lines in records.values() for line in lines]
        if kept + restored != current:
            write_file_atomically(RMTAB, "".join(line + "\n" for line in kept + restored),
                                  _rmtab_mode())
            res.log.info(f"rmtab: {len(restored)} line(s) from the backup, "
                         f"{len(current) - len(kept)} local line(s) replaced")


def _rmtab_mode():
    try:
        return os.stat(RMTAB).st_mode & 0o666
    except OSError:
        return 0o644


# --- actions --------------------------------------------------------------------
def check_environment(res):
    """validate-all and the checks before start/monitor."""
    p = res.params
    if p.fsid is not None and not isinstance(p.fsid, int) and len(p.directory) > 1:
        raise OCFError(ERR_CONFIGURED, "parameter fsid: several directories need a numeric fsid "
                                       "(each directory gets fsid, fsid+1, ...)")
    if isinstance(p.fsid, int) and p.fsid + len(p.directory) - 1 > FSID_MAX:
        raise OCFError(ERR_CONFIGURED, f"parameter fsid: {p.fsid} + {len(p.directory) - 1} "
                       f"(one per further directory) exceeds {FSID_MAX}, the largest fsid: "
                       "choose a smaller fsid")
    if p.fsid is not None and any(o.startswith("fsid=") for o in p.options):
        res.log.warning("options contain fsid=, which the fsid parameter overrides")
    if res.action == "monitor":
        return  # monitor must report, not refuse: a missing directory is "not exported"
    if not have_binary("exportfs"):
        raise OCFError(ERR_INSTALLED, "exportfs is not installed (package nfs-kernel-server)")
    for directory in p.directory:
        if not os.path.isdir(directory):
            raise OCFError(ERR_CONFIGURED, f"directory {directory} does not exist")


def state_marker(res):
    return res.state_path(res.instance)


def start(res):
    directories = export_directories(res.params)
    if os.path.exists(state_marker(res)):
        # Started here since boot and not stopped: the live rmtab is newer than the
        # backup (mounts since the last monitor), so record it before restoring.
        save_rmtab(res, directories)
    restore_rmtab(res, directories)
    exported = exported_pairs()
    done = []
    for index, directory in enumerate(directories):
        options = export_options(res.params, index)
        for client in res.params.clientspec:
            argv = ["exportfs", "-v"]
            if options:
                argv += ["-o", ",".join(options)]
            argv.append(exportfs_target(client, directory))
            result = res.run(argv)
            if result.rc != 0:
                undo_exports(res, [p for p in done if p not in exported])
                reason = (result.err or result.out).strip().splitlines()
                raise OCFError(ERR_GENERIC, f"exportfs {exportfs_target(client, directory)} "
                                            f"failed: {reason[-1] if reason else result.rc}")
            done.append((directory, client))
    missing = set(done) - exported_pairs()
    if missing:
        undo_exports(res, [p for p in done if p not in exported])
        raise OCFError(ERR_GENERIC, "exportfs succeeded but the export table lacks "
                       + ", ".join(exportfs_target(c, d) for d, c in sorted(missing)))
    write_file_atomically(state_marker(res), "started\n")
    res.log.info(f"exported {', '.join(directories)} to {', '.join(res.params.clientspec)}")
    return SUCCESS


def undo_exports(res, pairs):
    for directory, client in pairs:
        res.run(["exportfs", "-u", exportfs_target(client, directory)], quiet=True)


def monitor(res):
    if not os.path.exists(state_marker(res)):
        # The etab survives a reboot; only our marker (on tmpfs) says we started it.
        return NOT_RUNNING
    directories = export_directories(res.params)
    wanted = wanted_pairs(directories, res.params)
    exported = exported_pairs()
    missing = [p for p in wanted if p not in exported]
    if len(missing) == len(wanted):
        return NOT_RUNNING
    if missing:
        raise OCFError(ERR_GENERIC, "not exported: "
                       + ", ".join(exportfs_target(c, d) for d, c in missing))
    save_rmtab(res, directories)
    return SUCCESS


def stop(res):
    directories = export_directories(res.params)
    wanted = wanted_pairs(directories, res.params)
    exported = exported_pairs()
    present = [p for p in wanted if p in exported]
    if present:
        save_rmtab(res, directories)
    for directory, client in present:
        result = res.run(["exportfs", "-v", "-u", exportfs_target(client, directory)])
        if result.rc != 0 and (directory, client) in exported_pairs():
            raise OCFError(ERR_GENERIC, f"cannot unexport {exportfs_target(client, directory)}: "
                                        f"{result.err.strip()}")
    if present:
        if res.params.unlock_on_stop:
            unlock_filesystems(res, directories)
        if res.params.wait_for_leasetime_on_stop:
            wait_for_lease_time(res)
        flush_export_cache(res, directories)
    try:
        os.unlink(state_marker(res))
    except FileNotFoundError:
        pass
    left = [p for p in wanted if p in exported_pairs()]
    if left:
        raise OCFError(ERR_GENERIC, "still exported after stop: "
                       + ", ".join(exportfs_target(c, d) for d, c in left))
    return SUCCESS


def unlock_filesystems(res, directories):
    """Drop the NLM locks held on the directories' filesystems (kernel nfsd only)."""
    if not os.path.exists(UNLOCK_FILESYSTEM):
        res.log.debug(f"{UNLOCK_FILESYSTEM} is missing: no kernel nfsd locks to release")
        return
    for directory in directories:
        try:
            with open(UNLOCK_FILESYSTEM, "w") as f:
                # The kernel takes one escaped word ending in a newline (write_unlock_fs
                # in fs/nfsd/nfsctl.c returns EINVAL without it), like echo writes it.
                f.write(kernel_escape(directory) + "\n")
        except OSError as err:
            res.log.warning(f"cannot release NFS locks on {directory}: {err}")


def wait_for_lease_time(res):
    try:
        lease = int(read_head(LEASE_TIME).strip() or 0)
    except ValueError:
        lease = 0
    if not lease:
        res.log.debug("no NFSv4 lease time to wait for")
        return
    wait = min(lease + 2, max(0, res.time_left() - 5))
    res.log.info(f"waiting {wait:.0f} s for NFSv4 leases to expire")
    time.sleep(wait)


def flush_export_cache(res, directories):
    """Flush the kernel's export cache until it forgets the directories, boundedly."""
    if not os.path.exists(EXPORT_CACHE):
        return
    deadline = time.monotonic() + min(10.0, max(1.0, res.time_left() - 3))
    while True:
        res.run(["exportfs", "-f"], timeout=5, quiet=True)
        cache = read_file(EXPORT_CACHE, "") or ""
        cached = [d for d in directories
                  if any(line.split(None, 1)[:1] == [kernel_escape(d)]
                         for line in cache.splitlines())]
        if not cached:
            return
        if time.monotonic() >= deadline:
            res.log.warning(f"the kernel export cache still lists {', '.join(cached)}")
            return
        time.sleep(0.5)


def validate_all(res):
    return SUCCESS


AGENT = Agent(
    name="nfsexport",
    shortdesc="NFS exports with client lists that survive failover",
    longdesc="""
Exports one or more directories to one or more NFS clients with exportfs, and
unexports them on stop. It does not run the NFS server itself.

Each exported directory keeps a backup of its lines of /var/lib/nfs/rmtab (the
list of clients that mounted it), one line per client; the backup is refreshed by
every monitor and by stop, and on start it replaces this node's own rmtab lines
for the directory, so after a failover (or a failback to a node that kept an old
rmtab) the new node knows exactly the clients that have the export mounted. The
export table survives a reboot, so a probe reports running only when this node
started the export since boot.
""",
    parameters=[
        Parameter("clientspec", required=True, check=parse_clientspecs,
                  shortdesc="Client(s) allowed to mount",
                  longdesc="One or more client specifications separated by spaces, in the "
                           "forms of exports(5): a host name or address, a network such as "
                           "10.0.0.0/24, an @netgroup, a wildcard or *. IPv6 addresses and "
                           "networks are written in brackets: [fd00::7], [fe80::1]/64. Every "
                           "directory is exported to every client."),
        Parameter("directory", required=True, check=parse_directories,
                  shortdesc="Directory or directories to export",
                  longdesc="One or more absolute paths separated by spaces. Symbolic links are "
                           "resolved; a trailing slash is ignored. A space inside a path is "
                           "written \\040, as in /etc/exports and /proc/mounts "
                           "(/srv/my\\040data), or with a backslash before it (/srv/my\\ data); "
                           "\\\\ is a backslash."),
        Parameter("options", default="", check=parse_options,
                  shortdesc="Export options",
                  longdesc="Comma-separated exportfs options, e.g. rw,no_root_squash,sync. "
                           "An fsid given in the fsid parameter replaces any fsid= here."),
        Parameter("fsid", check=parse_fsid,
                  shortdesc="Filesystem id of the export",
                  longdesc="A unique number (0 to 4294967295: nfsd keeps 32 bits), a UUID or "
                           "root. Clients identify the export by it, "
                           "so it must be the same on every node for failover to be transparent. "
                           "With several directories it must be a number: the directories get "
                           "fsid, fsid+1, ... in the order given. Optional: without it, exportfs "
                           "derives the id from the filesystem."),
        Parameter("unlock_on_stop", type="boolean", default=True,
                  shortdesc="Release NFS locks on stop",
                  longdesc="Release the NFS locks held on the exported filesystems when "
                           "stopping (through /proc/fs/nfsd/unlock_filesystem), so the "
                           "filesystem can be unmounted. Recommended unless another resource "
                           "exports the same path."),
        Parameter("wait_for_leasetime_on_stop", type="boolean", default=False,
                  shortdesc="Wait out the NFSv4 lease time on stop",
                  longdesc="After unexporting, wait the NFSv4 lease time (plus 2 s) so the "
                           "kernel drops its handles on the filesystem. The wait is bounded by "
                           "the stop timeout, which must allow for it."),
        Parameter("rmtab_backup", default=".rmtab", check=parse_backup_name,
                  shortdesc="File name of the rmtab backup",
                  longdesc="Name of the file, inside each exported directory, that keeps that "
                           "directory's lines of /var/lib/nfs/rmtab across failover. It is "
                           "refreshed by monitor, so configure a monitor operation. none "
                           "disables the backup."),
    ],
    actions=[
        Action("start", timeout=40, handler=start),
        Action("stop", timeout=120, handler=stop),
        Action("monitor", timeout=20, interval=10, depth=0, handler=monitor),
        Action("validate-all", timeout=30, handler=validate_all),
        Action("meta-data", timeout=5),
    ],
    validate=check_environment,
)


if __name__ == "__main__":
    AGENT.main()
