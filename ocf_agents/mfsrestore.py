"""The restore engine of ocf:pyha:mfsmaster: the safety-critical part.

After a crash a MooseFS master starts only through ``mfsmaster -a``, which replays
changelogs onto the newest metadata file it finds, and that is where data is lost quietly
(see the agent's description). This module decides what a restore may use and whether its
result may be served: one filesystem only (metadata ids), never below the version the
cluster recorded (a crm_config attribute), never ``-i``, and a result that covers every
change present - with the two methods, single-pass (``mfsmaster -a start`` on DATA_PATH,
checked before anyone can reach it, undone when refused) and staged (``mfsmaster -a
restore`` on a copy, checked before it is installed). Its pitfall tests are
tests/mfsmaster/test_pitfalls.py and test_mfsmaster_faults.py.
"""

import os
import time

from ocf_agents.moosefs import (
    LOCK_FILE, change_digest, change_run_offsets, changelog_metaid, copy_bytes, copy_owned,
    ends_torn, is_changelog,
    is_metadata_file, kill_master, launch, lock_holder,
    master_status, metadata_header, metadata_version, mfsmaster_failure, newest_change,
    wait_for_lock_release,
)
from ocf_agents.ocf import (
    ERR_GENERIC, AttributeUnreadable, OCFError, read_file, write_file_atomically,
)

STAGING_DIR = "pyha-restore.staging"
CHAIN_NAME = "changelog.merged"     # in STAGING_DIR: the changes after the newest metadata
REPLACED_PREFIX = "pyha-replaced."
REPLACED_KEEP = 3


# --- the cluster's record of the metadata version ---------------------------------------
def record_name(res):
    return res.params.version_attribute or f"{res.instance_without_clone_suffix}-metadata-version"


class Record:
    """What the cluster recorded of the running master: ID:VERSION[:CHANGE:CRC].

    CHANGE:CRC fingerprints the history: the CRC-32 of changelog line CHANGE as the master
    wrote it. Two nodes whose histories forked (one restored at an older version and ran on)
    hold different lines under the same number, which version numbers alone cannot see.
    """

    def __init__(self, raw, metaid, version, change=None, crc=None):
        self.raw = raw
        self.metaid = metaid
        self.version = version
        self.change = change
        self.crc = crc


def read_record(res):
    """The Record the cluster last saw, or None when it never recorded one; asked once per
    action.

    A record that cannot be read (the CIB does not answer, crm_attribute hangs, the value
    is garbled) is not "no record": a start that took it for one would serve whatever
    metadata this node has, however old, and write the lower version back.
    """
    if not hasattr(res, "mfs_record"):
        query = getattr(res, "mfs_record_query", None) or \
            res.begin_cluster_attribute(record_name(res))
        try:
            value = query.result()
        except AttributeUnreadable as err:
            raise OCFError(ERR_GENERIC,
                           f"cannot read the cluster's record of the metadata version "
                           f"({err.reason}); refusing to start without it, since a master "
                           "behind the record would lose files: start again once the CIB "
                           "answers") from None
        res.mfs_record = None if value is None else parse_record(res, value)
    return res.mfs_record


def prefetch_record(res):
    """Ask the cluster for its record now, read it later (read_record): start's checks of
    DATA_PATH run meanwhile instead of waiting on the CIB's round trip."""
    if not hasattr(res, "mfs_record") and not hasattr(res, "mfs_record_query"):
        res.mfs_record_query = res.begin_cluster_attribute(record_name(res))


def parse_record(res, value):
    if not value:
        return None
    fields = value.split(":")
    try:
        if len(fields) not in (2, 4):
            raise ValueError(value)
        metaid = int(fields[0], 16) if fields[0] else None
        if len(fields) == 2:
            return Record(value, metaid, int(fields[1]))
        return Record(value, metaid, int(fields[1]), int(fields[2]), int(fields[3], 16))
    except ValueError:
        raise OCFError(ERR_GENERIC,
                       f"the cluster's record of the metadata version (crm_config attribute "
                       f"{record_name(res)}) reads {value[:80]!r}, not ID:VERSION[:CHANGE:CRC]: "
                       "refusing to start without it; correct or delete the attribute") from None


