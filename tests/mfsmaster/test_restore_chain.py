"""How a single-pass restore chains the changes of several sources into the one changelog a
metalogger downloads (issue 13.1), on changelog files written here: no MooseFS runs."""
import pytest

from ocf_agents.mfsrestore import chain_changes, write_chain
from ocf_agents.moosefs import Inventory
from ocf_agents.ocf import OCFError


def change(number):
    return b"%d: 1796149284|MKDIR(1,d%d,1,493,18,0,0,%d):%d\n" % (number, number, number, number)


def changelog(directory, name, numbers, tail=b""):
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_bytes(b"".join(change(n) for n in numbers) + tail)
    return path


def inventory_of(*directories):
    inventory = Inventory([str(d) for d in directories])
    inventory.highest_change()
    return inventory


def test_every_change_from_the_metadata_on_is_taken_once_from_the_file_reaching_furthest(
        tmp_path):
    data, metalogger = tmp_path / "data", tmp_path / "ml"
    changelog(data, "changelog.0.mfs", range(150, 181))
    changelog(data, "changelog.1.mfs", range(90, 150))
    changelog(metalogger, "changelog_ml.0.mfs", range(140, 201))
    changelog(metalogger, "changelog_ml_back.1.mfs", range(50, 100))
    inventory = inventory_of(data, metalogger)
    pieces = chain_changes(inventory, 100)
    assert [(p.rsplit("/", 1)[1], a, b) for p, a, b in pieces] == [
        ("changelog.1.mfs", 100, 149), ("changelog_ml.0.mfs", 150, 200)]
    merged = tmp_path / "merged"
    write_chain(inventory, pieces, merged, -1, -1)
    assert merged.read_bytes() == b"".join(change(n) for n in range(100, 201))


def test_of_a_metalogger_changelog_only_its_last_run_is_taken(tmp_path):
    """Its earlier run is another connection's (test_changelog_runs.py): here an older
    master's changes 95-120 that the current one, from 100 on, does not share."""
    metalogger = tmp_path / "ml"
    changelog(metalogger, "changelog_ml.0.mfs", range(95, 121))
    with open(metalogger / "changelog_ml.0.mfs", "ab") as f:
        f.write(b"".join(change(n).replace(b"|", b"|NEW") for n in range(100, 131)))
    changelog(metalogger, "changelog_ml_back.1.mfs", range(50, 100))
    inventory = inventory_of(metalogger)
    pieces = chain_changes(inventory, 60)
    merged = tmp_path / "merged"
    write_chain(inventory, pieces, merged, -1, -1)
    assert merged.read_bytes() == b"".join(change(n) for n in range(60, 100)) + b"".join(
        change(n).replace(b"|", b"|NEW") for n in range(100, 131))


def test_junk_after_the_last_good_change_is_left_out(tmp_path):
    data = tmp_path / "data"
    changelog(data, "changelog.0.mfs", range(1, 11), tail=b"999999: 1|BOGUS(1)\nnot a change\n")
    inventory = inventory_of(data)
    pieces = chain_changes(inventory, 5)
    merged = tmp_path / "merged"
    write_chain(inventory, pieces, merged, -1, -1)
    assert merged.read_bytes() == b"".join(change(n) for n in range(5, 11))


def test_a_gap_is_refused_before_anything_is_written_naming_the_missing_changes(tmp_path):
    data = tmp_path / "data"
    changelog(data, "changelog.1.mfs", range(1, 51))
    changelog(data, "changelog.0.mfs", range(61, 80))
    with pytest.raises(OCFError) as refused:
        chain_changes(inventory_of(data), 10)
    assert "changelog gap: changes 51-60 are in none of the sources" in refused.value.reason
    assert "changelog.0.mfs" in refused.value.reason


def test_changes_the_metadata_already_holds_need_no_changelog(tmp_path):
    data = tmp_path / "data"
    changelog(data, "changelog.0.mfs", range(1, 51))
    assert chain_changes(inventory_of(data), 51) == []


@pytest.mark.parametrize("kernel_copy", ["copy_file_range", "not supported (EXDEV)"])
def test_the_chain_is_the_same_whether_the_kernel_copies_it_or_python_does(
        tmp_path, monkeypatch, kernel_copy):
    """Large changelogs are copied with copy_file_range (issue 13's restore speed); where
    the kernel cannot (another filesystem on an old kernel), the copy falls back to reads
    and writes with the same bytes, also when the kernel stopped part-way."""
    import errno
    import os
    data, metalogger = tmp_path / "data", tmp_path / "ml"
    changelog(data, "changelog.0.mfs", range(1, 3001))
    changelog(metalogger, "changelog_ml.0.mfs", range(2000, 5001))
    if kernel_copy != "copy_file_range":
        real, calls = os.copy_file_range, []

        def partial_then_refused(src, dst, count, offset_src=None, *args):
            calls.append(count)
            if len(calls) == 1:      # a first short copy, then the kernel refuses
                return real(src, dst, min(count, 4096), offset_src)
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", partial_then_refused)
    inventory = inventory_of(data, metalogger)
    pieces = chain_changes(inventory, 10)
    merged = tmp_path / "merged"
    write_chain(inventory, pieces, merged, -1, -1)
    assert merged.read_bytes() == b"".join(change(n) for n in range(10, 5001))
