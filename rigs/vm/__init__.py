"""Real kernels for the lab: qemu VMs running Debian's own kernel with the host's userland.

The namespace lab shares the host's kernel, which has no DRBD, no nfsd and no NFS
client.  These VMs boot Debian's `linux-image-amd64` (fetched with apt and cached), share
the host's `/` read-only over 9p with a persistent writable overlay on a per-VM disk, run
systemd as PID 1 and get a second virtio disk for DRBD.  Everything the kernel does
(DRBD 8.4 replication, nfsd, lockd, the NFS client) is the real thing.

Pieces:
  kernel.py   fetch the kernel package, extract vmlinux and modules, build the initramfs
  init.sh     the initramfs's /init: 9p root + overlay, first-boot seed, switch_root
  guest.py    the command agent inside each guest (virtio-serial ports, JSON lines)
  channel.py  the host side of that agent: run/spawn/read/write on a guest
  machine.py  one VM: disks, qemu argv, start, power off (SIGKILL), status
  net.py      the private network: a namespace holding a bridge and the VMs' taps
  power.py    the power switch daemon on the lab network and fence_pyha_qemu

Stdlib only: the fence agent and the power switch import this package.
"""
import os
from pathlib import Path

CACHE_DIR = Path(os.environ.get("PYHA_VM_CACHE", "/var/cache/pyha-lab"))
HERE = Path(__file__).resolve().parent
