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
    LOCK_FILE, changelog_metaid, copy_owned, cut_torn_line, ends_torn, is_changelog,
    is_metadata_file, kill_master, launch, lock_holder, master_status, metadata_header,
    metadata_version, mfsmaster_failure, wait_for_lock_release,
)
from ocf_agents.ocf import ERR_GENERIC, OCFError, read_file, write_file_atomically

STAGING_DIR = "pyha-restore.staging"
REPLACED_PREFIX = "pyha-replaced."
REPLACED_KEEP = 3


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


def can_link(path, name, uid, device):
    """Metadata files are only ever replaced by rename, so a hard link is a stable copy,
    provided it is on DATA_PATH's filesystem and the master (uid) can read it."""
    st = os.stat(path, follow_symlinks=False)
    return (name != "metadata_ml.tmp" and st.st_dev == device and st.st_uid == uid
            and st.st_mode & 0o400 != 0)


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
