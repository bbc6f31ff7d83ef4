"""ocf:pyha:nfsexport against the real exportfs on a private /var/lib/nfs."""

import os
import subprocess
import threading

import pytest

from rigs.agents import exit_reason
from rigs.nfs import etab_pairs


@pytest.fixture
def export_dirs(tmp_path):
    dirs = []
    for name in ("data1", "data2"):
        d = tmp_path / "srv" / name
        d.mkdir(parents=True)
        dirs.append(str(d))
    return dirs


def etab_options(node, directory, client):
    for line in node.read("etab").splitlines():
        path, _, rest = line.partition("\t")
        if path == directory and rest.startswith(client + "("):
            return rest[len(client) + 1:-1].split(",")
    return None


def params_for(dirs, **extra):
    params = {"clientspec": "10.213.0.0/24 [fd00::7]", "directory": " ".join(dirs),
              "fsid": "41", "options": "rw,no_root_squash"}
    params.update(extra)
    return params


def test_start_exports_every_client_directory_pair_with_consecutive_fsids(make_node, export_dirs):
    node = make_node()
    result = node.agent("nfsexport", "start", params_for(export_dirs))
    assert result.returncode == 0, result.stderr
    assert etab_pairs(node) == {(d, c) for d in export_dirs for c in ("10.213.0.0/24", "fd00::7")}
    assert "fsid=41" in etab_options(node, export_dirs[0], "10.213.0.0/24")
    assert "fsid=42" in etab_options(node, export_dirs[1], "fd00::7")
    assert "rw" in etab_options(node, export_dirs[0], "fd00::7")
    assert node.agent("nfsexport", "monitor", params_for(export_dirs),
                      OCF_RESKEY_CRM_meta_interval=10000).returncode == 0


def test_start_twice_is_success_and_stop_twice_is_success(make_node, export_dirs):
    node = make_node()
    params = params_for(export_dirs)
    assert node.agent("nfsexport", "start", params).returncode == 0
    assert node.agent("nfsexport", "start", params).returncode == 0
    assert len(etab_pairs(node)) == 4
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert etab_pairs(node) == set()
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert node.agent("nfsexport", "monitor", params).returncode == 7


def test_probe_after_reboot_ignores_a_stale_export_table(make_node, export_dirs):
    node = make_node()
    params = params_for(export_dirs)
    assert node.agent("nfsexport", "start", params).returncode == 0
    # A reboot empties /run (HA_RSCTMP) but the etab on disk survives.
    for entry in node.rsctmp.rglob("*"):
        if entry.is_file():
            entry.unlink()
    assert len(etab_pairs(node)) == 4
    probe = node.agent("nfsexport", "monitor", params, OCF_RESKEY_CRM_meta_interval=0)
    assert probe.returncode == 7


def test_monitor_fails_with_a_reason_when_one_export_vanished(make_node, export_dirs):
    node = make_node()
    params = params_for(export_dirs)
    assert node.agent("nfsexport", "start", params).returncode == 0
    subprocess.run(node.command(["exportfs", "-u", f"10.213.0.0/24:{export_dirs[1]}"]), check=True)
    result = node.agent("nfsexport", "monitor", params, OCF_RESKEY_CRM_meta_interval=10000)
    assert result.returncode == 1
    assert f"10.213.0.0/24:{export_dirs[1]}" in exit_reason(result)


def test_monitor_backs_up_exactly_this_exports_rmtab_lines_without_growth(make_node, export_dirs):
    node = make_node()
    params = params_for(export_dirs)
    assert node.agent("nfsexport", "start", params).returncode == 0
    node.write("rmtab", f"10.213.0.5:{export_dirs[0]}:0x00000001\n"
                        f"10.213.0.6:{export_dirs[0]}/sub:0x00000001\n"
                        f"10.213.0.7:/srv/other:0x00000002\n"
                        f"10.213.0.8:{export_dirs[1]}:0x00000001\n")
    for _ in range(3):
        assert node.agent("nfsexport", "monitor", params).returncode == 0
    backup = os.path.join(export_dirs[0], ".rmtab")
    assert open(backup).read() == f"10.213.0.5:{export_dirs[0]}:0x00000001\n"
    assert open(os.path.join(export_dirs[1], ".rmtab")).read() == \
        f"10.213.0.8:{export_dirs[1]}:0x00000001\n"
    assert os.stat(backup).st_mode & 0o777 == 0o644


