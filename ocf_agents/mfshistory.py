"""Which history the metadata sources hold, when two masters wrote under the same numbers.

After a failover from a metalogger that had not received the dead master's last changes,
the new master numbers its changes on from where the metalogger ended: the dead master's
disk and the new master's files then hold different changes under the same numbers. When
the group comes back to that node, whose metalogger has been following the new master, its
sources hold both histories. mfsmaster -a takes the newest metadata file and merges every
changelog by number: it mixed them (measured: the directories written on the new master
vanished and the dead master's last ones came back, and start said all was well).

The cluster's record names the history that ran last (its newest change and that change's
CRC, mfsrestore.write_record). separate_histories finds the changelogs that disagree, keeps
the side that holds the recorded change, keeps what the other side has in common with it
(the changes before the two parted), and leaves out the other side's later changes and the
metadata files saved from them. No record, or none of the sources holding its change:
refused, with the files named.

A metalogger's changelog can hold both histories in one file (last_run): only its last run
is its current master's.
"""

import os

from ocf_agents.moosefs import change_digest, decode_change_number, first_change
from ocf_agents.ocf import ERR_GENERIC, OCFError


def count_lines(f):
    """Newlines in an open file, read in large blocks (C speed, no copy of the file)."""
    block = bytearray(1 << 23)
    view = memoryview(block)
    count = 0
    while True:
        size = f.readinto(block)
        if not size:
            return count
        count += block.count(b"\n") if size == len(block) else bytes(view[:size]).count(b"\n")


def last_run(path, last):
    """(byte offset, first change) of the run of consecutive changes ending with change
    `last` in a metalogger's changelog, or None when that run is the whole file.

    A metalogger appends whatever its master sends to changelog_ml.0.mfs, also after it
    (re)connected to a master whose numbers are elsewhere: it opens the file with "a" and
    downloads the metadata instead of checking (masterconn.c). The file then holds runs of
    different connections, and after a failover that lost the old master's last changes a
    later run repeats their numbers with the new master's changes. Only the last run is
    the current master's; the metadata it downloaded covers what came before."""
    import mmap
    with open(path, "rb") as f:
        first = first_change(path)
        if first is not None and count_lines(f) == last - first + 1:
            return None     # one run: as many lines as numbers (the usual case, no parsing)
        if os.fstat(f.fileno()).st_size == 0:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            end = data.rfind(b"\n") + 1        # after it: a torn line
            block_size = 1 << 22
            expected = None
            while end > 0:
                low = max(0, end - block_size)
                block = data[low:end]
                cut = block.find(b"\n") + 1 if low > 0 else 0
                if low > 0 and cut == 0:
                    block_size *= 2             # a line longer than the block
                    continue
                position = end
                for line in reversed(block[cut:].split(b"\n")[:-1]):
                    position -= len(line) + 1
                    number = decode_change_number(line)
                    if expected is None:
                        if number == last:
                            expected = last - 1     # junk after `last` is not the run
                        continue
                    if number != expected:
                        run_start = position + len(line) + 1
                        return (run_start, expected + 1) if run_start > 0 else None
                    expected -= 1
                end = low + cut
    return None


def read_change_line(path, number, since=0):
    """The line of change `number` in a changelog from byte `since` on (without its
    newline), or None. Searched from the end: the changes compared are the newest ones two
    files share."""
    import mmap
    head = b"%d: " % number
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = data.rfind(b"\n" + head, since)
            if found >= 0:
                start = found + 1
            elif data[since:since + len(head)] == head:
                start = since
            else:
                return None
            end = data.find(b"\n", start)
            return data[start:end] if end >= 0 else None
    except (OSError, ValueError):   # ValueError: an empty file cannot be mapped
        return None


class Span:
    """The changes first..last one changelog holds (from byte `since` on)."""

    def __init__(self, path, first, last, since):
        self.path, self.first, self.last, self.since = path, first, last, since

    def overlap(self, other):
        low, high = max(self.first, other.first), min(self.last, other.last)
        return (low, high) if low <= high else None

    def line(self, number):
        return read_change_line(self.path, number, self.since)

    def agrees_at(self, other, number):
        mine = self.line(number)
        return mine is not None and mine == other.line(number)


