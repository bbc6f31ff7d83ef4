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

* single-pass (default): the newest metadata and every change after it, from all
  sources, are placed into DATA_PATH under the names a metalogger downloads
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

from ocf_agents.moosefs import (
    LOCK_FILE, Inventory, MasterConfig, changelog_number, copy_owned, data_writer_of,
    kill_master, last_change_written, last_line, launch, lock_holder, master_status,
    master_uptime, metadata_header, metadata_version, metaid_from_changelog, newest_change,
    query_master, terminate_master, wait_for_lock_release,
)
from ocf_agents.mfsrestore import (
    check_against_record, load_recorded, prefetch_record, read_record,
    record_name, remember_metaid, remembered_metaid, restore, write_record,
)
from ocf_agents.ocf import (
    ERR_CONFIGURED, ERR_GENERIC, ERR_INSTALLED, NOT_RUNNING, SUCCESS,
    Action, Agent, OCFError, Parameter, have_binary, read_file, write_file_atomically,
)

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


def parse_accepted_record(value):
    value = value.strip()
    fields = value.split(":")
    hexdigits = set("0123456789abcdefABCDEF")
    if value and not (len(fields) in (2, 4) and set(fields[0]) <= hexdigits
                      and fields[1].isdigit() and all(f.isdigit() for f in fields[2:3])
                      and set(fields[3:4] and fields[3] or "0") <= hexdigits):
        raise ValueError(f"{value[:80]!r} is not a record value ID:VERSION[:CHANGE:CRC]")
    return value


def parse_attribute_name(value):
    if value and (not (value[0].isascii() and (value[0].isalpha() or value[0] == "_"))
                  or not all(c.isascii() and (c.isalnum() or c in "-_.:") for c in value)):
        raise ValueError(f"{value!r} is not a valid attribute name")
    return value


# --- the master's configuration ---------------------------------------------------
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


# --- start ---------------------------------------------------------------------------
def start(res):
    from ocf_agents.mfsgate import ClientGate
    cfg = load_config(res)
    gate = ClientGate.of(res, cfg)
    gate.aim(cfg)
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
    from ocf_agents.mfsgate import client_port_problem, prefetch_shared_connections
    prefetch_record(res)    # the CIB answers while the checks below run
    prefetch_shared_connections(res)
    gate.discard()      # an earlier master's, gone with it
    # Behind the gate the master binds its client port only after the restore: a port it
    # cannot have must stop the start here, before anything changed.
    problem = client_port_problem(cfg.values["MATOCL_LISTEN_HOST"], cfg.client_port)
    if problem:
        raise OCFError(ERR_GENERIC, problem)
    if res.params.hold_clients:
        gate.close(cfg, read_file(cfg.path) or "")
    try:
        start_master(res, cfg)
        let_clients_in(res, cfg, gate, held=res.params.hold_clients)
    except BaseException:
        holder = lock_holder(cfg.path_in_data(LOCK_FILE))
        if holder is not None and gate.read_marker() is not None:
            # Started, but the clients cannot be let in: not left running half-usable.
            terminate_master(holder)
            wait_for_lock_release(res, cfg, max(1.0, res.time_left() - 2))
        if lock_holder(cfg.path_in_data(LOCK_FILE)) is None:
            gate.discard()  # nothing runs: nothing of the gate is left either
        raise
    return SUCCESS


def start_master(res, cfg):
    """Start the master from DATA_PATH's metadata, restoring it first where it must (the
    checks and refusals of mfsrestore.py); record the version it serves."""
    from ocf_agents.mfshistory import check_same_history, separate_histories
    everything = Inventory([cfg.data_path, *res.params.metadata_sources])
    current = cfg.path_in_data("metadata.mfs")
    highest = everything.highest_change()
    for path, line in everything.skipped[:5]:
        res.log.warning(f"{path}: ignoring {line[:80].decode(errors='replace')!r}: not a "
                        "change continuing the changelog's sequence")
    if separate_histories(res, everything, lambda: read_record(res)):
        highest = max(everything.last_valid.values(), default=None)
    version = metaid = None
    if current in everything.metadata:
        version, metaid = everything.metadata_version(res, current)
    # (another history's files in DATA_PATH must go first: the restore moves them out)
    foreign_here = any(os.path.dirname(path) == cfg.data_path for path in everything.foreign)
    if version is not None and (highest is None or highest < version) and not foreign_here:
        res.log.info(f"metadata.mfs is current (version {version}): no restore needed")
        check_against_record(res, metaid, version, "metadata.mfs")
        check_same_history(res, Inventory([cfg.data_path]), "metadata.mfs")
        rotate_changelog_behind(res, cfg, version)
        load_recorded(res, cfg.data_path, metaid, version, load=lambda: launch(res, cfg),
                      roll_back=lambda: lock_holder(cfg.path_in_data(LOCK_FILE)) is None)
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
        write_record(res, cfg.data_path, metaid, info.metaversion, now=True)


