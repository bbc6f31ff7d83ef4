"""MooseFS as ocf:pyha:mfsmaster manages it: the master's configuration, its metadata
files and changelogs, its client protocol, and the mfsmaster process (start, lock, kill).

No decisions here: which files to restore from, and whether a result may be served, are
the restore engine's (``ocf_agents.mfsrestore``); the lifecycle is the agent's
(``ocf_agents.mfsmaster``).
"""

import os
import time

from ocf_agents.ocf import ERR_CONFIGURED, ERR_GENERIC, ERR_INSTALLED, OCFError, read_file

LOCK_FILE = ".mfsmaster.lock"

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
    "MATOCS_LISTEN_PORT": "9420",
    "MATOML_LISTEN_PORT": "9419",
    "METADATA_SAVE_FREQ": "1",
}


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
            # clients, chunkservers, metaloggers: the connections a failover leaves dangling
            self.chunkserver_port = int(values["MATOCS_LISTEN_PORT"])
            self.ports = {self.client_port, self.chunkserver_port,
                          int(values["MATOML_LISTEN_PORT"])}
            self.save_freq_hours = float(values["METADATA_SAVE_FREQ"])
        except ValueError as err:
            raise OCFError(ERR_CONFIGURED, f"{path}: {err}") from None
        if not self.data_path.startswith("/"):
            raise OCFError(ERR_CONFIGURED, f"{path}: DATA_PATH {self.data_path!r} is not absolute")
        # Where the agent starts the master from and asks it: the user's file and client
        # port, unless the client gate (mfsgate.py) holds the clients out for a while.
        self.launch_path = path
        self.query_host, self.query_port = self.client_host, self.client_port

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
    def __init__(self, metaversion, last_save, chunkservers, disconnected=None):
        self.metaversion = metaversion
        self.last_save = last_save          # unix time of the last successful store, 0 = none
        self.chunkservers = chunkservers    # connected chunkservers, None if not asked
        self.disconnected = disconnected    # known from the metadata, not connected (or None)


def query_master(host, port, timeout, count_chunkservers=False):
    """Ask the master for its info (as mfscli does); None when it does not answer."""
    import struct
    from ocf_agents.tcp import connect
    try:
        sock = connect(host, port, timeout)
        try:
            info = _request(sock, CLTOMA_INFO, MATOCL_INFO)
            servers = _request(sock, CLTOMA_CSERV_LIST, MATOCL_CSERV_LIST) \
                if count_chunkservers else None
        finally:
            sock.close()
    except (OSError, ValueError):
        return None
    # 3.0 answers 121..149 bytes; the last 8 of the HA block are the metadata
    # version; 137/149-byte answers carry 8 more bytes (free space) before it.
    if len(info) < 121:
        return None
    shift = 8 if len(info) in (137, 149) else 0
    last_save = struct.unpack(">L", info[shift + 92:shift + 96])[0]
    metaversion = struct.unpack(">Q", info[shift + 113:shift + 121])[0]
    connected = disconnected = None
    if servers is not None:
        flags = [servers[i] & CSERV_DISCONNECTED
                 for i in range(0, len(servers) - CSERV_ENTRY_SIZE + 1, CSERV_ENTRY_SIZE)]
        connected, disconnected = flags.count(0), len(flags) - flags.count(0)
    return MasterInfo(metaversion, last_save, connected, disconnected)


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
    return holder, query_master(cfg.query_host, cfg.query_port, timeout, count_chunkservers)



# --- metadata files and changelogs --------------------------------------------------
METADATA_NAMES = ("metadata.mfs", "metadata.mfs.back", "metadata_ml.mfs.back")
CHANGELOG_PREFIXES = ("changelog.", "changelog_ml.", "changelog_ml_back.")


def is_metadata_file(name):
    if name in METADATA_NAMES or name == "metadata_ml.tmp":
        return True
    base, _, number = name.rpartition(".")
    return base in METADATA_NAMES and number.isdigit()


def changelog_number(name, prefix="changelog."):
    """N of a file named <prefix>N.mfs (changelog.3.mfs -> 3), else None."""
    if not (name.startswith(prefix) and name.endswith(".mfs")):
        return None
    middle = name[len(prefix):-4]
    return int(middle) if middle.isdigit() else None


def is_changelog(name):
    return any(changelog_number(name, prefix) is not None for prefix in CHANGELOG_PREFIXES)


