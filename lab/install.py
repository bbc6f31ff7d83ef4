"""What the lab needs on a fresh Debian 12 root machine, installed if missing."""
import shutil
import subprocess

from .util import LabError, run, say

# Debian package -> a file it provides (checked instead of asking dpkg).
DEB_PACKAGES = {
    "corosync": "/usr/sbin/corosync",
    "pacemaker": "/usr/sbin/pacemakerd",
    "pacemaker-cli-utils": "/usr/sbin/crm_resource",
    "pcs": "/usr/sbin/pcs",
    "resource-agents": "/usr/lib/ocf/resource.d/heartbeat/Filesystem",
    "nfs-kernel-server": "/usr/sbin/exportfs",      # exportfs; pulls nfs-common (statd)
    "rpcbind": "/usr/sbin/rpcbind",
    "kmod": "/usr/sbin/modprobe",                   # ocf:heartbeat:Filesystem insists
    "e2fsprogs": "/usr/sbin/mkfs.ext4",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/nsenter",
    "mount": "/usr/bin/findmnt",
}
# The VM backend: qemu, and busybox for the VMs' initramfs.
VM_PACKAGES = {
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
    "busybox-static": "/bin/busybox",
    "drbd-utils": "/usr/sbin/drbdadm",
    "nfs-common": "/usr/sbin/mount.nfs",
}
MFS_PACKAGES = {
    "moosefs-master": "/usr/sbin/mfsmaster",
    "moosefs-chunkserver": "/usr/sbin/mfschunkserver",
    "moosefs-client": "/usr/bin/mfsmount",
    "moosefs-metalogger": "/usr/sbin/mfsmetalogger",
}


def missing(packages):
    return [pkg for pkg, path in packages.items() if not shutil.which(path)]


def ensure_packages(with_mfs=False, with_vm=False):
    """apt-get install whatever is missing (nothing when all is there)."""
    wanted = dict(DEB_PACKAGES, **(MFS_PACKAGES if with_mfs else {}),
                  **(VM_PACKAGES if with_vm else {}))
    todo = missing(wanted)
    if not todo:
        return []
    say(f"installing Debian packages: {' '.join(todo)}")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    run(["apt-get", "update", "-q"], env=env, timeout=600)
    # No systemd here: keep the packages' own daemons from starting.
    policy = "/usr/sbin/policy-rc.d"
    created = False
    try:
        if not shutil.os.path.exists(policy):
            with open(policy, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            shutil.os.chmod(policy, 0o755)
            created = True
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo], env=env,
            timeout=1200)
    finally:
        if created:
            shutil.os.unlink(policy)
    still = missing(wanted)
    if still:
        raise LabError(f"packages still missing after apt-get: {' '.join(still)}")
    return todo
