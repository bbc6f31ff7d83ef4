"""ocf:pyha:mfsmaster - a MooseFS master that restores its metadata safely.

A MooseFS 3 Community master has no standby: after a crash (kill -9, power
cut) its data directory holds changelogs but no metadata.mfs, and the master
only starts again through ``mfsmaster -a``, which replays changelogs onto the
newest metadata file it finds.  That step is where data is lost quietly:

* a torn last changelog line makes ``-a`` skip the whole file and exit 0 at an
  old version;
* a metalogger that lagged behind gives a restore that exits 0 without the
  latest changes, unless the dead master's own changelogs are added;
* ``-i`` "fixes" a changelog gap by dropping every change after it;
* an old data directory starts without complaint and chunkservers and clients
  join it (split brain with an old filesystem).

So start gathers every source (the data directory, a local metalogger's
directory, ...), cuts torn last lines in copies, never passes ``-i``, refuses
files of different filesystems and metadata older than the version the cluster
last saw (a crm_config attribute kept up to date by monitor), and accepts a
restore only when its version covers the highest change present.  Two methods:

* single-pass (default): the other sources' files are placed into DATA_PATH
  (originals kept), ``mfsmaster -a start`` restores while it starts, and the
  version it serves is checked over its client port before start returns -
  before the floating IP that follows it is up.  A refused master is killed
  unsaved and DATA_PATH put back as it was.  One metadata load, as bare ``-a``.
* staged: ``mfsmaster -a restore`` in a staging copy, its version read with
  mfsmetadump, then installed and started: nothing listens before the check,
  at the cost of a second metadata load.

Monitor is in-process (no fork): the fcntl lock on DATA_PATH/.mfsmaster.lock
must be held and the master must answer an info request on its client port.
"""

import os
import time

from ocf_agents.ocf import (
    ERR_CONFIGURED, ERR_GENERIC, ERR_INSTALLED, NOT_RUNNING, SUCCESS,
    Action, Agent, OCFError, Parameter, have_binary, read_file, write_file_atomically,
)

LOCK_FILE = ".mfsmaster.lock"
STAGING_DIR = "pyha-restore.staging"
REPLACED_PREFIX = "pyha-replaced."
REPLACED_KEEP = 3

# MooseFS protocol (MFSCommunication.h): a request is a 32-bit command, a
# 32-bit length and the payload, big-endian.
CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST = 500, 501
CLTOMA_INFO, MATOCL_INFO = 510, 511
CSERV_ENTRY_SIZE = 69  # since 3.0.38
CSERV_DISCONNECTED = 1

CONFIG_DEFAULTS = {
    "DATA_PATH": "/var/lib/mfs",
    "WORKING_USER": "mfs",
    "WORKING_GROUP": "",
    "MATOCL_LISTEN_HOST": "*",
    "MATOCL_LISTEN_PORT": "9421",
    "METADATA_SAVE_FREQ": "1",
}


# --- parameter checks -----------------------------------------------------------
def parse_absolute_path(value):
    if not value.startswith("/") or not value.isprintable():
        raise ValueError(f"{value!r} is not an absolute path")
    return value


def parse_program(value):
    if value.startswith("-") or not value.isprintable() or " " in value:
        raise ValueError(f"{value!r} is not a program name or path")
    return value


def parse_sources(value):
    return [parse_absolute_path(path).rstrip("/") or "/" for path in value.split()]


def parse_restore_policy(value):
    if value not in ("auto", "never"):
        raise ValueError(f"{value!r} is not auto or never")
    return value


def parse_restore_method(value):
    if value not in ("single-pass", "staged"):
        raise ValueError(f"{value!r} is not single-pass or staged")
    return value


def parse_attribute_name(value):
    if value and (not (value[0].isascii() and (value[0].isalpha() or value[0] == "_"))
                  or not all(c.isascii() and (c.isalnum() or c in "-_.:") for c in value)):
        raise ValueError(f"{value!r} is not a valid attribute name")
    return value


# --- the master's configuration ---------------------------------------------------
class MasterConfig:
    """The settings of mfsmaster.cfg the agent needs, with MooseFS's defaults."""

    def __init__(self, path, text):
        self.path = path
        values = dict(CONFIG_DEFAULTS)
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            key, sep, value = line.partition("=")
            if sep and key.strip():
                values[key.strip()] = value.strip()
        self.values = values
        self.data_path = values["DATA_PATH"].rstrip("/") or "/"
        self.user = values["WORKING_USER"]
        self.group = values["WORKING_GROUP"]
        host = values["MATOCL_LISTEN_HOST"]
        self.client_host = "127.0.0.1" if host in ("*", "0.0.0.0", "") else host
        try:
            self.client_port = int(values["MATOCL_LISTEN_PORT"])
            self.save_freq_hours = float(values["METADATA_SAVE_FREQ"])
        except ValueError as err:
            raise OCFError(ERR_CONFIGURED, f"{path}: {err}") from None
        if not self.data_path.startswith("/"):
            raise OCFError(ERR_CONFIGURED, f"{path}: DATA_PATH {self.data_path!r} is not absolute")

    def path_in_data(self, name):
        return os.path.join(self.data_path, name)

    def ids(self):
        """uid, gid of WORKING_USER/WORKING_GROUP (the group defaults to the user's)."""
        import grp
        import pwd
        try:
            user = pwd.getpwnam(self.user)
            gid = grp.getgrnam(self.group).gr_gid if self.group else user.pw_gid
        except KeyError as err:
            raise OCFError(ERR_CONFIGURED, f"{self.path}: unknown user or group {err}") from None
        return user.pw_uid, gid