def first_difference(span, other, low, high):
    """The first change in low..high where the two files differ (they agree up to it, and
    histories that parted never meet again: a bisection finds it)."""
    while low < high:
        middle = (low + high) // 2
        if span.agrees_at(other, middle):
            low = middle + 1
        else:
            high = middle
    return low


def classify(span, agreed, parted):
    """True when span agrees with a file of the kept history where they overlap last; the
    first change it does not share with the kept history when it differs from one (or
    agrees with a file of the other history past where that one parted); None when it
    meets neither."""
    for kept in agreed:
        shared = span.overlap(kept)
        if shared:
            if span.agrees_at(kept, shared[1]):
                return True
            return first_difference(span, kept, *shared)
    for other, parted_at in parted.items():
        shared = span.overlap(other)
        if shared and shared[1] >= parted_at and span.agrees_at(other, shared[1]):
            return max(parted_at, span.first)
    return None


def separate_histories(res, inventory, read_recorded):
    """Find changelogs that hold different changes under one number; keep the history the
    cluster ran last (read_recorded(): the record, asked only when there are two); change
    `inventory` so that the restore uses nothing of the other one: inventory.foreign lists
    the files left out (to move out of DATA_PATH), inventory.kept_until the changelogs used
    only up to a change. Returns True, or None when all sources tell one history.

    Call after inventory.highest_change() (it reads each file's last good change)."""
    spans = []
    for path in inventory.changelogs:
        last = inventory.last_valid.get(path)
        first = inventory.first_of(path) if last is not None else None
        if first is not None and first <= last:
            spans.append(Span(path, first, last, inventory.start_of(path)))
    conflict = None
    for index, span in enumerate(spans):
        for other in spans[index + 1:]:
            shared = span.overlap(other)
            if shared and not span.agrees_at(other, shared[1]):
                conflict = (span, other, shared)
                break
        if conflict:
            break
    if conflict is None:
        return None
    span, other, shared = conflict
    from ocf_agents.mfsrestore import check_single_filesystem
    check_single_filesystem(res, inventory)    # two filesystems differ everywhere: said so
    number = first_difference(span, other, *shared)
    both = f"changes from {number} on differ between {span.path} and {other.path}"
    res.log.warning(f"two masters wrote under the same numbers: {both}")
    recorded = read_recorded()
    if recorded is None or recorded.change is None:
        raise OCFError(ERR_GENERIC,
                       "the metadata sources hold two histories and the cluster has no record "
                       "of which one ran last: move one side's files out of DATA_PATH and "
                       f"metadata_sources ({both})")
    ran_last = [s for s in spans if s.first <= recorded.change <= s.last
                and change_digest(s.line(recorded.change) or b"") == recorded.crc]
    if recorded.change < number or not ran_last:
        why = (f"the cluster's record ({record_label(res, recorded)}) is from before they "
               "parted" if ran_last else f"none holds change {recorded.change} of the one "
               f"the cluster ran last ({record_label(res, recorded)})")
        raise OCFError(ERR_GENERIC,
                       f"the metadata sources hold two histories and {why}: start the node "
                       "that ran last, or move one side's files out of DATA_PATH and "
                       f"metadata_sources ({both})")
    agreed = set(ran_last)
    parted = {}     # span -> the first change it does not share with the history kept
    progress = True
    while progress:   # a file that agrees with a classified one joins its history
        progress = False
        for span in spans:
            if span in agreed or span in parted:
                continue
            side = classify(span, agreed, parted)
            if side is True:
                agreed.add(span)
            elif side is not None:
                parted[span] = side
            progress = progress or side is not None
    parted_at = min(parted.values(), default=number)
    for span in spans:
        if span in agreed:
            continue
        keep_last = parted.get(span, parted_at) - 1
        if keep_last >= span.last:
            continue    # all of it from before the histories parted
        if span not in parted:
            raise OCFError(ERR_GENERIC,
                           f"the metadata sources hold two histories and {span.path} (changes "
                           f"{span.first}-{span.last}) shares no change with another file to "
                           "tell which one it belongs to: move it out of DATA_PATH and "
                           f"metadata_sources if it is the other one's ({both})")
        inventory.foreign.append(span.path)
        if keep_last >= span.first:
            inventory.kept_until[span.path] = keep_last
            inventory.last_valid[span.path] = keep_last
        else:
            inventory.changelogs.remove(span.path)
            inventory.last_valid.pop(span.path, None)
        inventory.ends_with_junk.pop(span.path, None)
    exclude_foreign_metadata(res, inventory, parted_at, parted)
    inventory.history_settled = True
    res.log.warning(f"the metadata sources hold two histories ({both}); keeping the one the "
                    f"cluster ran last (change {recorded.change} as recorded, in "
                    f"{ran_last[0].path}) and, of the other, only the changes before "
                    f"{parted_at}: left out {', '.join(inventory.foreign)}")
    return True


