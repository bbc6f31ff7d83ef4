"""mfshistory.last_run: which part of a metalogger's changelog is its current master's.

mfsmetalogger appends what its master sends to changelog_ml.0.mfs, also after it
reconnected to another master (masterconn.c opens the file with "a"): the file then holds
runs of several connections. Files written here in MooseFS's changelog format; the
restore of such a file by the real MooseFS is in test_pitfalls.py (there_and_back).
"""

from ocf_agents.mfshistory import last_run


def changes(numbers, what="CREATE(1,d{n},2,511,18,0,0,0):{n}"):
    return b"".join(b"%d: 1796289585|%s\n" % (n, what.format(n=n).encode()) for n in numbers)


def write(tmp_path, data):
    path = tmp_path / "changelog_ml.0.mfs"
    path.write_bytes(data)
    return str(path)


def test_one_run_is_the_whole_file(tmp_path):
    assert last_run(write(tmp_path, changes(range(1, 200))), 199) is None


def test_a_new_master_that_repeats_the_numbers_starts_the_last_run(tmp_path):
    old, new = changes(range(3, 16)), changes(range(13, 18), "MKDIR(y{n})")
    assert last_run(write(tmp_path, old + new), 17) == (len(old), 13)


def test_a_master_that_moved_on_while_the_metalogger_was_away_starts_the_last_run(tmp_path):
    old, new = changes(range(1, 11)), changes(range(20, 26))
    assert last_run(write(tmp_path, old + new), 25) == (len(old), 20)


def test_junk_and_a_torn_line_after_the_last_change_are_not_the_run(tmp_path):
    old, new = changes(range(1, 6)), changes(range(3, 9))
    path = write(tmp_path, old + new + b"garbage\n999999: 1|X(1)\n9: 17962")
    assert last_run(path, 8) == (len(old), 3)


def test_a_run_longer_than_the_read_block_is_found(tmp_path):
    old, new = changes(range(1, 1000)), changes(range(500, 120000))
    assert last_run(write(tmp_path, old + new), 119999) == (len(old), 500)