def loss_accepted(res):
    """accept_metadata_loss names the record the administrator accepts to fall behind (or
    fork from): it applies to that record only, never to a later one."""
    recorded = read_record(res)
    return bool(recorded and res.params.accept_metadata_loss
                and res.params.accept_metadata_loss == recorded.raw)


def write_record(res, data_path, metaid, version, now=False):
    """Record ID:VERSION:CHANGE:CRC in the cluster: never downwards (unless a loss was
    accepted), at most every record_every seconds unless now (start, stop); the last value
    written is kept in the state dir, so an unchanged monitor forks nothing.

    A busy filesystem changes its version between any two monitors: without the interval
    every monitor would fork crm_attribute. The price is a record up to record_every behind
    the master, which matters only for a source that lags by less than that (a node down
    for longer is refused all the same). Returns whether the cluster has the value."""
    return finish_record(res, begin_record(res, data_path, metaid, version, now))


def begin_record(res, data_path, metaid, version, now=False):
    """write_record() started: crm_attribute runs while the agent goes on; finish_record
    (or undo_record) completes it. None when nothing is to be written."""
    cache = res.state_path(f"{res.instance_without_clone_suffix}.recorded")
    ident = f"{metaid:X}" if metaid is not None else ""
    cached = (read_file(cache) or "").split(":")
    if len(cached) >= 2 and cached[0] == ident and cached[1].isdigit():
        if int(cached[1]) == version:
            return None
        if int(cached[1]) > version and not (now and loss_accepted(res)):
            return None     # never downwards
        if not now:
            try:
                if time.time() - os.stat(cache).st_mtime < res.params.record_every:
                    return None
            except OSError:
                pass
    value = f"{ident}:{version}"
    newest = newest_change(data_path)
    if newest is not None:
        value += f":{newest[0]}:{change_digest(newest[1]):08X}"
    return cache, value, res.begin_cluster_attribute(record_name(res), value)


def finish_record(res, started):
    """Wait for begin_record's crm_attribute; remember the value once the cluster has it.
    Whether the cluster has it (True when begin_record found nothing to write)."""
    if started is None:
        return True
    cache, value, pending = started
    if pending.result():
        write_file_atomically(cache, value)
        return True
    return False


def undo_record(res, started):
    """Put back the record begin_record replaced (a start that failed leaves the cluster's
    record as it found it); logged, never raised: the start's own failure is the reason."""
    if started is None or not finish_record(res, started):
        return      # nothing was written
    cache, value, _ = started
    previous = read_record(res)
    try:
        if previous is None:
            done = res.cluster_attribute(record_name(res), delete=True)
            if done:
                os.unlink(cache)
        else:
            done = res.cluster_attribute(record_name(res), previous.raw)
            if done:
                write_file_atomically(cache, previous.raw)
    except (OSError, OCFError):
        done = False
    if not done:
        res.log.error(f"the failed start could not put the cluster's record "
                      f"{record_name(res)} back to {previous.raw if previous else 'unset'}: "
                      f"it stays {value} (the version DATA_PATH's files reach)")


def load_recorded(res, data_path, metaid, version, load, roll_back):
    """Run load() (mfsmaster loading DATA_PATH, which holds every change up to version)
    while the cluster's record goes up to version: the CIB's round trip is hidden in the
    load. If load fails, roll_back() undoes what it can and says whether the master is
    gone; only then is the previous record put back (a master that still runs serves
    version, and the record must not claim less)."""
    recording = begin_record(res, data_path, metaid, version, now=True)
    try:
        result = load()
    except BaseException:
        if roll_back():
            undo_record(res, recording)
        else:   # the master still runs: the record must not claim less than it serves
            finish_record(res, recording)
        raise
    finish_record(res, recording)
    return result


def remember_metaid(res, metaid):
    path = res.state_path(f"{res.instance_without_clone_suffix}.metaid")
    write_file_atomically(path, "" if metaid is None else f"{metaid:X}")