def load_config(res):
    path = res.params.config
    try:
        text = read_file(path)
    except OSError as err:
        raise OCFError(ERR_CONFIGURED, f"cannot read the master configuration {path}: "
                                       f"{err}") from None
    if text is None:
        raise OCFError(ERR_INSTALLED if res.action in ("monitor",) else ERR_CONFIGURED,
                       f"master configuration {path} not found")
    return MasterConfig(path, text)


# --- the running master: lock and protocol -------------------------------------------
def lock_holder(path):
    """PID holding the fcntl write lock on path, or None (F_GETLK: we never take it)."""
    import fcntl
    import struct
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        layout = "hhqqi4x"  # struct flock on Linux: type, whence, start, len, pid
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, fcntl.F_WRLCK, 0, 0, 0, 0))
        kind, _, _, _, pid = struct.unpack(layout, answer)
        return None if kind == fcntl.F_UNLCK else pid
    finally:
        os.close(fd)


class MasterInfo:
    def __init__(self, metaversion, last_save, chunkservers):
        self.metaversion = metaversion
        self.last_save = last_save          # unix time of the last successful store, 0 = none
        self.chunkservers = chunkservers    # connected chunkservers, None if not asked


def query_master(host, port, timeout, count_chunkservers=False):
    """Ask the master for its info (as mfscli does); None when it does not answer."""
    import socket
    import struct
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            info = _request(sock, CLTOMA_INFO, MATOCL_INFO)
            servers = _request(sock, CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST) \
                if count_chunkservers else None
    except (OSError, ValueError):
        return None
    # 3.0 answers 121..149 bytes; the last 8 of the HA block are the metadata
    # version; 137/149-byte answers carry 8 more bytes (free space) before it.
    if len(info) < 121:
        return None
    shift = 8 if len(info) in (137, 149) else 0
    last_save = struct.unpack(">L", info[shift + 92:shift + 96])[0]
    metaversion = struct.unpack(">Q", info[shift + 113:shift + 121])[0]
    connected = None
    if servers is not None:
        connected = sum(1 for i in range(0, len(servers) - CSERV_ENTRY_SIZE + 1, CSERV_ENTRY_SIZE)
                        if not servers[i] & CSERV_DISCONNECTED)
    return MasterInfo(metaversion, last_save, connected)


def _request(sock, command, expected):
    import struct
    sock.sendall(struct.pack(">LL", command, 0))
    answer, length = struct.unpack(">LL", _recv(sock, 8))
    if answer != expected or length > 1 << 24:
        raise ValueError(f"unexpected answer {answer} ({length} bytes)")
    return _recv(sock, length)


def _recv(sock, length):
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise ValueError("connection closed by the master")
        data += chunk
    return data


def master_status(res, cfg, count_chunkservers=False):
    """(lock holder pid or None, MasterInfo or None)."""
    holder = lock_holder(cfg.path_in_data(LOCK_FILE))
    if holder is None:
        return None, None
    timeout = max(0.5, min(5.0, res.time_left() - 1))
    return holder, query_master(cfg.client_host, cfg.client_port, timeout, count_chunkservers)


# --- metadata files and changelogs --------------------------------------------------
METADATA_NAMES = ("metadata.mfs", "metadata.mfs.back", "metadata_ml.mfs.back")
CHANGELOG_PREFIXES = ("changelog.", "changelog_ml.", "changelog_ml_back.")


def is_metadata_file(name):
    if name in METADATA_NAMES or name == "metadata_ml.tmp":
        return True
    base, _, number = name.rpartition(".")
    return base in METADATA_NAMES and number.isdigit()


def is_changelog(name):
    if not name.endswith(".mfs"):
        return False
    for prefix in CHANGELOG_PREFIXES:
        if name.startswith(prefix) and name[len(prefix):-4].isdigit():
            return True
    return False


def metadata_header(path):
    """b"MFSM NEW" / b"MFSM 2.0"..., or None for a file that is no metadata file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    return head if head.startswith(b"MFSM ") and len(head) == 8 else None


def last_change(path):
    """Number of the last complete change in a changelog (None if it has none).

    Reads only the tail: changelogs of big filesystems are large.
    """
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block = 4096
        while True:
            start = max(0, size - block)
            f.seek(start)
            tail = f.read(size - start)
            end = tail.rfind(b"\n")
            begin = tail.rfind(b"\n", 0, end) if end > 0 else -1
            if end >= 0 and (begin >= 0 or start == 0):
                line = tail[begin + 1:end]
                number = line.split(b":", 1)[0]
                return int(number) if number.isdigit() else None
            if start == 0:
                return None
            block *= 4


def cut_torn_line(path):
    """Truncate a changelog after its last newline; return the bytes cut."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        position = size
        while position > 0:
            step = min(4096, position)
            f.seek(position - step)
            chunk = f.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = position - step + newline + 1
                break
            position -= step
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
        return size - keep


def metadata_version(res, path):
    """(version, metadata id or None) of a metadata file, read with mfsmetadump.

    An empty new filesystem ("MFSM NEW") is version 1 with no id yet.
    """
    header = metadata_header(path)
    if header is None:
        raise OCFError(ERR_GENERIC, f"{path} is not a MooseFS metadata file")
    if header == b"MFSM NEW":
        return 1, None
    for line in head_lines(res, [res.params.mfsmetadump, path], 4):
        if line.startswith("# version:"):
            # "# version: 115 ; fileid: 0x6B016BA7CB1B4C27"
            fields = line.replace(";", " ").split()
            version = int(fields[2])
            metaid = int(fields[4], 16) if len(fields) > 4 and fields[3] == "fileid:" else None
            return version, metaid
    raise OCFError(ERR_GENERIC, f"mfsmetadump could not read the version of {path}")