def rotate_changelog_behind(res, cfg, version):
    """Start a new changelog when changelog.0.mfs ends before metadata.mfs's version.

    From the last second of its exit on, a stopping mfsmaster drops the changelog lines of
    what it still changes (bgsaver.c: "changelog received during termination - changelog
    line lost"; a busy filesystem's trash expiry logs a change every second); the changes
    are only in the metadata.mfs it saves. A master started on that metadata appends to the
    same changelog.0.mfs after the hole, and after its crash mfsmaster -a refuses the file
    ("hole in change files"): no failover. Rotated as mfsmaster's own metadata save does
    (changelog.N.mfs -> N+1), the old file ends below the metadata and -a skips it."""
    current = cfg.path_in_data("changelog.0.mfs")
    try:
        newest = last_line(current)
    except OSError:
        return      # none: the master begins one
    if newest is None or newest[0] >= version - 1:
        return
    numbers = [changelog_number(name) for name in os.listdir(cfg.data_path)]
    for number in sorted((n for n in numbers if n is not None), reverse=True):
        os.rename(cfg.path_in_data(f"changelog.{number}.mfs"),
                  cfg.path_in_data(f"changelog.{number + 1}.mfs"))
    res.log.warning(f"changelog.0.mfs ends at change {newest[0]} but metadata.mfs is at version "
                    f"{version}: the previous master dropped changes {newest[0] + 1}-{version - 1} "
                    "from its changelog while it exited (they are in metadata.mfs); rotated it "
                    "to changelog.1.mfs so that this master's changes start a new file (after "
                    "that hole a restore would fail)")


# The clients, chunkservers and metaloggers connected to the master, recorded by monitor
# in DATA_PATH (it moves with the service, on DRBD) and copied into the cluster (where it
# does not) for the node that takes over.
CONNECTIONS_FILE = "pyha-connections"


def record_connections(res, cfg):
    """Keep DATA_PATH/pyha-connections up to date (read from /proc/net/tcp: no fork;
    written only when the connections changed), and the cluster's copy (a crm_config
    attribute: a fork only when it changed, mfsgate.share_connections)."""
    from ocf_agents.mfsgate import share_connections
    from ocf_agents.tickle import read_connections, record_connections as record
    connections = read_connections(cfg.ports)     # one read of /proc/net/tcp for both
    try:
        record(cfg.path_in_data(CONNECTIONS_FILE), connections, write_file_atomically)
    except OSError as err:      # a full disk must not fail the monitor for this
        res.log.debug(f"could not record the master's connections: {err}")
    share_connections(res, cfg, connections, res.params.record_every)


def let_clients_in(res, cfg, gate, held):
    """Open the client gate (mfsgate.py) now when the master lists no disconnected
    chunkserver, else leave that to a detached opener, which also tickles the previous
    master's recorded connections (tickle.py): their peers reconnect at once instead of at
    their next backed-off retransmission (1-3.5 s measured). Without the gate
    (hold_clients=false) the connections are only tickled, all at once."""
    from ocf_agents.mfsgate import (
        GATE_CAP_S, connections_to_tickle, hold_client_port, start_opener)
    recorded = cfg.path_in_data(CONNECTIONS_FILE)
    if not os.path.isfile(recorded) or os.path.islink(recorded):
        recorded = None     # none (a first start, or DATA_PATH does not move)
    # ... with the cluster's copy (a DATA_PATH that does not move has only its own, old list)
    recorded = connections_to_tickle(res, recorded)
    tickle = [recorded] if recorded else None
    holder, info = master_status(res, cfg, count_chunkservers=True)
    if held and info is not None and not info.disconnected:
        open_gate(res, cfg, gate, holder)
        held = False
        res.log.info(f"clients let in at once: all {info.chunkservers} chunkserver(s) of the "
                     "metadata are connected")
    elif held and recorded and hold_clients_in_start(res, cfg, gate, recorded):
        held = False
        # the clients' address comes after this resource: their tickles wait for it
        tickle = [recorded, GATE_CAP_S, cfg.client_port]
    from ocf_agents.ocf import spawn_detached
    try:
        if held:
            pid = start_opener(gate, recorded or "/dev/null", hold_client_port(cfg))
            res.log.info(f"clients held out until the chunkservers are back "
                         f"({info.disconnected if info else '?'} not connected yet; pid {pid})")
        elif tickle:
            pid = spawn_detached("tickle", tickle)
            res.log.info(f"tickling the previous master's connections once their address is "
                         f"here (pid {pid})")
    except OSError as err:
        res.log.warning(f"could not start the gate's opener or the tickler: {err}")
        if held:
            open_gate(res, cfg, gate, holder)