def remembered_metaid(res):
    text = read_file(res.state_path(f"{res.instance_without_clone_suffix}.metaid"))
    try:
        return int(text, 16) if text else None
    except ValueError:
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
        version, metaid = inventory.metadata_version(res, path)
        if version > newest or inventory.newest_metadata is None:
            inventory.newest_metadata = path
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
    if recorded.metaid is not None and metaid is not None and recorded.metaid != metaid:
        raise OCFError(ERR_GENERIC,
                       f"{what} belongs to filesystem {metaid:X}, the cluster runs "
                       f"{recorded.metaid:X} (attribute {record_name(res)}): refusing to start a "
                       "different filesystem")
    if version < recorded.version:
        if loss_accepted(res):
            res.log.crit(f"{what} is at metadata version {version}, older than version "
                         f"{recorded.version} the cluster has seen: starting it because "
                         f"accept_metadata_loss={recorded.raw}; the changes in between are lost")
            return
        raise OCFError(ERR_GENERIC,
                       f"refusing to start a stale master: {what} is at version {version}, the "
                       f"cluster saw {recorded.version}; start where newer metadata is or add it "
                       f"to metadata_sources, or accept the loss: "
                       f"accept_metadata_loss={recorded.raw}")


# --- restoring ----------------------------------------------------------------------
def restore(res, cfg, inventory, highest):
    """Restore the newest metadata from every source and start the master on it;
    returns the filesystem's id.

    Both methods refuse files of different filesystems and a result older than
    the cluster's record before anything is changed, never pass -i, and accept
    a restore only when the version reached covers every change present.
    """
    metaid, newest_metadata = check_single_filesystem(res, inventory)
    expected = max(newest_metadata, 0 if highest is None else highest + 1)
    early = None
    if res.params.restore_method == "single-pass" and inventory.metadata:
        early = chain_into_staging(cfg, inventory, newest_metadata)
    try:
        check_against_record(res, metaid, expected, "the metadata to restore")
        from ocf_agents.mfshistory import check_same_history
        check_same_history(res, inventory, "the metadata to restore")
        # (without any metadata file there is nothing to chain to: mfsmaster -a says so)
        pieces = early[0] if early else \
            chain_changes(inventory, newest_metadata) if inventory.metadata else []
    except BaseException:
        if early:
            remove_tree(early[1])
        raise
    res.log.info(f"restoring metadata from {len(inventory.metadata)} metadata file(s) and "
                 f"{len(inventory.changelogs)} changelog(s), changes up to {highest} "
                 f"({res.params.restore_method})")
    if res.params.restore_method == "staged":
        changes = DataPathChanges(cfg)
        version = restore_staged(res, cfg, inventory, expected, metaid, changes, pieces)
        try:
            launch(res, cfg)
        except BaseException:
            # The checked metadata is installed but the master did not start (a failed
            # start even re-saves metadata files): DATA_PATH goes back to what it was,
            # which restores again, rather than stay half-installed.
            if stop_unchecked_master(res, cfg):
                try:
                    changes.undo()
                except OSError as err:
                    res.log.error(f"could not put {cfg.data_path} back as it was: {err}")
            raise
        prune_replaced(cfg)
    else:
        version = restore_while_starting(res, cfg, inventory, expected, metaid, pieces,
                                         early[1] if early else None)
    res.log.notice(f"restored metadata version {version} in {cfg.data_path}")
    return metaid


def check_restored_version(res, version, expected, metaid, what):
    if version < expected:
        raise OCFError(ERR_GENERIC,
                       f"{what} stopped at metadata version {version} but the sources reach "
                       f"version {expected}: refusing a restore that drops changes")
    check_against_record(res, metaid, version, what)