def head_lines(res, argv, count):
    """The first count lines of a command's output; the command is then killed.

    mfsmetadump prints the whole filesystem; only its header is wanted.
    """
    import subprocess
    try:
        proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
                                errors="replace")
    except FileNotFoundError:
        raise OCFError(ERR_INSTALLED, f"{argv[0]} is not installed") from None
    import threading
    timed_out = []
    # A hanging tool must not outlive the action: kill it when the time is up.
    timer = threading.Timer(max(0.5, res.time_left() - 1),
                            lambda: (timed_out.append(True), proc.kill()))
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if len(lines) >= count:
                break
    finally:
        timer.cancel()
        proc.kill()
        proc.stdout.close()
        proc.wait()
    if timed_out:
        raise OCFError(ERR_GENERIC, f"{argv[0]} {argv[-1]} timed out (killed)")
    res.log.debug(f"{argv[0]} {argv[-1]}: {lines!r}")
    return lines


class Inventory:
    """The metadata files and changelogs found in a set of directories."""

    def __init__(self, directories):
        self.metadata = []     # paths
        self.changelogs = []   # paths
        for directory in directories:
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            except OSError as err:
                raise OCFError(ERR_CONFIGURED, f"cannot read metadata source {directory}: "
                                               f"{err.strerror}") from None
            for name in names:
                path = os.path.join(directory, name)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                if is_metadata_file(name):
                    header = metadata_header(path)
                    # metadata_ml.tmp is a download in progress unless it is the 8-byte new file
                    if header and (name != "metadata_ml.tmp" or header == b"MFSM NEW"):
                        self.metadata.append(path)
                elif is_changelog(name) and os.path.getsize(path) > 0:
                    self.changelogs.append(path)

    def highest_change(self):
        numbers = [n for n in (last_change(p) for p in self.changelogs) if n is not None]
        return max(numbers) if numbers else None


# --- the cluster's record of the metadata version ---------------------------------------
def record_name(res):
    return res.params.version_attribute or f"{res.instance_without_clone_suffix}-metadata-version"


def read_record(res):
    """(metadata id, version) the cluster last saw, or None; asked once per action."""
    if not hasattr(res, "mfs_record"):
        res.mfs_record = parse_record(res, res.cluster_attribute(record_name(res)))
    return res.mfs_record


def parse_record(res, value):
    if not value:
        return None
    metaid, _, version = value.partition(":")
    try:
        return (int(metaid, 16) if metaid else None), int(version)
    except ValueError:
        res.log.warning(f"ignoring unreadable cluster attribute {record_name(res)}={value!r}")
        return None


def write_record(res, metaid, version):
    """Record (id, version) in the cluster, only ever upwards; cached in the state dir."""
    cache = res.state_path(f"{res.instance_without_clone_suffix}.recorded")
    value = f"{metaid:X}:{version}" if metaid is not None else f":{version}"
    if read_file(cache) == value:
        return
    if res.cluster_attribute(record_name(res), value):
        write_file_atomically(cache, value)


def remember_metaid(res, metaid):
    path = res.state_path(f"{res.instance_without_clone_suffix}.metaid")
    write_file_atomically(path, "" if metaid is None else f"{metaid:X}")


