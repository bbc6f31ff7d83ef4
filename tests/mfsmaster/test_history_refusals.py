"""mfshistory.separate_histories refuses, with a sentence naming the files, where it cannot
tell which history to keep: a record from before the histories parted, and a changelog that
meets no file of either side. Changelogs written here in MooseFS's format (the restore of
two real histories by the real MooseFS is in test_pitfalls.py, there_and_back)."""
from types import SimpleNamespace

import pytest

from ocf_agents.mfshistory import separate_histories
from ocf_agents.mfsrestore import Record
from ocf_agents.moosefs import Inventory, change_digest
from ocf_agents.ocf import OCFError


def changes(numbers, what):
    return b"".join(b"%d: 1796289585|%s\n" % (n, what.format(n=n).encode()) for n in numbers)


class Said:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda text: self.lines.append((level, text))


def agent_res():
    return SimpleNamespace(log=Said(), params=SimpleNamespace(version_attribute=""),
                           instance_without_clone_suffix="mfs")


def record_of(path, number):
    """The record a master writes when it served change `number` of the file at path."""
    line = next(raw for raw in path.read_bytes().splitlines()
                if raw.startswith(b"%d:" % number))
    return Record(f"1:{number + 1}:{number}:{change_digest(line):X}", 1, number + 1, number,
                  change_digest(line))


@pytest.fixture
def two_sides(tmp_path):
    """Node A's DATA_PATH (changes 1-20 of its history) and the metalogger of B, which
    followed A up to 10 and then B's own master from 11 to 25."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "changelog.0.mfs").write_bytes(changes(range(1, 21), "CREATE(1,a{n},1,438,18,0,0,0):{n}"))
    (b / "changelog_ml.0.mfs").write_bytes(
        changes(range(1, 11), "CREATE(1,a{n},1,438,18,0,0,0):{n}")
        + changes(range(11, 26), "MKDIR(b{n})"))
    return a, b


def separate(directories, record):
    res = agent_res()
    inventory = Inventory([str(d) for d in directories])
    inventory.highest_change()
    return res, inventory, lambda: separate_histories(res, inventory, lambda: record)


def test_a_record_from_before_the_histories_parted_is_refused(two_sides):
    a, b = two_sides
    # the cluster last recorded change 8, which both sides share: it cannot tell which ran on
    _, _, run = separate([a, b], record_of(a / "changelog.0.mfs", 8))
    with pytest.raises(OCFError) as refused:
        run()
    reason = refused.value.reason
    assert "is from before they parted" in reason, reason
    assert "changes from 11 on differ between" in reason, reason
    assert "start the node that ran last" in reason, reason


def test_a_changelog_that_meets_neither_history_is_refused(two_sides):
    a, b = two_sides
    # a later file of B's metalogger, after a gap: it overlaps no file of either side
    (b / "changelog_ml.1.mfs").write_bytes(changes(range(30, 36), "MKDIR(c{n})"))
    _, _, run = separate([a, b], record_of(b / "changelog_ml.0.mfs", 25))
    with pytest.raises(OCFError) as refused:
        run()
    reason = refused.value.reason
    assert "changelog_ml.1.mfs (changes 30-35) shares no change with another file" in reason, \
        reason
    assert "move it out of DATA_PATH and metadata_sources" in reason, reason


def test_the_record_of_one_side_keeps_it_and_cuts_the_other_at_the_parting(two_sides):
    """The case both refusals border on: B ran last (its change 25 recorded), so A's
    changelog is used only up to change 10 and named as left out."""
    a, b = two_sides
    res, inventory, run = separate([a, b], record_of(b / "changelog_ml.0.mfs", 25))
    assert run() is True
    assert inventory.foreign == [str(a / "changelog.0.mfs")]
    assert inventory.kept_until == {str(a / "changelog.0.mfs"): 10}
    assert any("keeping the one the cluster ran last" in text for _, text in res.log.lines)