def test_rmtab_survives_failover_to_a_node_with_an_empty_rmtab(make_node, export_dirs):
    node_a, node_b = make_node("nodeA"), make_node("nodeB")
    params = params_for(export_dirs)
    assert node_a.agent("nfsexport", "start", params).returncode == 0
    node_a.write("rmtab", f"10.213.0.5:{export_dirs[0]}:0x00000001\n"
                          f"10.213.0.9:{export_dirs[1]}:0x00000003\n")
    assert node_a.agent("nfsexport", "monitor", params).returncode == 0
    assert node_a.agent("nfsexport", "stop", params).returncode == 0

    # Node B already serves another export whose client lines must stay.
    other = "10.213.0.7:/srv/other:0x00000001\n"
    node_b.write("rmtab", other)
    assert node_b.agent("nfsexport", "start", params).returncode == 0
    lines = node_b.read("rmtab").splitlines()
    assert sorted(lines) == sorted([other.strip(), f"10.213.0.5:{export_dirs[0]}:0x00000001",
                                    f"10.213.0.9:{export_dirs[1]}:0x00000003"])
    # Starting again (or failing back and forth) adds no duplicates.
    assert node_b.agent("nfsexport", "stop", params).returncode == 0
    assert node_b.agent("nfsexport", "start", params).returncode == 0
    assert len(node_b.read("rmtab").splitlines()) == 3


@pytest.mark.fault("nfsexport")
def test_concurrent_instances_merge_rmtab_without_losing_lines(make_node, tmp_path):
    node = make_node()
    count = 6
    dirs = []
    for i in range(count):
        d = tmp_path / f"vol{i}"
        d.mkdir()
        (d / ".rmtab").write_text(f"10.213.0.{i + 10}:{d}:0x00000001\n")
        dirs.append(str(d))
    node.write("rmtab", "10.213.0.99:/srv/keep:0x00000001\n")
    results = [None] * count

    def start(i):
        results[i] = node.agent("nfsexport", "start",
                                {"clientspec": "10.213.0.0/24", "directory": dirs[i]},
                                instance=f"vol{i}")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    lines = node.read("rmtab").splitlines()
    assert "10.213.0.99:/srv/keep:0x00000001" in lines
    assert sorted(lines) == sorted(["10.213.0.99:/srv/keep:0x00000001"] +
                                   [f"10.213.0.{i + 10}:{dirs[i]}:0x00000001"
                                    for i in range(count)])


@pytest.mark.fault("nfsexport")
def test_a_symlink_planted_at_the_backup_path_is_replaced_not_followed(make_node, export_dirs,
                                                                      tmp_path):
    node = make_node()
    params = params_for(export_dirs[:1], fsid="3")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, os.path.join(export_dirs[0], ".rmtab"))
    assert node.agent("nfsexport", "start", params).returncode == 0
    node.write("rmtab", f"10.213.0.5:{export_dirs[0]}:0x00000001\n")
    assert node.agent("nfsexport", "monitor", params).returncode == 0
    assert victim.read_text() == "precious\n"
    assert not os.path.islink(os.path.join(export_dirs[0], ".rmtab"))


def test_failed_exportfs_mid_start_leaves_nothing_exported(make_node, export_dirs):
    node = make_node()
    # An exportfs that refuses the second directory, the real one otherwise.
    fake = node.bin / "exportfs"
    fake.write_text("#!/bin/sh\n"
                    f'case "$*" in *{export_dirs[1]}*) echo "exportfs: simulated failure" >&2; '
                    "exit 1;; esac\nexec /usr/sbin/exportfs \"$@\"\n")
    fake.chmod(0o755)
    result = node.agent("nfsexport", "start", params_for(export_dirs))
    assert result.returncode == 1
    assert "simulated failure" in exit_reason(result)
    assert etab_pairs(node) == set()


