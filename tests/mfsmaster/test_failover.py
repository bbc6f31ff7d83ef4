"""kill -9 of the master; the agent brings every file back on another data directory."""
import pytest


@pytest.fixture
def agent(restoring_agent):
    """Once per restore_method."""
    return restoring_agent


def test_kill_9_failover_restores_every_file_and_checksum_through_the_client(cluster, agent):
    lab, parts = cluster
    written = lab.write_files(parts["mnt"], 40)
    assert lab.checksums(parts["mnt"]) == written
    lab.kill_master(lab.root / "master")
    assert lab.master_info() is None

    standby = lab.master_cfg("standby")
    code, err = agent("start", config=standby, metadata_sources=parts["metalogger"])
    assert code == 0, err
    assert agent("monitor", config=standby)[0] == 0
    lab.wait_ready(2)
    assert lab.checksums(parts["mnt"]) == written
    # monitor records the running master's id and version for the stale-master check
    assert agent("monitor", config=standby)[0] == 0
    recorded_version = int(agent.recorded().split(":")[1])
    assert 1 < recorded_version <= lab.master_info()["metaversion"]
    # and the new master keeps working: more files, clean stop, clean start
    more = lab.write_files(parts["mnt"], 5, prefix="g")
    assert agent("stop", config=standby)[0] == 0
    assert agent("monitor", config=standby)[0] == 7
    code, err = agent("start", config=standby, metadata_sources=parts["metalogger"])
    assert code == 0, err
    lab.wait_ready(2)
    assert lab.checksums(parts["mnt"]) == {**written, **more}