def chain_into_staging(cfg, inventory, newest_metadata):
    """(pieces, a fresh staging directory holding their changes as one changelog) or None
    when they do not chain (a gap, refused once the record's checks have said theirs).

    The single-pass restore's one copy, done before the record is read: it runs while
    crm_attribute answers (~20 ms each at 1M objects, measured here). Nothing of DATA_PATH
    but the agent's private staging directory is touched before the checks."""
    try:
        pieces = chain_changes(inventory, newest_metadata)
    except OCFError:
        return None
    uid, gid = cfg.ids()
    staging = fresh_staging(cfg)
    try:
        if pieces:
            write_chain(inventory, pieces, os.path.join(staging, CHAIN_NAME), uid, gid)
    except BaseException:
        remove_tree(staging)
        raise
    return pieces, staging


def restore_while_starting(res, cfg, inventory, expected, metaid, pieces, staging=None):
    """Give DATA_PATH the newest metadata and every change after it (place_sources), run
    mfsmaster -a start, check the version it serves.

    One metadata load instead of the staged method's two. changelog.0.mfs is renamed,
    so that a master which must be rolled back never appends to a file of the dead one.
    Until start returns the floating IP is not up, so nobody but this agent
    talks to the master before its version has been checked.
    """
    changes = DataPathChanges(cfg)

    def roll_back():
        if not stop_unchecked_master(res, cfg):
            return False
        try:
            changes.undo()
        except OSError as err:  # the reason the restore failed stays the exit reason
            res.log.error(f"could not put {cfg.data_path} back as it was: {err}")
        return True

    def load_and_check():
        launch(res, cfg, auto_restore=True, origins=changes.origins)
        _, info = master_status(res, cfg)
        if info is None:
            raise OCFError(ERR_GENERIC, "mfsmaster -a start: the master stopped answering")
        check_restored_version(res, info.metaversion, expected, metaid, "mfsmaster -a start")
        return info.metaversion

    try:
        place_sources(res, cfg, inventory, changes, pieces, staging)
    except BaseException:
        roll_back()
        raise
    # DATA_PATH now holds every change up to the version expected
    version = load_recorded(res, cfg.data_path, metaid, expected, load_and_check, roll_back)
    prune_replaced(cfg)
    return version


class DataPathChanges:
    """What a single-pass restore changed in DATA_PATH, so that a failure can undo it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.before = set(os.listdir(cfg.data_path))
        self.added = []     # names placed into DATA_PATH
        self.origins = {}   # name placed or renamed -> the source it came from
        self.moved = []     # (name, where the original went)
        self.replaced = None

    def free(self, name):
        return name not in self.before and name not in self.added

    def free_name(self, template):
        """template.format(n) for the first n >= 1 neither used before nor now."""
        number = 1
        while (template.format(number) in self.before or template.format(number) in self.added
               or os.path.lexists(self.cfg.path_in_data(template.format(number)))):
            number += 1
        return template.format(number)

    def add(self, staged, name, origin=None):
        os.rename(staged, self.cfg.path_in_data(name))
        self.added.append(name)
        if origin:
            self.origins[name] = origin

    def move(self, name, target):
        os.rename(self.cfg.path_in_data(name), target)
        self.moved.append((name, target))

    def move_aside(self, name, kept_as=None):
        if self.replaced is None:
            self.replaced = new_replaced_dir(self.cfg)
        self.move(name, os.path.join(self.replaced, kept_as or name))
        return self.replaced

    def undo(self):
        """Back to the directory as it was.

        What the refused master wrote (its lock files, a changelog.0.mfs with its
        own session records) is deleted: nobody could reach it, so it holds no
        one's data, and left behind it would join the next restore as a fork."""
        for name in reversed(self.added):
            try:
                os.unlink(self.cfg.path_in_data(name))
            except FileNotFoundError:
                pass    # a master that failed to start renames metadata.mfs (to .back)
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
            remove_tree(self.replaced)