def metadata_header(path):
    """b"MFSM NEW" / b"MFSM 2.0"..., or None for a file that is no metadata file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    return head if head.startswith(b"MFSM ") and len(head) == 8 else None


def last_line(path):
    """(number, line without its newline) of the last complete change in a changelog, or
    None if it has none. Reads only the tail: changelogs of big filesystems are large."""
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
                return (int(number), line) if number.isdigit() else None
            if start == 0:
                return None
            block *= 4


def last_change(path):
    """Number of the last complete change in a changelog (None if it has none)."""
    found = last_line(path)
    return found[0] if found else None


def decode_change_number(line):
    """The number of a changelog line "N: TIME|OPERATION(...)", or None for anything else."""
    number, sep, rest = line.partition(b": ")
    if not (sep and number.isdigit()):
        return None
    stamp, bar, operation = rest.partition(b"|")
    if not (bar and stamp.isdigit() and b"(" in operation
            and operation.split(b"(", 1)[0].replace(b"_", b"").isalnum()):
        return None
    return int(number)


TAIL_LIMIT = 1 << 20


def last_valid_change(path):
    """(number, skipped lines) of the last change of a changelog that continues the
    sequence: a change line whose predecessor is the change before it (or which is the
    first line). Lines after it that are not (garbage, a torn write, a bogus "999999: ...")
    are skipped: counting them would make a complete restore look short, and dropping
    the whole file would make it look complete when it is not."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        start = max(0, size - TAIL_LIMIT)
        f.seek(start)
        lines = f.read().split(b"\n")
    lines = lines[:-1] if lines else []          # the part after the last newline is torn
    if start > 0 and lines:
        lines = lines[1:]                          # the first one may be cut
    skipped = []
    candidate = None
    for line in reversed(lines):
        number = decode_change_number(line)
        if number is None:
            skipped.append(line)
            continue
        if candidate is None or number != candidate[0] - 1:
            if candidate is not None:
                skipped.append(candidate[1])
            candidate = (number, line)
            continue
        return candidate[0], list(reversed(skipped))
    if candidate is not None and start == 0:
        return candidate[0], list(reversed(skipped))   # the file's only change
    return None, list(reversed(skipped))


def first_change(path):
    """Number of the first change line of a changelog (None if its head holds none)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    for line in head.split(b"\n")[:-1]:
        number = decode_change_number(line)
        if number is not None:
            return number
    return None


def change_run_offsets(path, first, last, since=0):
    """(start, end): the bytes of a changelog from the line of change `first` through the
    line of change `last`, both included, or None if either line is not there. `since`:
    where the run read begins (mfshistory.last_run)."""
    import mmap
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        def line_start(number, since):
            head = b"%d: " % number
            if data[since:since + len(head)] == head:
                return since
            found = data.find(b"\n" + head, since)
            return None if found < 0 else found + 1
        start = line_start(first, since)
        if start is None:
            return None
        # `last` is usually the file's last change: look in its tail first (a restore of
        # millions of changes would otherwise scan the whole file once more).
        begin_last = line_start(last, max(start, len(data) - 2 * TAIL_LIMIT))
        if begin_last is None:
            begin_last = line_start(last, start)
        if begin_last is None:
            return None
        end = data.find(b"\n", begin_last)
        return None if end < 0 else (start, end + 1)


def newest_change(data_path):
    """(number, line) of the newest change the master wrote to DATA_PATH's changelogs
    (changelog.0.mfs, or changelog.1.mfs right after a rotation), or None."""
    for name in ("changelog.0.mfs", "changelog.1.mfs"):
        try:
            found = last_line(os.path.join(data_path, name))
        except OSError:
            continue
        if found:
            return found
    return None


def change_digest(line):
    """A change's fingerprint: CRC-32 of its changelog line (number, time and operation),
    which two histories that diverged do not share for the same number."""
    import zlib
    return zlib.crc32(line) & 0xFFFFFFFF


def ends_torn(path):
    """True when a changelog's last byte is not a newline (a torn last line)."""
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


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
        self.skipped = []      # (path, line) of lines that are no changes of the sequence
        self.ends_with_junk = {}   # path -> its last good change
        self.last_valid = {}       # path -> its last change continuing the sequence
        self.newest_metadata = None    # path, once the versions were read (mfsrestore)
        # set by mfshistory.separate_histories when the sources hold two histories:
        self.foreign = []          # files of the history left out
        self.kept_until = {}       # changelog of it -> its last change still used
        self.history_settled = False
        self.runs = {}             # metalogger changelog -> (offset, first) of its last run
        self.versions = {}         # metadata file -> (version, id), see metadata_version
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
        """The highest change any changelog really holds; lines that are not changes of
        that sequence (garbage, a bogus number) are skipped and listed in self.skipped."""
        self.skipped = []
        numbers = []
        for path in self.changelogs:
            number, skipped = last_valid_change(path)
            self.skipped += [(path, line) for line in skipped]
            if number is not None:
                numbers.append(number)
                self.last_valid[path] = number
                if changelog_number(os.path.basename(path), "changelog_ml.") is not None:
                    from ocf_agents.mfshistory import last_run
                    run = last_run(path, number)
                    if run is not None:
                        self.runs[path] = run
                if skipped:
                    self.ends_with_junk[path] = number
        return max(numbers) if numbers else None

    def metadata_version(self, res, path):
        """metadata_version(), read once per file (each read runs mfsmetadump)."""
        if path not in self.versions:
            self.versions[path] = metadata_version(res, path)
        return self.versions[path]

    def first_of(self, path):
        """The first change read from a changelog (of its last run, mfshistory.last_run)."""
        return self.runs[path][1] if path in self.runs else first_change(path)

    def start_of(self, path):
        """Where reading a changelog begins (its last run's offset, mfshistory.last_run)."""
        return self.runs[path][0] if path in self.runs else 0

    def junk_after(self, path):
        """The last good change of a changelog followed by junk lines (cut in copies:
        mfsmaster -a drops a whole changelog that ends in garbage), or None."""
        return self.ends_with_junk.get(path)