def test_rmtab_backup_none_disables_the_backup(make_node, export_dirs):
    node = make_node()
    params = params_for(export_dirs[:1], fsid="root", rmtab_backup="none")
    assert node.agent("nfsexport", "start", params).returncode == 0
    node.write("rmtab", f"10.213.0.5:{export_dirs[0]}:0x00000001\n")
    assert node.agent("nfsexport", "monitor", params).returncode == 0
    assert not os.path.exists(os.path.join(export_dirs[0], ".rmtab"))


@pytest.mark.parametrize("params,words", [
    ({"directory": "/nonexistent/pyha"}, "/nonexistent/pyha does not exist"),
    ({"fsid": "12,rw"}, "fsid"),
    ({"fsid": "not-a-uuid"}, "fsid"),
    ({"clientspec": "10.0.0.1;reboot"}, "clientspec"),
    ({"clientspec": "-o"}, "clientspec"),
    ({"clientspec": ""}, "clientspec: is required"),
    ({"clientspec": "[fe80::1]/129"}, "is not an IPv6 address or network: write [address]"),
    ({"clientspec": "[10.0.0.1]"}, "is not an IPv6 address or network"),
    ({"clientspec": "[fe80::1]x"}, "is not an IPv6 address or network"),
    ({"options": "rw no_root_squash"}, "options"),
    ({"rmtab_backup": "../../etc/passwd"}, "rmtab_backup"),
    ({"unlock_on_stop": "maybe"}, "unlock_on_stop"),
    ({"fsid": "root", "directory": "TWO"}, "numeric fsid"),
    # exportfs takes it but stores 4294967296 as fsid=0, larger ones as fsid=-1 (issue 11)
    ({"fsid": "4294967296"}, "is too large: a numeric fsid is at most 4294967295 (32 bits)"),
    ({"fsid": "99999999999999999999"}, "at most 4294967295"),
    ({"fsid": "4294967295", "directory": "TWO"}, "exceeds 4294967295, the largest fsid"),
])
def test_validate_all_rejects_bad_configuration_with_a_reason(make_node, export_dirs, params,
                                                              words):
    node = make_node()
    full = params_for(export_dirs[:1], **params)
    if full["directory"] == "TWO":
        full["directory"] = " ".join(export_dirs)
    result = node.agent("nfsexport", "validate-all", full)
    assert result.returncode == 6, result.stderr
    assert words in exit_reason(result)
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_exportfs_is_reported_as_not_installed(make_node, export_dirs, tmp_path):
    node = make_node()
    not_a_program = tmp_path / "empty"
    not_a_program.write_text("")
    node.extra_mounts.append((str(not_a_program), "/usr/sbin/exportfs"))
    result = node.agent("nfsexport", "validate-all", params_for(export_dirs))
    assert result.returncode == 5
    assert "exportfs is not installed" in exit_reason(result)


def test_probe_with_a_missing_directory_reports_not_running(make_node, export_dirs):
    node = make_node()
    params = params_for(["/nonexistent/pyha-probe"])
    result = node.agent("nfsexport", "monitor", params, OCF_RESKEY_CRM_meta_interval=0)
    assert result.returncode == 7