def new_replaced_dir(cfg):
    """DATA_PATH/pyha-replaced.<time>, where replaced originals are kept."""
    replaced = cfg.path_in_data(REPLACED_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(replaced, 0o750, exist_ok=True)
    return replaced


def prune_replaced(cfg):
    """Keep the newest REPLACED_KEEP pyha-replaced.* directories."""
    old = sorted(n for n in os.listdir(cfg.data_path) if n.startswith(REPLACED_PREFIX))
    for name in old[:-REPLACED_KEEP]:
        remove_tree(cfg.path_in_data(name))


def chain_changes(inventory, first_needed):
    """Where each change from first_needed (the newest metadata's version: the first change
    it lacks) to the highest one is read: [(path, first, last)], each change once.

    At each point the changelog reaching furthest is taken; junk after a file's last good
    change is left out. A change that no source holds is a gap: refused here, before
    anything is touched (mfsmaster -a would stop there, and -i would skip it)."""
    spans = []
    for path in inventory.changelogs:
        last = inventory.last_valid.get(path)
        if last is None or last < first_needed:
            continue
        first = inventory.first_of(path)
        if first is not None and first <= last:
            spans.append((first, last, path))
    pieces = []
    wanted = first_needed
    while True:
        covering = [span for span in spans if span[0] <= wanted <= span[1]]
        if not covering:
            break
        _, last, path = max(covering, key=lambda span: span[1])
        pieces.append((path, wanted, last))
        wanted = last + 1
    later = [span for span in spans if span[1] >= wanted]
    if later:
        resume, _, path = min(later)
        raise OCFError(ERR_GENERIC,
                       f"changelog gap: changes {wanted}-{resume - 1} are in none of the "
                       f"sources (the next, {resume}, is in {path}); refusing to restore past "
                       "it (never -i): add the changelogs holding them to metadata_sources")
    return pieces


def write_chain(inventory, pieces, target, uid, gid):
    """One changelog holding the pieces' changes in order (a new file owned by uid:gid)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o640)
    with os.fdopen(fd, "wb") as out:
        for path, first, last in pieces:
            offsets = change_run_offsets(path, first, last, inventory.start_of(path))
            if offsets is None:
                raise OCFError(ERR_GENERIC, f"{path} changed while it was read (changes "
                                            f"{first}-{last} no longer there)")
            start, end = offsets
            with open(path, "rb") as f:
                if copy_bytes(f, out, start, end - start) != end - start:
                    raise OCFError(ERR_GENERIC, f"{path} shrank while it was read")
        os.fchown(out.fileno(), uid, gid)


def place_sources(res, cfg, inventory, changes, pieces, staging=None):
    """Give DATA_PATH what mfsmaster -a start needs, where a metalogger looks for it.

    A metalogger that connects downloads metadata.mfs.back, changelog.1.mfs and
    changelog.0.mfs, nothing else (matomlserv.c). So the newest metadata becomes
    metadata.mfs.back, and every change after it, from all sources, one new
    changelog.1.mfs; the master writes its own changes to a new changelog.0.mfs. Left
    in several files, the restored changes would be a gap in what a metalogger started
    after the failover holds: it could not carry the next one.

    DATA_PATH's own changelogs that reach the metadata's version go to pyha-replaced.*
    once the new file holds their changes (mfsmaster -a would merge them again, and stop
    at a hole one has below that version; one with a torn last line or junk is dropped
    whole by -a); older ones stay, renamed where they hold those names. Each step keeps
    every change present, so an agent killed half-way leaves a directory that restores.
    """
    uid, gid = cfg.ids()
    chained = staging is not None   # the pieces are there already (chain_into_staging)
    if not chained:
        staging = fresh_staging(cfg)
    merged = os.path.join(staging, CHAIN_NAME)
    try:
        if pieces and not chained:  # first: the pieces name files that are renamed below
            write_chain(inventory, pieces, merged, uid, gid)
        # Another history's files leave DATA_PATH first: mfsmaster -a would load the newest
        # metadata* file and merge every changelog there whatever history it tells.
        # (What they share with the kept one is in the merged file.)
        for path in inventory.foreign:
            if os.path.dirname(path) == cfg.data_path:
                target = changes.move_aside(os.path.basename(path))
                res.log.warning(f"{path}: of the other history; kept in {target}")
        place_newest_metadata(res, cfg, inventory, changes, staging, uid, gid)
        current = {}    # DATA_PATH's changelogs -> their name now
        for path in inventory.changelogs:
            if os.path.dirname(path) == cfg.data_path and path not in inventory.foreign:
                current[path] = os.path.basename(path)
        for name in ("changelog.0.mfs", "changelog.1.mfs"):
            if os.path.lexists(cfg.path_in_data(name)):
                renamed = changes.free_name("changelog.{}.mfs")
                changes.move(name, cfg.path_in_data(renamed))
                changes.origins[renamed] = cfg.path_in_data(name)
                current = {path: renamed if now == name else now for path, now in current.items()}
        if pieces:
            sources = list(dict.fromkeys(path for path, _, _ in pieces))
            changes.add(merged, "changelog.1.mfs",
                        sources[0] if len(sources) == 1 else f"[{' + '.join(sources)}]")
        for path in inventory.changelogs:
            if path in inventory.kept_until:
                continue    # moved out above, or read only up to a change
            now = cfg.path_in_data(current[path]) if path in current else path
            junk = inventory.junk_after(path)
            if junk is None and not ends_torn(now):
                continue
            after = f" after change {junk}" if junk is not None else ""
            if path not in current:
                res.log.warning(f"{path}: a torn last line or junk{after} left out of the "
                                "restore")
                continue
            target = changes.move_aside(current.pop(path), kept_as=os.path.basename(path))
            res.log.warning(f"{path}: a torn last line or junk{after} left out of the restore; "
                            f"the original is kept in {target}")
        # The new changelog.1.mfs holds every change from the metadata's version on: the
        # originals reaching that far go aside too, or mfsmaster -a would merge them again
        # (and refuse a hole one of them has below that version, e.g. the lines a bare
        # mfsmaster dropped at its exit, after which the next one appended to the file).
        first_needed = pieces[0][1] if pieces else None
        for path, now in current.items():
            last = inventory.last_valid.get(path)
            if first_needed is not None and last is not None and last >= first_needed:
                changes.move_aside(now, kept_as=os.path.basename(path))
        if changes.replaced:
            res.log.info(f"DATA_PATH's changelogs are kept in {changes.replaced}")
    finally:
        remove_tree(staging)


def place_newest_metadata(res, cfg, inventory, changes, staging, uid, gid):
    """Make the newest metadata metadata.mfs.back (the name a metalogger downloads): a
    local metadata.mfs is renamed so by the master itself, if that name is free; a file
    from elsewhere is linked or copied in; an older metadata.mfs.back gets a free
    metadata.mfs.back.N name."""
    newest = inventory.newest_metadata
    back = cfg.path_in_data("metadata.mfs.back")
    if newest is None or newest == back:
        return
    if os.path.lexists(back):
        renamed = changes.free_name("metadata.mfs.back.{}")
        changes.move("metadata.mfs.back", cfg.path_in_data(renamed))
        changes.origins[renamed] = back
    if newest == cfg.path_in_data("metadata.mfs"):
        return
    staged = os.path.join(staging, "metadata.newest")
    name = os.path.basename(newest)
    if not (can_link(newest, name, uid, os.stat(cfg.data_path).st_dev)
            and linked(newest, staged)):
        copy_owned(newest, staged, uid, gid)
    changes.add(staged, "metadata.mfs.back", newest)


def linked(path, staged):
    """Hard-link path to staged; False where the kernel refuses across mounts.

    A bind mount of DATA_PATH's filesystem has the same st_dev, but link() across two
    mounts fails with EXDEV (EPERM/EMLINK on some filesystems): copy instead."""
    import errno
    try:
        os.link(path, staged)
        return True
    except OSError as err:
        if err.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            return False
        raise


def can_link(path, name, uid, device):
    """Metadata files are only ever replaced by rename, so a hard link is a stable copy,
    provided it is on DATA_PATH's filesystem and the master (uid) can read it."""
    st = os.stat(path, follow_symlinks=False)
    return (name != "metadata_ml.tmp" and st.st_dev == device and st.st_uid == uid
            and st.st_mode & 0o400 != 0)


def fresh_staging(cfg):
    """An empty DATA_PATH/pyha-restore.staging only root can write to (0700)."""
    staging = cfg.path_in_data(STAGING_DIR)
    if os.path.islink(staging):
        os.unlink(staging)  # planted: never rmtree'd or written through
    remove_tree(staging)
    os.mkdir(staging, 0o700)
    return staging


def remove_tree(path):
    """shutil.rmtree(path, ignore_errors=True), without importing shutil (5 ms of imports
    measured here: re, bz2, lzma) for the usual case on start: path gone or empty."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:     # not empty (or not a directory: rmtree ignores that as well)
        import shutil
        shutil.rmtree(path, ignore_errors=True)


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


def restore_staged(res, cfg, inventory, expected, metaid, changes, pieces):
    """Restore into a staging directory, check the result with mfsmetadump, install it
    (recorded in changes, so that a master that then fails to start can be undone)."""
    uid, gid = cfg.ids()
    staging = fresh_staging(cfg)
    try:
        origins = gather(res, inventory, staging, uid, gid, pieces)
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
            raise OCFError(ERR_GENERIC, mfsmaster_failure(result, "mfsmaster -a restore",
                                                          origins))
        restored = os.path.join(staging, "metadata.mfs")
        if metadata_header(restored) is None:
            raise OCFError(ERR_GENERIC, "mfsmaster -a restore wrote no metadata.mfs")
        version, _ = metadata_version(res, restored)
        check_restored_version(res, version, expected, metaid, "mfsmaster -a restore")
        install(res, cfg, staging, changes)
    finally:
        remove_tree(staging)
    return version


def gather(res, inventory, staging, uid, gid, pieces):
    """Copy the metadata files into staging under unique names, and the changes after
    the newest one, from every source, as one changelog (write_chain, as single-pass
    does): what a source holds below that version (a hole a bare mfsmaster left at its
    exit, another history's lines) never reaches mfsmaster -a."""
    origins = {}
    for index, source in enumerate(inventory.metadata, 1):
        copy_owned(source, os.path.join(staging, f"metadata.mfs.back.{index}"), uid, gid)
        origins[f"metadata.mfs.back.{index}"] = source
    if pieces:
        write_chain(inventory, pieces, os.path.join(staging, "changelog.1.mfs"), uid, gid)
        sources = list(dict.fromkeys(path for path, _, _ in pieces))
        origins["changelog.1.mfs"] = (sources[0] if len(sources) == 1
                                      else f"[{' + '.join(sources)}]")
    for source in inventory.changelogs:
        junk = inventory.junk_after(source)
        if source not in inventory.kept_until and (junk is not None or ends_torn(source)):
            after = f" after change {junk}" if junk is not None else ""
            res.log.warning(f"{source}: a torn last line or junk{after} left out of the "
                            "staging copy")
    return origins


def install(res, cfg, staging, changes):
    """Put the restored metadata in, then move the old metadata and changelogs aside
    (into DATA_PATH/pyha-replaced.*), each step recorded in changes.

    In this order an agent killed half-way leaves a directory that starts (the
    restored metadata.mfs is there) or restores again (the old files are)."""
    for name in ("metadata.crc", "metadata.mfs"):  # metadata.mfs last: it makes the directory valid
        if os.path.lexists(cfg.path_in_data(name)):
            changes.move_aside(name)
        if os.path.exists(os.path.join(staging, name)):
            changes.add(os.path.join(staging, name), name)
    for name in os.listdir(cfg.data_path):
        # Only the master's own files: a metalogger may share DATA_PATH and its
        # changelog_ml*/metadata_ml* files are its own (and only ever read here).
        if name.startswith(("changelog.", "metadata.mfs.")) and (
                is_metadata_file(name) or is_changelog(name)) and name not in changes.added:
            changes.move_aside(name)
    if changes.replaced:
        res.log.info(f"previous metadata and changelogs kept in {changes.replaced}")