def copy_owned(source, target, uid, gid):
    """Copy source to a new file target (never through a symlink) owned by uid:gid."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
        copy_bytes(f, out, 0, os.fstat(f.fileno()).st_size)
        os.fchown(out.fileno(), uid, gid)


def copy_bytes(source, target, start, count):
    """Append count bytes of the open file source, from offset start, to the open file
    target; returns the bytes copied (fewer only if source ended first).

    In the kernel where it can (copy_file_range; a reflink on filesystems that share
    blocks): changelogs of millions of changes are hundreds of MB, and copying them through
    Python buffers cost a restore at 3M objects 0.8 s more than mfsmaster's own load."""
    import errno
    target.flush()
    done = 0
    try:
        while done < count:
            n = os.copy_file_range(source.fileno(), target.fileno(), count - done,
                                   start + done)
            if n == 0:
                return done
            done += n
        return done
    except OSError as err:
        # not supported between these files (another filesystem on an old kernel, a
        # special file): the rest through user space
        if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    source.seek(start + done)
    while done < count:
        block = source.read(min(count - done, 1 << 20))
        if not block:
            break
        target.write(block)
        done += len(block)
    target.flush()
    return done


def name_sources(text, origins):
    """text with the restore's internal file names (the staging copies, the files placed
    into DATA_PATH) replaced by the sources they came from: the user can find those."""
    import re
    if not origins:
        return text
    names = sorted(origins, key=len, reverse=True)
    pattern = re.compile("(?<![\\w./])(" + "|".join(map(re.escape, names)) + ")(?![\\w])")
    return pattern.sub(lambda m: origins[m.group(1)], text)


def mfsmaster_failure(result, command, origins=None):
    """The exit reason for a failed mfsmaster command (-a restore, -a start, start);
    origins maps internal file names to their sources (see name_sources)."""
    output = name_sources(result.out + result.err, origins)
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


def launch(res, cfg, auto_restore=False, origins=None):
    """mfsmaster start (with -a: restoring from DATA_PATH's files); returns once it answers."""
    argv = [res.params.mfsmaster, *(["-a"] if auto_restore else []), "-c", cfg.launch_path,
            "start"]
    result = res.run(argv, timeout=max(5.0, res.time_left() - 5), quiet=True)
    if result.rc != 0:
        wait_for_lock_release(res, cfg, min(5, res.time_left() - 1))
        command = "mfsmaster -a start" if auto_restore else "mfsmaster start"
        raise OCFError(ERR_GENERIC, mfsmaster_failure(result, command, origins))
    while True:
        holder, info = master_status(res, cfg)
        if holder is not None and info is not None:
            res.log.info(f"mfsmaster started (pid {holder}, metadata version {info.metaversion})")
            return
        if res.time_left() < 2:
            raise OCFError(ERR_GENERIC, "mfsmaster started but never answered on "
                           f"{cfg.query_host}:{cfg.query_port}")
        time.sleep(0.05)


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


def check_is_master(pid, doing):
    """Only a process called mfsmaster is signalled: whatever else holds a lock on the file
    named by a (mis)configured DATA_PATH is left alone."""
    name = (read_file(f"/proc/{pid}/comm", "") or "").strip()
    if name != "mfsmaster":
        raise OCFError(ERR_GENERIC, f"the lock on DATA_PATH is held by pid {pid} ({name or '?'}), "
                                    f"which is not mfsmaster: not {doing} it")


def terminate_master(pid):
    """SIGTERM: the master saves its metadata and exits (what mfsmaster stop sends)."""
    import signal
    check_is_master(pid, "stopping")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def children_of(pid):
    """PIDs of pid's child processes (read from /proc: no fork)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_file(f"/proc/{entry}/stat") or ""
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(pid):
                children.append(int(entry))
    return children


def kill_master(pid):
    """SIGKILL the master and its children (the metadata writer)."""
    import signal
    check_is_master(pid, "killing")
    for target in [pid, *children_of(pid)]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


# The child mfsmaster forks to write its changelog (bgsaver.c) renames itself so.
DATA_WRITER_NAME = b"mfsmaster (data writer)"


def data_writer_of(pid):
    """PID of master pid's background data writer, or None (gone, or a MooseFS without one)."""
    for child in children_of(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if f.read(len(DATA_WRITER_NAME)) == DATA_WRITER_NAME:
                    return child
        except OSError:
            continue
    return None


def last_change_written(data_path):
    """Number of the newest change in DATA_PATH's changelog files: changelog.0.mfs, or
    changelog.1.mfs when a metadata save has just rotated it and nothing changed since;
    None when neither has one."""
    for name in ("changelog.0.mfs", "changelog.1.mfs"):
        try:
            found = last_change(os.path.join(data_path, name))
        except OSError:
            continue
        return found
    return None