def hold_clients_in_start(res, cfg, gate, recorded):
    """With their own floating address before the master (pcs-examples/mfs.sh SERVER_VIP)
    the chunkservers can come back while start runs, and the clients' address, after this
    resource, comes up only once they have: a client never finds the gate closed (refused,
    mfsmount tries again only 2 s later). So start tickles the chunkservers and waits for
    them here, as the opener would. True once the gate is open; False when the chunkservers'
    address is not here yet (the one-address layout, the VIP after the master): then the
    opener holds the clients."""
    from ocf_agents.mfsgate import GATE_CAP_S, hold_clients, servers_address_is_local
    from ocf_agents.tickle import decode_connections, read_own_file
    try:
        connections = decode_connections(read_own_file(recorded))
    except (OSError, ValueError):
        return False
    if not servers_address_is_local(cfg, connections):
        return False
    # Bounded as the opener is, and never past start's own timeout.
    cap = max(0.0, min(GATE_CAP_S, res.time_left() - 10))
    waited = time.monotonic()
    reason = hold_clients(gate, cfg, cfg.path_in_data(LOCK_FILE), connections, cap=cap)
    holder = lock_holder(cfg.path_in_data(LOCK_FILE))
    if reason is None or holder is None:
        raise OCFError(ERR_GENERIC, "mfsmaster exited while start waited for its chunkservers: "
                                    "see its log")
    open_gate(res, cfg, gate, holder)
    res.log.info(f"clients let in {time.monotonic() - waited:.1f} s after the master answered: "
                 f"{reason}")
    return True


def open_gate(res, cfg, gate, holder):
    failure = gate.open(cfg, holder)
    if failure:
        raise OCFError(ERR_GENERIC, f"clients cannot reach the master: {failure}")


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


# --- monitor ---------------------------------------------------------------------------
def monitor(res):
    from ocf_agents.mfsgate import ClientGate
    cfg = load_config(res)
    gate = ClientGate.of(res, cfg)
    held = gate.aim(cfg)
    deep = res.check_level >= 10
    holder, info = master_status(res, cfg, count_chunkservers=deep)
    if holder is None:
        return NOT_RUNNING
    if info is None:
        raise OCFError(ERR_GENERIC, f"mfsmaster (pid {holder}) holds its lock but does not answer "
                       f"on {cfg.query_host}:{cfg.query_port}")
    if held and not gate.opener_alive(held[1]):
        # Its opener died (or was killed): the clients would be held out for good.
        res.log.warning("the client gate is closed and its opener is gone: letting the "
                        "clients in now")
        open_gate(res, cfg, gate, holder)
    metaid = remembered_metaid(res)
    if metaid is None:
        metaid = metaid_from_changelog(cfg)
        if metaid is not None:
            remember_metaid(res, metaid)
    check_changelog_follows(res, cfg, info.metaversion)
    write_record(res, cfg.data_path, metaid, info.metaversion)
    record_connections(res, cfg)
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


def check_changelog_follows(res, cfg, metaversion):
    """Fail when the master serves changes its changelog no longer receives.

    On a full disk (or a read-only or failing one) mfsmaster cannot append to
    changelog.0.mfs but goes on serving newer versions from memory: a crash then loses
    every change since, and the master itself still answers. So: changes it serves beyond
    the changelog's newest line, on two monitors in a row with the changelog not moving
    while the version did (a moment's lag is its write buffer), fail the monitor. The
    comparison costs a read of the changelog's tail, no fork; the state file is written
    only while a lag is seen.
    """
    newest = newest_change(cfg.data_path)
    if newest is None:
        return
    behind = metaversion - 1 - newest[0]
    memory = res.state_path(f"{res.instance_without_clone_suffix}.changelog-lag")
    if behind <= 0:
        if os.path.exists(memory):
            os.unlink(memory)
        return
    seen = (read_file(memory) or "").split()
    write_file_atomically(memory, f"{metaversion} {newest[0]}")
    if len(seen) == 2 and seen[1] == str(newest[0]) and seen[0] != str(metaversion):
        st = os.statvfs(cfg.data_path)
        free = st.f_bavail * st.f_frsize
        raise OCFError(ERR_GENERIC,
                       f"mfsmaster serves metadata version {metaversion} but its changelog stopped "
                       f"at change {newest[0]} ({behind} changes only in memory, lost in a crash); "
                       f"DATA_PATH {cfg.data_path} has {free // 1024} KiB free: free space there")