def remembered_metaid(res):
    text = read_file(res.state_path(f"{res.instance_without_clone_suffix}.metaid"))
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def changelog_metaid(path):
    """The id in a changelog's SETMETAID line (change 1 of a new filesystem), or None.

    A brand-new filesystem's metadata file carries no id; the master logs the
    id it chose as its first change, so only the head of a changelog is read.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    marker = head.find(b"|SETMETAID(")
    if marker >= 0:
        number = head[marker + 11:head.find(b")", marker)]
        if number.isdigit():
            return int(number)
    return None


def metaid_from_changelog(cfg):
    for name in ("changelog.0.mfs", "changelog.1.mfs"):
        metaid = changelog_metaid(cfg.path_in_data(name))
        if metaid is not None:
            return metaid
    return None


def check_single_filesystem(res, inventory):
    """Refuse sources that mix files of different filesystems (metadata ids).

    Returns (the filesystem's id or None, the newest metadata file's version).

    mfsmaster -a would pick the newest metadata file whatever its id and ignore
    the others, silently starting the wrong filesystem.
    """
    owners = {}
    newest = 0
    for path in inventory.metadata:
        version, metaid = metadata_version(res, path)
        newest = max(newest, version)
        if metaid is not None:
            owners.setdefault(metaid, []).append(path)
    for path in inventory.changelogs:
        metaid = changelog_metaid(path)
        if metaid is not None:
            owners.setdefault(metaid, []).append(path)
    if len(owners) > 1:
        described = "; ".join(f"{metaid:X}: {', '.join(paths)}" for metaid, paths in owners.items())
        raise OCFError(ERR_GENERIC, f"metadata id mismatch: the sources hold files of "
                       f"{len(owners)} filesystems ({described}); remove the foreign files")
    return next(iter(owners), None), newest


def check_against_record(res, metaid, version, what):
    recorded = read_record(res)
    if recorded is None:
        return
    recorded_id, recorded_version = recorded
    if recorded_id is not None and metaid is not None and recorded_id != metaid:
        raise OCFError(ERR_GENERIC,
                       f"{what} belongs to filesystem {metaid:X}, the cluster runs {recorded_id:X} "
                       f"(attribute {record_name(res)}): refusing to start a different filesystem")
    if version < recorded_version:
        raise OCFError(ERR_GENERIC,
                       f"{what} is at metadata version {version}, older than version "
                       f"{recorded_version} the cluster has seen (attribute {record_name(res)}): "
                       "refusing to start a stale master; start it where newer metadata is, "
                       "or add that node's files to metadata_sources")


# --- start ---------------------------------------------------------------------------
def start(res):
    cfg = load_config(res)
    holder, info = master_status(res, cfg)
    if holder is not None:
        if info is not None:
            res.log.info(f"mfsmaster already running (pid {holder})")
            return SUCCESS
        wait_for_lock_release(res, cfg, min(5, res.time_left() / 4))
        if lock_holder(cfg.path_in_data(LOCK_FILE)) is not None:
            raise OCFError(ERR_GENERIC, f"{cfg.path_in_data(LOCK_FILE)} is held by pid {holder}, "
                           "which does not answer on the client port")
    if not os.path.isdir(cfg.data_path):
        raise OCFError(ERR_GENERIC, f"DATA_PATH {cfg.data_path} is not a directory (not mounted?)")

    local = Inventory([cfg.data_path])
    everything = Inventory([cfg.data_path, *res.params.metadata_sources])
    current = cfg.path_in_data("metadata.mfs")
    highest = everything.highest_change()
    version = metaid = None
    if current in local.metadata:
        version, metaid = metadata_version(res, current)
    if version is not None and (highest is None or highest < version):
        res.log.info(f"metadata.mfs is current (version {version}): no restore needed")
        check_against_record(res, metaid, version, "metadata.mfs")
        launch(res, cfg)
    elif not everything.metadata and highest is None:
        metaid = create_filesystem(res, cfg)
        launch(res, cfg)
    else:
        if res.params.restore == "never":
            raise OCFError(ERR_GENERIC,
                           "metadata.mfs is missing or older than the changelogs (changes up to "
                           f"{highest}) and restore=never: restore it by hand with mfsmaster -a")
        metaid = restore(res, cfg, everything, highest)

    if metaid is None:
        metaid = metaid_from_changelog(cfg)
    remember_metaid(res, metaid)
    _, info = master_status(res, cfg)
    if info is not None:
        write_record(res, metaid, info.metaversion)
    return SUCCESS


def create_filesystem(res, cfg):
    if read_record(res) is not None:
        raise OCFError(ERR_GENERIC,
                       f"no metadata in {cfg.data_path} or metadata_sources, but the cluster has "
                       f"recorded a filesystem (attribute {record_name(res)}): refusing to start "
                       "an empty one in its place")
    if not res.params.create_filesystem:
        raise OCFError(ERR_GENERIC,
                       f"no metadata in {cfg.data_path} or metadata_sources; set "
                       "create_filesystem=true to create a new, empty filesystem")
    if not os.path.isfile(res.params.empty_metadata):
        raise OCFError(ERR_INSTALLED, f"{res.params.empty_metadata} not found")
    res.log.notice(f"creating a new, empty MooseFS filesystem in {cfg.data_path}")
    uid, gid = cfg.ids()
    target = cfg.path_in_data("metadata.mfs")
    tmp = target + ".pyha-new"
    if os.path.lexists(tmp):
        os.unlink(tmp)  # a leftover, or a planted symlink: never written through
    copy_owned(res.params.empty_metadata, tmp, uid, gid)
    os.rename(tmp, target)
    return None


def restore(res, cfg, inventory, highest):
    """Restore the newest metadata from every source and start the master on it;
    returns the filesystem's id.

    Both methods refuse files of different filesystems and a result older than
    the cluster's record before anything is changed, never pass -i, and accept
    a restore only when the version reached covers every change present.
    """
    metaid, newest_metadata = check_single_filesystem(res, inventory)
    expected = max(newest_metadata, 0 if highest is None else highest + 1)
    check_against_record(res, metaid, expected, "the metadata to restore")
    res.log.info(f"restoring metadata from {len(inventory.metadata)} metadata file(s) and "
                 f"{len(inventory.changelogs)} changelog(s), changes up to {highest} "
                 f"({res.params.restore_method})")
    if res.params.restore_method == "staged":
        version = restore_staged(res, cfg, inventory, expected, metaid)
        launch(res, cfg)
    else:
        version = restore_while_starting(res, cfg, inventory, expected, metaid)
    res.log.notice(f"restored metadata version {version} in {cfg.data_path}")
    return metaid


def check_restored_version(res, version, expected, metaid, what):
    if version < expected:
        raise OCFError(ERR_GENERIC,
                       f"{what} stopped at metadata version {version} but the sources reach "
                       f"version {expected}: refusing a restore that drops changes")
    check_against_record(res, metaid, version, what)


# --- restore method "single-pass": mfsmaster -a start on DATA_PATH, checked before use ---------
def restore_while_starting(res, cfg, inventory, expected, metaid):
    """Give DATA_PATH every source's files, run mfsmaster -a start, check the version it serves.

    One metadata load instead of the staged method's two.  DATA_PATH's own files
    stay as they are, except that a torn changelog gives way to a cut copy (the
    original kept in pyha-replaced.*) and changelog.0.mfs is renamed, so that a
    master which must be rolled back never appends to a file of the dead one.
    Until start returns the floating IP is not up, so nobody but this agent
    talks to the master before its version has been checked.
    """
    changes = DataPathChanges(cfg)
    try:
        place_sources(res, cfg, inventory, changes)
        launch(res, cfg, auto_restore=True)
        _, info = master_status(res, cfg)
        if info is None:
            raise OCFError(ERR_GENERIC, "mfsmaster -a start: the master stopped answering")
        check_restored_version(res, info.metaversion, expected, metaid, "mfsmaster -a start")
    except BaseException:
        if stop_unchecked_master(res, cfg):
            try:
                changes.undo()
            except OSError as err:  # the reason the restore failed stays the exit reason
                res.log.error(f"could not put {cfg.data_path} back as it was: {err}")
        raise
    prune_replaced(cfg)
    return info.metaversion


class DataPathChanges:
    """What a single-pass restore changed in DATA_PATH, so that a failure can undo it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.before = set(os.listdir(cfg.data_path))
        self.added = []     # names placed into DATA_PATH
        self.moved = []     # (name, where the original went)
        self.replaced = None

    def free_name(self, template):
        """template.format(n) for the first n >= 1 not in use."""
        number = 1
        while template.format(number) in self.before or template.format(number) in self.added:
            number += 1
        return template.format(number)

    def add(self, staged, name):
        os.rename(staged, self.cfg.path_in_data(name))
        self.added.append(name)

    def move(self, name, target):
        os.rename(self.cfg.path_in_data(name), target)
        self.moved.append((name, target))

    def move_aside(self, name):
        if self.replaced is None:
            self.replaced = new_replaced_dir(self.cfg)
        self.move(name, os.path.join(self.replaced, name))
        return self.replaced

    def undo(self):
        """Back to the directory as it was.

        What the refused master wrote (its lock files, a changelog.0.mfs with its
        own session records) is deleted: nobody could reach it, so it holds no
        one's data, and left behind it would join the next restore as a fork."""
        import shutil
        for name in reversed(self.added):
            os.unlink(self.cfg.path_in_data(name))
        # An original renamed inside DATA_PATH (changelog.0.mfs) is not new: keep it.
        ours = self.before - {name for name, _ in self.moved} | {
            os.path.basename(target) for _, target in self.moved
            if os.path.dirname(target) == self.cfg.data_path}
        for name in sorted(set(os.listdir(self.cfg.data_path)) - ours):
            if name in (LOCK_FILE, ".bgwriter.lock") or name.startswith(
                    ("changelog.", "metadata.", "stats.")):
                os.unlink(self.cfg.path_in_data(name))
        for name, target in reversed(self.moved):
            os.rename(target, self.cfg.path_in_data(name))
        if self.replaced is not None:
            shutil.rmtree(self.replaced, ignore_errors=True)


