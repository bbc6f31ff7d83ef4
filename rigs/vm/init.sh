#!/bin/busybox sh
# /init of the lab VMs' initramfs (busybox).  The root filesystem is the host's
# own `/`, shared read-only over 9p, under an overlay whose writable layer lives
# on the VM's first disk (/dev/vda, ext4): the guest keeps its state across
# power losses like a real server.  On the first boot the seed the host wrote
# into the lab share (LAB/NAME/seed) is copied in and the paths listed in
# LAB/NAME/seed.remove are deleted first (whiteouts; a seed symlink can replace a
# directory of the host that way).  Then systemd becomes PID 1.
# Kernel command line: pyha.name= pyha.lab= pyha.kroot= pyha.init=
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "pyha-init: $*" >/dev/console
    exec sh </dev/console >/dev/console 2>&1
}

for word in $(cat /proc/cmdline); do
    case "$word" in
        pyha.name=*) NAME=${word#pyha.name=} ;;
        pyha.lab=*) LAB=${word#pyha.lab=} ;;
        pyha.kroot=*) KROOT=${word#pyha.kroot=} ;;
        pyha.init=*) INIT=${word#pyha.init=} ;;
    esac
done
KV=$(uname -r)
INIT=${INIT:-/lib/systemd/systemd}

for m in /modules/*.ko; do
    insmod "$m" || fail "insmod $m failed"
done

mkdir -p /mnt/lower /mnt/state
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose root /mnt/lower \
    || fail "cannot mount the host's root (9p tag root)"
# The state disk: wait for it (virtio probes asynchronously), then mount it;
# ext4 replays its journal after a power loss.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
mount -t ext4 /dev/vda /mnt/state || fail "cannot mount the state disk /dev/vda"
mkdir -p /mnt/state/upper /mnt/state/work
mount -t overlay overlay \
    -o lowerdir=/mnt/lower,upperdir=/mnt/state/upper,workdir=/mnt/state/work /newroot \
    || fail "cannot mount the overlay"

R=/newroot
mkdir -p "$R$LAB" "$R/lib/modules/$KV"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none lab "$R$LAB" \
    || fail "cannot mount the lab share"
mount --bind "$R$KROOT/lib/modules/$KV" "$R/lib/modules/$KV" || fail "no modules for $KV"
if [ ! -e /mnt/state/upper/.pyha-seeded ]; then
    if [ -f "$R$LAB/$NAME/seed.remove" ]; then
        while read -r path; do
            [ -n "$path" ] && rm -rf "$R$path"
        done <"$R$LAB/$NAME/seed.remove"
    fi
    [ -d "$R$LAB/$NAME/seed" ] && cp -a "$R$LAB/$NAME/seed/." "$R/"
    touch /mnt/state/upper/.pyha-seeded
fi
# A private /tmp (the host's holds other mounts); systemd mounts /run itself.
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"

mount --move /dev "$R/dev"
umount /sys
umount /proc
exec switch_root "$R" "$INIT"