# --- stop ----------------------------------------------------------------------------
def stop(res):
    try:
        cfg = load_config(res)
    except OCFError as err:
        # No usable configuration, no DATA_PATH: nothing this resource can have started.
        res.log.warning(f"{err.reason}: nothing to stop")
        return SUCCESS
    from ocf_agents.mfsgate import ClientGate
    gate = ClientGate.of(res, cfg)
    lock = cfg.path_in_data(LOCK_FILE)
    if lock_holder(lock) is None:
        gate.discard()
        return SUCCESS
    gate.aim(cfg)       # a master still behind the gate answers there (fast_stop asks it)
    gate.stop_opener()
    gate.discard()
    # SIGTERM (the master saves its metadata and exits) and the lock watched every 0.1 s,
    # not `mfsmaster stop`, which checks it once a second: the whole-second polling added up
    # to 1 s more to every switchover (measured: 4.07 s stops in the lab).
    running = lock_holder(lock)
    if running is not None:
        terminate_master(running)
        if res.params.fast_stop:
            end_exit_delay(res, cfg, running)
    wait_for_lock_release(res, cfg, max(0.0, res.time_left() * 0.8 - 3))
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
            if not write_record(res, cfg.data_path, metaid, version, now=True):
                # the stop itself succeeded: failing it would only get this node fenced
                res.log.warning(f"could not record the final metadata version {version} in "
                                f"the cluster ({record_name(res)}): until this master runs "
                                "again, a node with older metadata is not refused")
        except OCFError as err:
            res.log.warning(f"could not record the final metadata version: {err.reason}")
    return SUCCESS


# A master told to stop runs on for 2-3 s: it tells its data writer to end only at the third
# whole-second tick after the signal (bgsaver.c), and exits, saving metadata.mfs, once the
# writer has. That was the largest term of a switchover (2.8 s of the 5.9 s measured in the
# lab). Once every change the master made is in the changelog the writer has nothing left
# to write: ended with SIGKILL, the master saves its metadata and exits at once (0.2 s
# measured). A change the master makes after the check (the clients' address is already
# gone: only its own housekeeping) is in the metadata.mfs it saves, and the next start
# rotates the changelog that ends below it (rotate_changelog_behind).
FAST_STOP_WAIT_S = 0.5      # for the writer to catch up; then MooseFS's own exit


def end_exit_delay(res, cfg, pid):
    deadline = time.monotonic() + FAST_STOP_WAIT_S
    while True:
        writer = data_writer_of(pid)
        if writer is None:
            return      # an older MooseFS, or the writer has already ended
        info = query_master(cfg.query_host, cfg.query_port, 0.3)
        written = last_change_written(cfg.data_path)    # read after the version: never ahead
        if info is not None and written is not None and written >= info.metaversion - 1:
            import signal
            try:
                os.kill(writer, signal.SIGKILL)
            except ProcessLookupError:
                return
            res.log.info(f"changelog written up to {written} (master at version "
                         f"{info.metaversion}): ended mfsmaster's data writer (pid {writer}) "
                         "so that the master exits now instead of in 2-3 s (its log says "
                         "'connection lost with background data writer')")
            return
        if time.monotonic() >= deadline:
            res.log.info(f"the changelog ends at {written}, the master is at version "
                         f"{info.metaversion if info else '?'}: waiting for mfsmaster's own "
                         "exit (2-3 s)")
            return
        time.sleep(0.05)


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
restore_method=single-pass (default) puts the newest metadata (as
metadata.mfs.back) and every change after it (one changelog.1.mfs) into
DATA_PATH, where a metalogger started later finds them (replaced originals are
kept in DATA_PATH/pyha-replaced.*), runs
"mfsmaster -a start" and succeeds only when the version the master serves
covers the highest change present (otherwise the master is killed unsaved and
DATA_PATH restored). restore_method=staged runs "mfsmaster -a restore" on a
staging copy, checks the result with mfsmetadump, installs it and starts.

While the master runs, monitor records its metadata id and version in the
crm_config attribute version_attribute, so a node with older metadata refuses
to start (the split brain MooseFS itself does not prevent).