def new_replaced_dir(cfg):
    """DATA_PATH/pyha-replaced.<time>, where replaced originals are kept."""
    replaced = cfg.path_in_data(REPLACED_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(replaced, 0o750, exist_ok=True)
    return replaced


def prune_replaced(cfg):
    """Keep the newest REPLACED_KEEP pyha-replaced.* directories."""
    import shutil
    old = sorted(n for n in os.listdir(cfg.data_path) if n.startswith(REPLACED_PREFIX))
    for name in old[:-REPLACED_KEEP]:
        shutil.rmtree(cfg.path_in_data(name), ignore_errors=True)


def place_sources(res, cfg, inventory, changes):
    """Copy (or hard-link) other sources' files into DATA_PATH; replace torn local changelogs."""
    uid, gid = cfg.ids()
    staging = fresh_staging(cfg)
    try:
        data_device = os.stat(cfg.data_path).st_dev
        for path in inventory.metadata + inventory.changelogs:
            name = os.path.basename(path)
            local = os.path.dirname(path) == cfg.data_path
            changelog = path in inventory.changelogs
            torn = changelog and ends_torn(path)
            if local and not torn:
                continue
            staged = os.path.join(staging, f"{len(changes.added)}.{name}")
            if not changelog and can_link(path, name, uid, data_device):
                os.link(path, staged)
            else:
                copy_owned(path, staged, uid, gid)
                cut = cut_torn_line(staged) if torn else 0
                if cut:
                    res.log.warning(f"{path}: cut a torn last line ({cut} bytes) in a copy")
            if changelog:
                changes.add(staged, changes.free_name("changelog.{}.mfs"))
            else:
                changes.add(staged, changes.free_name("metadata.mfs.back.{}"))
            if local:  # only now: killed in between, both are there and nothing is missing
                target = changes.move_aside(name)
                res.log.info(f"{path}: original kept in {target}")
        if os.path.lexists(cfg.path_in_data("changelog.0.mfs")):  # not moved aside as torn
            changes.move("changelog.0.mfs",
                         cfg.path_in_data(changes.free_name("changelog.{}.mfs")))
    finally:
        import shutil
        shutil.rmtree(staging, ignore_errors=True)


def ends_torn(path):
    """True when a changelog's last byte is not a newline (a torn last line)."""
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def can_link(path, name, uid, device):
    """Metadata files are only ever replaced by rename, so a hard link is a stable copy,
    provided it is on DATA_PATH's filesystem and the master (uid) can read it."""
    st = os.stat(path, follow_symlinks=False)
    return (name != "metadata_ml.tmp" and st.st_dev == device and st.st_uid == uid
            and st.st_mode & 0o400 != 0)


def copy_owned(source, target, uid, gid):
    """Copy source to a new file target (never through a symlink) owned by uid:gid."""
    import shutil
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)
        os.fchown(out.fileno(), uid, gid)


def fresh_staging(cfg):
    """An empty DATA_PATH/pyha-restore.staging only root can write to (0700)."""
    import shutil
    staging = cfg.path_in_data(STAGING_DIR)
    if os.path.islink(staging):
        os.unlink(staging)  # planted: never rmtree'd or written through
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging, 0o700)
    return staging


def stop_unchecked_master(res, cfg):
    """SIGKILL a master whose restore was refused (no save of its metadata); True when gone."""
    holder = lock_holder(cfg.path_in_data(LOCK_FILE))
    if holder is not None:
        try:
            kill_master(holder)
        except OCFError as err:
            res.log.error(err.reason)
            return False
        wait_for_lock_release(res, cfg, max(1.0, res.time_left() - 1))
    return lock_holder(cfg.path_in_data(LOCK_FILE)) is None


