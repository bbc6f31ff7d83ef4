"""The harness works, and the reference's observations we build the agent on hold."""
import shutil
import subprocess



def metadata_version(path):
    head = subprocess.run(["mfsmetadump", str(path)], capture_output=True, text=True).stdout
    for line in head.splitlines()[:3]:
        if line.startswith("# version:"):
            return int(line.split()[2])
    raise AssertionError(head[:300])


def last_change(path):
    lines = path.read_text().splitlines()
    return int(lines[-1].split(":", 1)[0])


def test_chunkserver_refuses_a_loopback_master(lab):
    cfg = lab.root / "cs.cfg"
    (lab.root / "hdd.cfg").write_text(f"{lab.data_dir('hdd')}\n")
    cfg.write_text(f"DATA_PATH = {lab.data_dir('cs')}\nMASTER_HOST = 127.0.0.1\n"
                   f"HDD_CONF_FILENAME = {lab.root / 'hdd.cfg'}\n")
    result = lab.ns_run(["mfschunkserver", "-f", "-c", cfg, "start"], check=False, timeout=20)
    assert result.returncode == 1
    assert "can't be used for connecting with master" in result.stdout + result.stderr


def test_files_survive_kill_9_and_restore_from_the_metalogger(cluster):
    lab, parts = cluster
    written = lab.write_files(parts["mnt"], 30)
    assert lab.checksums(parts["mnt"]) == written
    old_data = parts["cfg"].parent / "master"
    # the metalogger streams changes asynchronously: wait until it has everything
    lab.wait_for(lambda: (parts["metalogger"] / "changelog_ml.0.mfs").exists() and
                 last_change(parts["metalogger"] / "changelog_ml.0.mfs")
                 == last_change(old_data / "changelog.0.mfs"), "metalogger caught up")
    lab.kill_master(old_data)
    assert not (old_data / "metadata.mfs").exists()
    assert lab.master_info() is None

    # a crashed data directory cannot be started without -a
    plain = lab.ns_run(["mfsmaster", "-c", parts["cfg"], "start"], check=False)
    assert plain.returncode == 1 and "try using option '-a'" in plain.stdout + plain.stderr

    # restore on another data directory from the metalogger's files alone
    cfg = lab.master_cfg("standby")
    standby = lab.root / "standby"
    for source in parts["metalogger"].glob("*.mfs*"):
        shutil.copy(source, standby)
    for source in parts["metalogger"].glob("metadata_ml.tmp"):
        shutil.copy(source, standby)
    for path in standby.iterdir():
        shutil.chown(path, "mfs", "mfs")
    lab.ns_run(["mfsmaster", "-c", cfg, "-a", "restore"])
    highest = last_change(parts["metalogger"] / "changelog_ml.0.mfs")
    # the version of a metadata file is the number of the next change
    assert metadata_version(standby / "metadata.mfs") == highest + 1

    lab.spawn("standby", ["mfsmaster", "-f", "-c", cfg, "start"])
    lab.wait_ready(2)
    assert lab.master_info()["metaversion"] >= highest + 1
    assert lab.checksums(parts["mnt"]) == written


def test_mfscli_exits_0_with_no_master(lab):
    result = lab.ns_run(["mfscli", "-H", lab.address, "-SIN"], check=False, timeout=30)
    assert result.returncode == 0