Clients wait for the chunkservers (hold_clients): a master that has just
started answers a read "no copies" until the chunkservers that hold the chunk
have registered, and mfsmount then waits a fixed 10 s before asking again. So
the master starts with its client port on a private loopback port (the user's
configuration plus two lines, in the agent's state directory) and reloads the
user's configuration, opening MATOCL_LISTEN_HOST/PORT, once its own list shows
every chunkserver connected (or some seconds after the first came back). A
client refused meanwhile retries within 2 s. With a floating address of their
own for the chunkservers and metaloggers, ordered before this resource (and the
clients' address after it), start itself waits for them and returns with the
clients let in, so no client is refused (pcs-examples/mfs.sh SERVER_VIP).

Monitor also records the clients', chunkservers' and metaloggers' connections in
DATA_PATH/pyha-connections (only when they change); after a failover start
tickles them once the floating address is up (a TCP ACK that makes their
kernels learn the old connection is gone), so they reconnect at once instead of
at their next backed-off retransmission: chunkservers and metaloggers at once,
clients when they are let in. Set MASTER_RECONNECTION_DELAY = 1 in
mfschunkserver.cfg (default 5 s): a tickled chunkserver reconnects only at its
next tick.

Monitor: the master holds the fcntl lock on DATA_PATH/.mfsmaster.lock and
answers an info request on its client port (MATOCL_LISTEN_PORT), in-process.
OCF_CHECK_LEVEL=10 also requires min_chunkservers connected chunkservers;
OCF_CHECK_LEVEL=20 also requires a metadata save within max_save_age.

Stop: SIGTERM, as "mfsmaster stop" sends (the master saves metadata.mfs and
exits; with fast_stop without MooseFS's 2-3 s delay), then SIGKILL when the
stop timeout runs short; returns when the lock is released.

DATA_PATH, WORKING_USER/WORKING_GROUP and MATOCL_LISTEN_HOST/PORT are read
from the configuration file. The master runs in the network namespace the agent
runs in. Put a floating IP (ocf:heartbeat:IPaddr2) in the same group, after
this resource: clients then reach the master only once start has checked the
version it serves (the master listens on "*" by default and needs no VIP to
start). The chunkservers' and metaloggers' own floating IP, if any, may come
before it: nothing listens there until start has checked the metadata.
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
                  longdesc="single-pass: the newest metadata and every later change of the "
                           "sources are put into DATA_PATH (originals kept), mfsmaster -a start restores while starting, and start "
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
        Parameter("accept_metadata_loss", default="", check=parse_accepted_record,
                  shortdesc="Start below (or beside) the recorded history, losing changes",
                  longdesc="Empty (default): start refuses metadata older than the version the "
                           "cluster recorded, or from a history that forked from it. When the "
                           "node with the newer metadata is gone for good, set this to the "
                           "record's current value (crm_attribute --type crm_config --name "
                           "<version_attribute> --query; the refusal names it) and start again: "
                           "that one record is passed over, logged at crit, and the record then "
                           "follows the started master. It applies to that value only, never to "
                           "a later record; remove it afterwards."),
        Parameter("record_every", type="time", default=60,
                  shortdesc="Longest time between two updates of the version record",
                  longdesc="While the master runs, monitor rewrites version_attribute when the "
                           "version changed, at most this often (start and stop always do): a "
                           "busy filesystem then costs one crm_attribute call a minute, not one "
                           "per monitor. The record may lag the master by this much: a source "
                           "behind by less is not refused by the record. 0: at every monitor "
                           "that sees a new version."),
        Parameter("hold_clients", type="boolean", default=True,
                  shortdesc="Let clients in only once the chunkservers are back",
                  longdesc="true: the master starts with its client port on a private "
                           "loopback port and opens MATOCL_LISTEN_HOST/PORT once every "
                           "chunkserver its metadata knows is connected, at most a few seconds "
                           "after the first came back (see above): no read waits mfsmount's "
                           "10 s. The agent's own questions go to the private port meanwhile. "
                           "false: clients are let in at once."),
        Parameter("fast_stop", type="boolean", default=True,
                  shortdesc="End the master's 2-3 s exit delay once its changelog is written",
                  longdesc="A stopping mfsmaster runs on for 2-3 s before it saves its metadata "
                           "and exits (MooseFS ends its data writer only at the third "
                           "whole-second tick). true: once every change the master made is in "
                           "DATA_PATH's changelog, stop ends the writer, and the master saves "
                           "and exits at once (the largest term of a switchover). A change made "
                           "after that is in the metadata.mfs the master saves. false: wait "
                           "for MooseFS's own exit."),
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