# --- restore method "staged": mfsmaster -a restore on a copy, checked before install -----------
def restore_staged(res, cfg, inventory, expected, metaid):
    """Restore into a staging directory, check the result with mfsmetadump, install it."""
    import shutil
    uid, gid = cfg.ids()
    staging = fresh_staging(cfg)
    try:
        gather(res, inventory, staging, uid, gid)
        # Only now does WORKING_USER get the directory (mfsmaster -a writes there):
        # while root copies files in, nobody else can plant a symlink to write through.
        os.chmod(staging, 0o750)
        os.chown(staging, uid, gid)
        staged_cfg = os.path.join(staging, "pyha-restore.cfg")
        write_file_atomically(staged_cfg, "".join(
            f"{key} = {cfg.values[key]}\n" for key in ("WORKING_USER", "WORKING_GROUP")
            if cfg.values[key]) + f"DATA_PATH = {staging}\n", mode=0o600)
        result = res.run([res.params.mfsmaster, "-c", staged_cfg, "-a", "restore"],
                         timeout=max(5.0, res.time_left() - 15), quiet=True)
        if result.rc != 0:
            raise OCFError(ERR_GENERIC, mfsmaster_failure(result, "mfsmaster -a restore"))
        restored = os.path.join(staging, "metadata.mfs")
        if metadata_header(restored) is None:
            raise OCFError(ERR_GENERIC, "mfsmaster -a restore wrote no metadata.mfs")
        version, _ = metadata_version(res, restored)
        check_restored_version(res, version, expected, metaid, "mfsmaster -a restore")
        install(res, cfg, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version


def gather(res, inventory, staging, uid, gid):
    """Copy every source file into staging under unique names; cut torn lines.

    mfsmaster -a reads each file's content to choose the newest metadata and
    chain changelogs, so the names only need the right family and to be unique.
    """
    for index, source in enumerate(inventory.metadata, 1):
        copy_owned(source, os.path.join(staging, f"metadata.mfs.back.{index}"), uid, gid)
    for index, source in enumerate(inventory.changelogs, 1):
        target = os.path.join(staging, f"changelog.{index}.mfs")
        copy_owned(source, target, uid, gid)
        cut = cut_torn_line(target)
        if cut:
            res.log.warning(f"{source}: cut a torn last line ({cut} bytes) in the staging copy")


def mfsmaster_failure(result, command):
    """The exit reason for a failed mfsmaster command (-a restore, -a start, start)."""
    output = result.out + result.err
    if result.timed_out:
        return f"{command} timed out (raise the start timeout)"
    if "hole in change files" in output:
        detail = next((line for line in output.splitlines() if "hole in change files" in line), "")
        return f"changelog gap: {detail.strip()}; refusing to restore past it (never -i)"
    if "different id number" in output:
        return ("metadata id mismatch: the sources hold files of different filesystems; "
                "remove the foreign files")
    if "can't find valid metadata file" in output:
        return "no valid metadata file among DATA_PATH and metadata_sources"
    last = [line for line in output.replace("\r", "\n").splitlines() if line.strip()][-3:]
    return f"{command} failed (exit {result.rc}): {' / '.join(last)}"


def install(res, cfg, staging):
    """Put the restored metadata in, then move the old metadata and changelogs aside.

    In this order an agent killed half-way leaves a directory that starts (the
    restored metadata.mfs is there) or restores again (the old files are)."""
    replaced = new_replaced_dir(cfg)
    for name in ("metadata.crc", "metadata.mfs"):  # metadata.mfs last: it makes the directory valid
        if os.path.lexists(cfg.path_in_data(name)):
            os.rename(cfg.path_in_data(name), os.path.join(replaced, name))
        if os.path.exists(os.path.join(staging, name)):
            os.rename(os.path.join(staging, name), cfg.path_in_data(name))
    for name in os.listdir(cfg.data_path):
        # Only the master's own files: a metalogger may share DATA_PATH and its
        # changelog_ml*/metadata_ml* files are its own (and only ever read here).
        if name.startswith(("changelog.", "metadata.mfs.")) and (
                is_metadata_file(name) or is_changelog(name)):
            os.rename(cfg.path_in_data(name), os.path.join(replaced, name))
    res.log.info(f"previous metadata and changelogs kept in {replaced}")
    prune_replaced(cfg)


def launch(res, cfg, auto_restore=False):
    """mfsmaster start (with -a: restoring from DATA_PATH's files); returns once it answers."""
    argv = [res.params.mfsmaster, *(["-a"] if auto_restore else []), "-c", cfg.path, "start"]
    result = res.run(argv, timeout=max(5.0, res.time_left() - 5), quiet=True)
    if result.rc != 0:
        wait_for_lock_release(res, cfg, min(5, res.time_left() - 1))
        command = "mfsmaster -a start" if auto_restore else "mfsmaster start"
        raise OCFError(ERR_GENERIC, mfsmaster_failure(result, command))
    while True:
        holder, info = master_status(res, cfg)
        if holder is not None and info is not None:
            res.log.info(f"mfsmaster started (pid {holder}, metadata version {info.metaversion})")
            return
        if res.time_left() < 2:
            raise OCFError(ERR_GENERIC, "mfsmaster started but never answered on "
                           f"{cfg.client_host}:{cfg.client_port}")
        time.sleep(0.05)


# --- monitor ---------------------------------------------------------------------------
def monitor(res):
    cfg = load_config(res)
    deep = res.check_level >= 10
    holder, info = master_status(res, cfg, count_chunkservers=deep)
    if holder is None:
        return NOT_RUNNING
    if info is None:
        raise OCFError(ERR_GENERIC, f"mfsmaster (pid {holder}) holds its lock but does not answer "
                       f"on {cfg.client_host}:{cfg.client_port}")
    metaid = remembered_metaid(res)
    if metaid is None:
        metaid = metaid_from_changelog(cfg)
        if metaid is not None:
            remember_metaid(res, metaid)
    write_record(res, metaid, info.metaversion)
    if deep and info.chunkservers < res.params.min_chunkservers:
        shortfall = (f"{info.chunkservers} chunkserver(s) connected, "
                     f"fewer than min_chunkservers={res.params.min_chunkservers}")
        # After a failover the chunkservers need a while to find the new master.
        uptime = master_uptime(cfg)
        if uptime is not None and uptime < res.params.chunkserver_grace:
            res.log.info(f"{shortfall}; master up {uptime:.0f} s, within chunkserver_grace")
        else:
            raise OCFError(ERR_GENERIC, shortfall)
    if res.check_level >= 20 and info.last_save:
        limit = res.params.max_save_age or (2 * cfg.save_freq_hours * 3600 + 600)
        age = time.time() - info.last_save
        if age > limit:
            raise OCFError(ERR_GENERIC, f"metadata last saved {int(age)} s ago "
                           f"(limit {int(limit)} s): check DATA_PATH space and the master's log")
    return SUCCESS


# --- stop ----------------------------------------------------------------------------
def stop(res):
    try:
        cfg = load_config(res)
    except OCFError as err:
        # No usable configuration, no DATA_PATH: nothing this resource can have started.
        res.log.warning(f"{err.reason}: nothing to stop")
        return SUCCESS
    lock = cfg.path_in_data(LOCK_FILE)
    if lock_holder(lock) is None:
        return SUCCESS
    # mfsmaster stop saves the metadata and waits; keep time to escalate.
    result = res.run([res.params.mfsmaster, "-c", cfg.path, "stop"],
                     timeout=max(1.0, res.time_left() * 0.8 - 3), quiet=True)
    if result.rc != 0:
        res.log.warning(f"mfsmaster stop exited {result.rc}: {(result.out + result.err).strip()}")
    wait_for_lock_release(res, cfg, max(0.0, res.time_left() * 0.5 - 2))
    holder = lock_holder(lock)
    if holder is not None:
        res.log.warning(f"mfsmaster (pid {holder}) did not stop in time: sending SIGKILL")
        kill_master(holder)
        wait_for_lock_release(res, cfg, max(1.0, res.time_left() - 1))
        if lock_holder(lock) is not None:
            raise OCFError(ERR_GENERIC, f"mfsmaster (pid {holder}) survived SIGKILL")
        return SUCCESS
    current = cfg.path_in_data("metadata.mfs")
    if metadata_header(current) is not None:
        try:
            version, metaid = metadata_version(res, current)
            write_record(res, metaid, version)
        except OCFError as err:
            res.log.warning(f"could not record the final metadata version: {err.reason}")
    return SUCCESS


def master_uptime(cfg):
    """Seconds since the master started (it writes its lock file when it starts)."""
    try:
        return max(0.0, time.time() - os.stat(cfg.path_in_data(LOCK_FILE)).st_mtime)
    except OSError:
        return None


def wait_for_lock_release(res, cfg, seconds):
    deadline = time.monotonic() + seconds
    lock = cfg.path_in_data(LOCK_FILE)
    while lock_holder(lock) is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def kill_master(pid):
    """SIGKILL the master and its children (the metadata writer).

    Only a process called mfsmaster: whatever else holds a lock on the file
    named by a (mis)configured DATA_PATH is never killed."""
    import signal
    name = (read_file(f"/proc/{pid}/comm", "") or "").strip()
    if name != "mfsmaster":
        raise OCFError(ERR_GENERIC, f"the lock on DATA_PATH is held by pid {pid} ({name or '?'}), "
                                    "which is not mfsmaster: not killing it")
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_file(f"/proc/{entry}/stat") or ""
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(pid):
                children.append(int(entry))
    for target in [pid, *children]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- validation ----------------------------------------------------------------------------
def check_environment(res):
    for program in (res.params.mfsmaster, res.params.mfsmetadump):
        if not have_binary(program):
            raise OCFError(ERR_INSTALLED, f"{program} is not installed (moosefs-master)")
    cfg = load_config(res)
    cfg.ids()
    for source in res.params.metadata_sources:
        if source == cfg.data_path:
            raise OCFError(ERR_CONFIGURED, f"metadata_sources lists DATA_PATH {source} itself")
    return cfg


def validate_all(res):
    check_environment(res)
    return SUCCESS


AGENT = Agent(
    name="mfsmaster",
    shortdesc="MooseFS master server with safe metadata restore",
    longdesc="""
Manages a MooseFS master (mfsmaster) that can fail over between nodes.

Start: when metadata.mfs is missing (the master crashed) or older than the
changelogs, every source - DATA_PATH and the directories in metadata_sources,
e.g. a metalogger's data directory or a copy of the dead master's changelogs -
is used; torn last changelog lines are cut in copies; "-i" is never passed.
Files of a different filesystem (metadata id), a changelog gap, or metadata
older than the version the cluster last saw make start fail with the reason.
restore_method=single-pass (default) puts the other sources' files into
DATA_PATH (replaced originals are kept in DATA_PATH/pyha-replaced.*), runs
"mfsmaster -a start" and succeeds only when the version the master serves
covers the highest change present (otherwise the master is killed unsaved and
DATA_PATH restored). restore_method=staged runs "mfsmaster -a restore" on a
staging copy, checks the result with mfsmetadump, installs it and starts.

While the master runs, monitor records its metadata id and version in the
crm_config attribute version_attribute, so a node with older metadata refuses
to start (the split brain MooseFS itself does not prevent).

Monitor: the master holds the fcntl lock on DATA_PATH/.mfsmaster.lock and
answers an info request on its client port (MATOCL_LISTEN_PORT), in-process.
OCF_CHECK_LEVEL=10 also requires min_chunkservers connected chunkservers;
OCF_CHECK_LEVEL=20 also requires a metadata save within max_save_age.

Stop: "mfsmaster stop" (which saves metadata.mfs), then SIGKILL when the stop
timeout runs short; returns when the lock is released.

DATA_PATH, WORKING_USER/WORKING_GROUP and MATOCL_LISTEN_HOST/PORT are read
from the configuration file. The master runs in the network namespace the agent
runs in. Put a floating IP (ocf:heartbeat:IPaddr2) in the same group, after
this resource: chunkservers, metaloggers and clients then reach the master only
once start has checked the version it serves (the master listens on "*" by
default and needs no VIP to start).
""",
    parameters=[
        Parameter("config", default="/etc/mfs/mfsmaster.cfg", check=parse_absolute_path,
                  unique=True, shortdesc="mfsmaster.cfg of this master",
                  longdesc="The master's configuration file; DATA_PATH, WORKING_USER, "
                           "WORKING_GROUP and MATOCL_LISTEN_HOST/PORT are read from it."),
        Parameter("mfsmaster", default="mfsmaster", check=parse_program,
                  shortdesc="mfsmaster binary", longdesc="Name on PATH or full path of mfsmaster."),
        Parameter("mfsmetadump", default="mfsmetadump", check=parse_program,
                  shortdesc="mfsmetadump binary",
                  longdesc="Name on PATH or full path of mfsmetadump (reads metadata versions)."),
        Parameter("restore", default="auto", check=parse_restore_policy,
                  shortdesc="Restore policy: auto or never",
                  longdesc="auto: restore metadata with mfsmaster -a (safely, see above) when "
                           "metadata.mfs is missing or older than the changelogs. never: fail "
                           "the start instead, for an administrator to restore by hand."),
        Parameter("restore_method", default="single-pass", check=parse_restore_method,
                  shortdesc="How a restore runs: single-pass or staged",
                  longdesc="single-pass: the sources' files are put into DATA_PATH (originals "
                           "kept), mfsmaster -a start restores while starting, and start "
                           "succeeds only once the master serves the version the sources reach; "
                           "otherwise the master is killed unsaved and DATA_PATH put back. One "
                           "metadata load: failover as fast as a bare mfsmaster -a. Order "
                           "the floating IP after this resource, so that nobody reaches the "
                           "master before the check; where it must come first, use staged. "
                           "staged: "
                           "mfsmaster -a restore on a copy, checked with mfsmetadump before it "
                           "is installed and started; nothing listens before the check, at the "
                           "cost of loading the metadata twice."),
        Parameter("metadata_sources", default="", check=parse_sources,
                  shortdesc="Extra directories to restore from",
                  longdesc="Space-separated directories whose metadata files and changelogs are "
                           "gathered with DATA_PATH's for a restore, e.g. the data directory of "
                           "a metalogger on this node (/var/lib/mfs of mfsmetalogger.cfg). They "
                           "are only read."),
        Parameter("create_filesystem", type="boolean", default=False,
                  shortdesc="Create an empty filesystem when no metadata exists",
                  longdesc="When neither DATA_PATH nor metadata_sources hold any metadata or "
                           "changelog and the cluster has recorded no filesystem, start a new, "
                           "empty filesystem (from empty_metadata). Off by default: an empty "
                           "DATA_PATH usually means a missing mount, not a new cluster."),
        Parameter("empty_metadata", default="/var/lib/mfs/metadata.mfs.empty",
                  check=parse_absolute_path, shortdesc="Template of an empty filesystem",
                  longdesc="Copied to DATA_PATH/metadata.mfs when create_filesystem applies."),
        Parameter("version_attribute", default="", check=parse_attribute_name,
                  shortdesc="Cluster attribute holding the metadata id and version",
                  longdesc="crm_config attribute with ID:VERSION of the running master's "
                           "metadata; default <resource>-metadata-version."),
        Parameter("min_chunkservers", type="integer", default=1,
                  shortdesc="Chunkservers required at OCF_CHECK_LEVEL 10",
                  longdesc="A monitor with OCF_CHECK_LEVEL=10 or more fails when fewer "
                           "chunkservers are connected."),
        Parameter("chunkserver_grace", type="time", default=120,
                  shortdesc="Time after start before min_chunkservers applies",
                  longdesc="Chunkservers reconnect to a new master some seconds after a "
                           "failover. Within this time after the master started, a depth-10 "
                           "monitor logs a shortfall of chunkservers instead of failing."),
        Parameter("max_save_age", type="time", default=None,
                  shortdesc="Oldest metadata save accepted at OCF_CHECK_LEVEL 20",
                  longdesc="A monitor with OCF_CHECK_LEVEL=20 fails when the master has not "
                           "saved its metadata for longer; default twice METADATA_SAVE_FREQ "
                           "plus 10 minutes."),
    ],
    actions=[
        Action("start", timeout=300, handler=start),
        Action("stop", timeout=120, handler=stop),
        Action("monitor", timeout=20, interval=10, depth=0, handler=monitor),
        Action("validate-all", timeout=30, handler=validate_all),
        Action("meta-data", timeout=5),
    ],
    validate=check_environment,
)


if __name__ == "__main__":
    AGENT.main()
