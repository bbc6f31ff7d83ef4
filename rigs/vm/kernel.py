"""Debian's kernel for the VMs: fetched with apt, cached, unpacked, made bootable.

`ensure_kernel()` returns a Kernel with an uncompressed `vmlinux` (qemu boots the ELF
directly: decompressing the xz payload under TCG costs seconds at every boot), the
package's modules (with depmod's indexes, bound at /lib/modules/<version> in the guests)
and a small initramfs: static busybox, the modules needed to reach the root filesystem
(virtio, 9p, overlay, ext4) and init.sh.  Everything lives below CACHE_DIR/kernel and
is rebuilt only when missing.
"""
import hashlib
import lzma
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import CACHE_DIR, HERE

META_PACKAGE = "linux-image-amd64"
BUSYBOX = Path("/bin/busybox")           # Debian's busybox-static
# What /init needs before switch_root: the 9p root, the overlay and its disk.
# ext4 asks for crc32c through the crypto API (a soft dependency modules.dep omits).
BOOT_MODULES = ("virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay",
                "crc32c_generic", "ext4")


class KernelError(RuntimeError):
    pass


@dataclass
class Kernel:
    version: str        # e.g. 6.1.0-57-amd64
    root: Path          # the unpacked package
    vmlinux: Path
    initrd: Path

    @property
    def modules(self):
        return self.root / "lib" / "modules" / self.version


def _run(argv, **kw):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise KernelError(f"{' '.join(map(str, argv))} failed: "
                          f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


def read_image_package():
    """The versioned package linux-image-amd64 depends on (apt's cache)."""
    out = _run(["apt-cache", "depends", META_PACKAGE])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split(":", 1)[1].strip()
    raise KernelError(f"apt-cache depends {META_PACKAGE} names no linux-image package")


def extract_vmlinux(bzimage, dest):
    """The ELF kernel inside a bzImage: Debian compresses it with xz."""
    data = Path(bzimage).read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise KernelError(f"{bzimage}: no xz payload (not a Debian amd64 kernel?)")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise KernelError(f"{bzimage}: the xz payload is not an ELF kernel")
    tmp = Path(f"{dest}.tmp")
    tmp.write_bytes(elf)
    tmp.rename(dest)


def read_module_deps(modules_dir):
    """{module name: (path relative to modules_dir, [dependency names])} from modules.dep."""
    deps = {}
    for line in (Path(modules_dir) / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        name = Path(path).name.split(".ko")[0].replace("-", "_")
        deps[name] = (path, [Path(p).name.split(".ko")[0].replace("-", "_")
                             for p in rest.split()])
    return deps


def load_order(modules_dir, wanted):
    """Module paths in an order insmod accepts (dependencies first)."""
    deps = read_module_deps(modules_dir)
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        if name not in deps:
            raise KernelError(f"module {name} is not in this kernel's modules.dep")
        for dep in deps[name][1]:
            visit(dep)
        order.append(deps[name][0])
    for name in wanted:
        visit(name)
    return order


class Cpio:
    """A newc cpio archive (the initramfs format), built in memory."""

    def __init__(self):
        self.parts = []
        self.ino = 1

    def _entry(self, name, mode, data=b""):
        name_b = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        self.ino += 1
        blob = header.encode() + name_b
        blob += b"\0" * (-len(blob) % 4) + data
        blob += b"\0" * (-len(blob) % 4)
        self.parts.append(blob)

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def bytes(self):
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def build_initrd(kernel_root, version, dest):
    modules_dir = Path(kernel_root) / "lib" / "modules" / version
    archive = Cpio()
    for d in ("bin", "dev", "proc", "sys", "mnt", "modules", "newroot"):
        archive.dir(d)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    archive.file("init", (HERE / "init.sh").read_bytes(), 0o755)
    order = load_order(modules_dir, BOOT_MODULES)
    for i, rel in enumerate(order):
        archive.file(f"modules/{i:02d}-{Path(rel).name}", (modules_dir / rel).read_bytes())
    tmp = Path(f"{dest}.tmp")
    tmp.write_bytes(archive.bytes())
    tmp.rename(dest)


def ensure_kernel(log=print):
    """Fetch (apt-get download), unpack and prepare Debian's kernel once; cached."""
    base = CACHE_DIR / "kernel"
    base.mkdir(parents=True, exist_ok=True)
    try:
        try:
            package = read_image_package()
        except KernelError:
            # A machine whose apt lists were never fetched (apt-get update first).
            log("apt-get update (apt knows no linux-image-amd64 yet)")
            _run(["apt-get", "update", "-q"])
            package = read_image_package()
    except KernelError:
        # No apt lists (offline machine): a kernel cached before still boots.
        cached = sorted(p.name for p in base.iterdir() if (p / "vmlinux").exists())
        if not cached:
            raise
        package = "linux-image-" + cached[-1]
    version = package[len("linux-image-"):].removesuffix("-unsigned")
    home = base / version
    root = home / "root"
    if not (root / "lib" / "modules" / version / "modules.dep").exists():
        log(f"fetching Debian's kernel {package} (apt-get download, once)")
        home.mkdir(exist_ok=True)
        for old in home.glob("*.deb"):
            old.unlink()
        # apt drops privileges to _apt for downloads; the cache is root's.
        _run(["apt-get", "download", "-o", "APT::Sandbox::User=root", package], cwd=home)
        debs = list(home.glob("*.deb"))
        if len(debs) != 1:
            raise KernelError(f"apt-get download {package} left {len(debs)} packages")
        shutil.rmtree(root, ignore_errors=True)
        _run(["dpkg-deb", "-x", debs[0], root])
        _run(["depmod", "-b", root, version])
        debs[0].unlink()
    vmlinux = home / "vmlinux"
    if not vmlinux.exists():
        extract_vmlinux(root / "boot" / f"vmlinuz-{version}", vmlinux)
    initrd = home / "initrd.cpio"
    # Rebuilt whenever what goes into it changes (init.sh, the module list).
    recipe = hashlib.sha256((HERE / "init.sh").read_bytes()
                            + repr(BOOT_MODULES).encode()).hexdigest()
    stamp = home / "initrd.recipe"
    if not initrd.exists() or not stamp.exists() or stamp.read_text() != recipe:
        build_initrd(root, version, initrd)
        stamp.write_text(recipe)
    os.chmod(home, 0o755)
    return Kernel(version, root, vmlinux, initrd)
