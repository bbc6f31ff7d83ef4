"""python3 -m ocf_agents migrate: the pcs scripts it prints for real heartbeat-v1 and
keepalived setups, run by the real pcs against an empty CIB file (CIB=..., nothing pushed),
and the resources and constraints that result."""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]

pytestmark = pytest.mark.skipif(not (shutil.which("pcs") and shutil.which("cibadmin")
                                     and shutil.which("unshare")),
                                reason="needs pcs, cibadmin and unshare")


def migrate(kind, name):
    result = subprocess.run([sys.executable, "-m", "ocf_agents", "migrate", kind,
                             str(HERE / name)], cwd=REPO, capture_output=True, text=True,
                            check=True)
    return result.stdout


def build(script, tmp_path, agents_dir):
    """Run the script with the real pcs on an empty CIB; our agents are seen at
    /usr/lib/ocf/resource.d/pyha through a bind mount in a private mount namespace."""
    path = tmp_path / "migrate.sh"
    path.write_text(script)
    cib = tmp_path / "cib.xml"
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                  check=True).stdout)
    target = Path("/usr/lib/ocf/resource.d/pyha")
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["unshare", "--mount", "sh", "-c",
                             'mount --bind "$1" "$2" && exec sh "$3"', "sh",
                             str(agents_dir), str(target), str(path)],
                            env={**os.environ, "CIB": str(cib)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return ET.parse(cib).getroot()


def primitives(cib):
    return {p.get("id"): (f"{p.get('class')}:{p.get('provider')}:{p.get('type')}",
                          {nv.get("name"): nv.get("value")
                           for nv in p.iter("nvpair") if nv.get("name") in PARAMS})
            for p in cib.iter("primitive")}


PARAMS = {"ip", "cidr_netmask", "nic", "drbd_resource", "device", "directory", "fstype",
          "shared_infodir", "source_host", "config"}


def group_members(cib, group):
    (found,) = [g for g in cib.iter("group") if g.get("id") == group]
    return [p.get("id") for p in found.findall("primitive")]


def test_heartbeat_nfs_on_drbd_becomes_the_pyha_nfs_stack(tmp_path, agents_dir):
    script = migrate("haresources", "haresources-nfs")
    assert "TODO line 2: 'killnfsd': one ocf:pyha:nfsexport per line of /etc/exports" in script
    cib = build(script, tmp_path, agents_dir)
    found = primitives(cib)
    assert found["drbd-r0"] == ("ocf:pyha:drbd", {"drbd_resource": "r0"})
    assert found["fs-drbd"] == ("ocf:heartbeat:Filesystem", {
        "device": "/dev/drbd0", "directory": "/drbd", "fstype": "ext4"})
    assert found["nfs-server"] == ("ocf:pyha:nfsserver", {"shared_infodir": "/drbd/.nfs-state"})
    assert found["ip-192-168-2-3"] == ("ocf:heartbeat:IPaddr2", {
        "ip": "192.168.2.3", "cidr_netmask": "24", "nic": "eth0"})
    assert found["nfs-notify"] == ("ocf:pyha:nfsnotify", {"source_host": "192.168.2.3"})
    # the address after the server (and the exports), the notification last
    assert group_members(cib, "nfs1-services") == ["fs-drbd", "nfs-server", "ip-192-168-2-3",
                                                     "nfs-notify"]
    (clone,) = cib.iter("clone")
    assert clone.get("id") == "drbd-r0-clone"
    assert {nv.get("name"): nv.get("value") for nv in clone.iter("nvpair")}["promotable"] == "true"
    (colocation,) = cib.iter("rsc_colocation")
    assert (colocation.get("rsc"), colocation.get("with-rsc"), colocation.get("with-rsc-role")) \
        == ("nfs1-services", "drbd-r0-clone", "Promoted")
    (order,) = cib.iter("rsc_order")
    assert (order.get("first"), order.get("first-action"), order.get("then")) == \
        ("drbd-r0-clone", "promote", "nfs1-services")
    (location,) = cib.iter("rsc_location")
    assert (location.get("node"), location.get("score")) == ("nfs1", "100")


def test_an_unknown_init_script_is_kept_as_a_todo_naming_its_line(tmp_path, agents_dir):
    script = migrate("haresources", "haresources-rsmd")
    assert "# TODO line 1: 'rsmd1': no equivalent here" in script
    assert "lsb:rsmd1" in script
    cib = build(script, tmp_path, agents_dir)
    assert group_members(cib, "data-1-1-services") == ["ip-10-0-0-17", "fs-md1"]
    assert primitives(cib)["drbd-data"][1] == {"drbd_resource": "data"}


def test_keepalived_moosefs_master_becomes_mfsmaster_then_the_vip(tmp_path, agents_dir):
    script = migrate("keepalived", "keepalived-mfs.conf")
    assert "not needed, IPaddr2 sends gratuitous ARPs itself" in script      # clean_arp.sh
    assert "TODO line 5: choose where DATA_PATH lives" in script
    cib = build(script, tmp_path, agents_dir)
    assert group_members(cib, "VI_1-group") == ["mfs-master", "vip-172-25-27-100"]
    assert primitives(cib)["vip-172-25-27-100"] == ("ocf:heartbeat:IPaddr2", {
        "ip": "172.25.27.100", "cidr_netmask": "32", "nic": "eth0"})
    assert primitives(cib)["mfs-master"][0] == "ocf:pyha:mfsmaster"


def test_keepalived_nginx_maps_to_resource_agents_nginx(tmp_path, agents_dir):
    cib = build(migrate("keepalived", "keepalived-nginx.conf"), tmp_path, agents_dir)
    assert group_members(cib, "VI_WEB-group") == ["nginx", "vip-192-168-10-50"]
    assert primitives(cib)["nginx"][0] == "ocf:heartbeat:nginx"
    assert primitives(cib)["vip-192-168-10-50"][1]["nic"] == "ens192"


def test_keepalived_mysql_with_lvs_says_what_has_no_equivalent(tmp_path, agents_dir):
    script = migrate("keepalived", "keepalived-mysql.conf")
    assert "master-master replication between the nodes has no equivalent" in script
    assert "TODO line 27: virtual_server 10.0.0.200 3306: load balancing (LVS)" in script
    cib = build(script, tmp_path, agents_dir)
    assert group_members(cib, "VI_DB-group") == ["mysql", "vip-10-0-0-200"]


def test_values_from_the_file_never_reach_the_shell_unquoted(tmp_path):
    evil = tmp_path / "haresources"
    evil.write_text("n1 Filesystem::/dev/x::/mnt/$(touch${IFS}/tmp/pwned)::ext4 'odd;name'\n")
    result = subprocess.run([sys.executable, "-m", "ocf_agents", "migrate", "haresources",
                             str(evil)], cwd=REPO, capture_output=True, text=True, check=True)
    assert "'directory=/mnt/$(touch${IFS}/tmp/pwned)'" in result.stdout
    assert "\n#" in result.stdout and "\nn1" not in result.stdout
    assert subprocess.run(["sh", "-n", "-c", result.stdout]).returncode == 0