def test_ocf_tester_passes(make_node, agents_dir, tmp_path):
    node = make_node()
    directory = tmp_path / "tester"
    directory.mkdir()
    argv = node.command(["ocf-tester", "-n", "e", "-o", "clientspec=10.0.0.0/24",
                         "-o", f"directory={directory}", "-o", "fsid=1",
                         str(agents_dir / "nfsexport")])
    result = subprocess.run(argv, env=node.env({}), text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout


# --- rmtab: one line per client:path, exact across failovers (issue 11, item 3) ---------
def mountd_add(node, client, path):
    """What rpc.mountd does on a MNT (nfs-utils utils/mountd/rmtab.c, mountlist_add):
    count up the first line for client:path, else append one with count 1."""
    lines = node.read("rmtab").splitlines()
    for i, line in enumerate(lines):
        head, _, count = line.rpartition(":")
        if head == f"{client}:{path}":
            lines[i] = f"{head}:0x{int(count, 16) + 1:08x}"
            break
    else:
        lines.append(f"{client}:{path}:0x00000001")
    node.write("rmtab", "".join(line + "\n" for line in lines))


def mountd_del(node, client, path):
    """mountlist_del on a UMNT: every line for client:path counted down, dropped at 1."""
    kept = []
    for line in node.read("rmtab").splitlines():
        head, _, count = line.rpartition(":")
        if head != f"{client}:{path}":
            kept.append(line)
        elif int(count, 16) > 1:
            kept.append(f"{head}:0x{int(count, 16) - 1:08x}")
    node.write("rmtab", "".join(line + "\n" for line in kept))


def clients_of(node, directory):
    """The client:path lines rmtab holds for directory, as a sorted list (duplicates kept)."""
    return sorted(line.rpartition(":")[0] for line in node.read("rmtab").splitlines()
                  if line.rpartition(":")[0].endswith(":" + directory))


def test_start_keeps_one_rmtab_line_per_client_path_whatever_the_counts(make_node, export_dirs):
    node = make_node()
    params = params_for(export_dirs[:1], fsid="5")
    directory = export_dirs[0]
    # A backup and a local rmtab that disagree only in rpc.mountd's counts, with the
    # duplicates an older agent left in both.
    with open(os.path.join(directory, ".rmtab"), "w") as f:
        f.write(f"10.213.0.5:{directory}:0x00000002\n10.213.0.5:{directory}:0x00000001\n"
                f"10.213.0.6:{directory}:0x00000001\n")
    node.write("rmtab", f"10.213.0.5:{directory}:0x00000001\n10.213.0.7:/srv/other:0x00000001\n"
                        f"10.213.0.5:{directory}:0x00000003\n")
    assert node.agent("nfsexport", "start", params).returncode == 0
    assert sorted(node.read("rmtab").splitlines()) == sorted([
        "10.213.0.7:/srv/other:0x00000001", f"10.213.0.5:{directory}:0x00000002",
        f"10.213.0.6:{directory}:0x00000001"])
    # The live rmtab grows a duplicate (as an older agent's merge made): the backup does not.
    node.write("rmtab", node.read("rmtab") + f"10.213.0.6:{directory}:0x00000004\n")
    assert node.agent("nfsexport", "monitor", params).returncode == 0
    assert open(os.path.join(directory, ".rmtab")).read() == \
        f"10.213.0.5:{directory}:0x00000002\n10.213.0.6:{directory}:0x00000001\n"


def test_failback_to_a_node_with_its_old_rmtab_keeps_unmounted_clients_gone(make_node,
                                                                            export_dirs):
    node_a, node_b = make_node("nodeA"), make_node("nodeB")
    params = params_for(export_dirs[:1], fsid="5")
    directory = export_dirs[0]
    assert node_a.agent("nfsexport", "start", params).returncode == 0
    for client in ("10.213.0.5", "10.213.0.6"):
        mountd_add(node_a, client, directory)
    node_a.write("rmtab", node_a.read("rmtab") + "10.213.0.9:/srv/other:0x00000001\n")
    assert node_a.agent("nfsexport", "monitor", params).returncode == 0
    # Node A fails (no stop: its local rmtab keeps both clients); B takes over.
    assert node_b.agent("nfsexport", "start", params).returncode == 0
    assert clients_of(node_b, directory) == [f"10.213.0.5:{directory}",
                                             f"10.213.0.6:{directory}"]
    mountd_del(node_b, "10.213.0.6", directory)   # unmounted while on B
    mountd_add(node_b, "10.213.0.7", directory)   # a new client
    assert node_b.agent("nfsexport", "monitor", params).returncode == 0
    assert node_b.agent("nfsexport", "stop", params).returncode == 0
    # Failback: A's stale local lines are replaced by the backup's; other paths are kept.
    assert node_a.rsctmp.exists()
    for entry in node_a.rsctmp.rglob("*"):  # A rebooted: /run is empty
        if entry.is_file():
            entry.unlink()
    assert node_a.agent("nfsexport", "start", params).returncode == 0
    assert clients_of(node_a, directory) == [f"10.213.0.5:{directory}",
                                             f"10.213.0.7:{directory}"]
    assert "10.213.0.9:/srv/other:0x00000001" in node_a.read("rmtab").splitlines()


def test_repeated_failovers_with_mount_churn_keep_rmtab_exact_and_bounded(make_node,
                                                                         export_dirs):
    import random
    rng = random.Random(11)
    nodes = [make_node("nodeA"), make_node("nodeB")]
    params = params_for(export_dirs, fsid="7")
    clients = [f"10.213.0.{i}" for i in range(10, 18)]
    mounted = {}  # (client, directory) -> how many times it is mounted
    active = 0
    assert nodes[active].agent("nfsexport", "start", params).returncode == 0
    for _round in range(8):
        node = nodes[active]
        for _ in range(12):
            client, directory = rng.choice(clients), rng.choice(export_dirs)
            if mounted.get((client, directory)) and rng.random() < 0.5:
                mountd_del(node, client, directory)
                mounted[(client, directory)] -= 1
            else:
                mountd_add(node, client, directory)
                mounted[(client, directory)] = mounted.get((client, directory), 0) + 1
        assert node.agent("nfsexport", "monitor", params).returncode == 0
        if rng.random() < 0.5:
            assert node.agent("nfsexport", "stop", params).returncode == 0
        else:  # a crash: no stop, and the node's /run is gone when it comes back
            for entry in node.rsctmp.rglob("*"):
                if entry.is_file():
                    entry.unlink()
        active = 1 - active
        assert nodes[active].agent("nfsexport", "start", params).returncode == 0
        for directory in export_dirs:
            expected = sorted(f"{c}:{d}" for (c, d), n in mounted.items()
                              if n and d == directory)
            assert clients_of(nodes[active], directory) == expected
    assert len(nodes[active].read("rmtab").splitlines()) <= len(clients) * len(export_dirs)


def test_start_of_a_running_export_keeps_clients_that_mounted_since_the_last_monitor(
        make_node, export_dirs):
    node = make_node()
    params = params_for(export_dirs[:1], fsid="5")
    assert node.agent("nfsexport", "start", params).returncode == 0
    assert node.agent("nfsexport", "monitor", params).returncode == 0  # an empty backup
    mountd_add(node, "10.213.0.5", export_dirs[0])
    assert node.agent("nfsexport", "start", params).returncode == 0
    assert clients_of(node, export_dirs[0]) == [f"10.213.0.5:{export_dirs[0]}"]


def test_the_largest_fsid_is_accepted(make_node, export_dirs):
    node = make_node()
    result = node.agent("nfsexport", "validate-all", params_for(export_dirs[:1],
                                                                 fsid="4294967295"))
    assert result.returncode == 0, result.stderr


def test_a_huge_clientspec_gets_a_short_reason_that_names_it(make_node, export_dirs):
    # issue 11: a 100,000-character clientspec gave a 100,059-character exit reason
    node = make_node()
    for action in ("validate-all", "start", "monitor"):
        result = node.agent("nfsexport", action,
                            params_for(export_dirs[:1], clientspec="x;" * 50000))
        assert result.returncode == 6, result.stderr
        reason = exit_reason(result)
        assert len(reason) <= 128, reason  # what Pacemaker keeps of a reason
        assert reason.startswith("parameter clientspec: 'x;x;")
        assert "(100000 characters) is not a host, network, @netgroup or wildcard" in reason
        assert "Traceback" not in result.stderr


def test_ipv6_networks_in_brackets_are_exported_monitored_and_unexported(make_node, export_dirs):
    # issue 11: "[fe80::1]/64" was refused though exportfs takes it
    node = make_node()
    params = params_for(export_dirs, clientspec="[fe80::1]/64 [fd00::7] 10.213.0.0/24")
    result = node.agent("nfsexport", "start", params)
    assert result.returncode == 0, result.stderr
    assert etab_pairs(node) == {(d, c) for d in export_dirs
                                for c in ("fe80::1/64", "fd00::7", "10.213.0.0/24")}
    assert node.agent("nfsexport", "monitor", params,
                      OCF_RESKEY_CRM_meta_interval=10000).returncode == 0
    subprocess.run(node.command(["exportfs", "-u", f"[fe80::1]/64:{export_dirs[1]}"]),
                   check=True)
    result = node.agent("nfsexport", "monitor", params, OCF_RESKEY_CRM_meta_interval=10000)
    assert result.returncode == 1
    assert f"[fe80::1]/64:{export_dirs[1]}" in exit_reason(result)
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert etab_pairs(node) == set()


def test_directories_with_spaces_are_exported_with_either_escape(make_node, tmp_path):
    # issue 11: a directory whose name has a space could not be exported at all
    node = make_node()
    spaced, backslashed = tmp_path / "my data", tmp_path / "other  dir"
    spaced.mkdir()
    backslashed.mkdir()
    value = f"{tmp_path}/my\\040data {tmp_path}/other\\ \\ dir"
    params = {"clientspec": "10.213.0.0/24", "directory": value, "fsid": "61"}
    assert node.agent("nfsexport", "validate-all", params).returncode == 0
    result = node.agent("nfsexport", "start", params)
    assert result.returncode == 0, result.stderr
    # exportfs records them with octal escapes; the agent reads those back
    assert f"{tmp_path}/my\\040data\t" in node.read("etab")
    assert etab_pairs(node) == {(f"{tmp_path}/my\\040data", "10.213.0.0/24"),
                                (f"{tmp_path}/other\\040\\040dir", "10.213.0.0/24")}
    assert "fsid=62" in etab_options(node, f"{tmp_path}/other\\040\\040dir", "10.213.0.0/24")
    mountd_add(node, "10.213.0.5", str(spaced))  # rpc.mountd writes rmtab paths as they are
    assert node.agent("nfsexport", "monitor", params,
                      OCF_RESKEY_CRM_meta_interval=10000).returncode == 0
    assert (spaced / ".rmtab").read_text() == f"10.213.0.5:{spaced}:0x00000001\n"
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert etab_pairs(node) == set()


@pytest.mark.parametrize("value,words", [
    ("/srv/a\\b", "a backslash must start \\040 (a space)"),
    ("/srv/a\\04", "a backslash must start"),
    ("/srv/a\\011b", "contains a control character (a tab, a newline...)"),
])
def test_bad_escapes_in_directory_are_refused_with_a_reason(make_node, value, words):
    node = make_node()
    result = node.agent("nfsexport", "validate-all",
                        {"clientspec": "10.213.0.0/24", "directory": value})
    assert result.returncode == 6, result.stderr
    assert words in exit_reason(result)


def test_unlock_writes_the_path_as_the_kernel_reads_it(monkeypatch, tmp_path):
    # fs/nfsd/nfsctl.c write_unlock_fs: one qword_get word, then a newline (else EINVAL)
    from ocf_agents import nfsexport
    target = tmp_path / "unlock_filesystem"
    target.write_text("")
    monkeypatch.setattr(nfsexport, "UNLOCK_FILESYSTEM", str(target))

    class Res:
        log = None
    nfsexport.unlock_filesystems(Res(), ["/srv/my data\\x"])
    assert target.read_text() == "/srv/my\\040data\\134x\n"


def test_the_export_table_reader_decodes_only_octal_escapes():
    from ocf_agents.nfsexport import unescape_etab_path
    assert unescape_etab_path("/srv/my\\040data\\043\\134") == "/srv/my data#\\"
    assert unescape_etab_path("/srv/a\\089") == "/srv/a\\089"  # not octal: kept as is