def exclude_foreign_metadata(res, inventory, parted_at, parted):
    """A metadata file saved after the histories parted, in a directory whose changelogs
    took the other way (or with no changelog to tell), holds the other history's changes."""
    parted_in = {}
    for span, at in parted.items():
        directory = os.path.dirname(span.path)
        parted_in[directory] = min(at, parted_in.get(directory, at))
    told = {os.path.dirname(path) for path in inventory.changelogs}
    for path in list(inventory.metadata):
        directory = os.path.dirname(path)
        limit = parted_in.get(directory)
        if limit is None and directory in told:
            continue
        if limit is None:
            limit = parted_at
        version, _ = inventory.metadata_version(res, path)
        if version > limit:
            inventory.metadata.remove(path)
            inventory.foreign.append(path)
            if inventory.newest_metadata == path:
                inventory.newest_metadata = None


def line_in_sources(inventory, number):
    """The line of change `number` in the first changelog whose part read holds it."""
    for path in inventory.changelogs:
        last = inventory.last_valid.get(path)
        first = inventory.first_of(path) if last is not None else None
        if first is not None and first <= number <= last:
            line = read_change_line(path, number, inventory.start_of(path))
            if line is not None:
                return line
    return None


def check_same_history(res, inventory, what):
    """Refuse sources whose history forked from the one the cluster ran.

    The record names a change (number and CRC of its changelog line). Sources that hold
    that change under the same number but with different content come from another
    history: a node restored at an older version and clients wrote on it, while this
    node's disk holds the old history's changes. Starting them would bring back what was
    deleted there and lose what was written there, whatever the version numbers say.
    """
    from ocf_agents.mfsrestore import loss_accepted, read_record
    if inventory.history_settled:
        return      # two histories were found and the recorded one kept
    recorded = read_record(res)
    if recorded is None or recorded.change is None:
        return
    if not inventory.last_valid:
        inventory.highest_change()
    line = line_in_sources(inventory, recorded.change)
    if line is None:
        res.log.info(f"change {recorded.change} of the recorded history is not in the sources: "
                     "histories not compared")
        return
    if change_digest(line) == recorded.crc:
        return
    if loss_accepted(res):
        res.log.crit(f"{what} forked from the history the cluster ran (change {recorded.change} "
                     f"differs): starting it because accept_metadata_loss={recorded.raw}; the "
                     "other history's changes are lost")
        return
    res.log.error(f"{what}: change {recorded.change} reads "
                  f"{line.decode(errors='replace')[:200]!r}, not the one recorded in "
                  f"{record_label(res, recorded)}")
    raise OCFError(ERR_GENERIC,
                   f"refusing to start {what}: it comes from another history than the one the "
                   f"cluster ran (change {recorded.change} differs); start the node that ran "
                   f"last, or keep this side: accept_metadata_loss={recorded.raw}")


def record_label(res, recorded):
    from ocf_agents.mfsrestore import record_name
    return f"{record_name(res)}={recorded.raw}"
