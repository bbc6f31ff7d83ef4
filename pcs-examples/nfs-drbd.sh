#!/bin/bash
# HA NFS on DRBD with pcs: a DRBD promotable clone, an ext4 filesystem on the
# Primary, the kernel NFS server (ocf:pyha:nfsserver, its lock and client state
# on the DRBD disk, in grace after a takeover), the NFS exports
# (ocf:pyha:nfsexport, which carries the rmtab client list across failover), a
# floating IP and NSM reboot notification (ocf:pyha:nfsnotify) so NFSv3 clients
# reclaim their locks.
#
# Run it once, as root, on one node of a running cluster (pcs talks to the
# local CIB; pcsd is not needed).  Everything is a variable, set in the
# environment or on the command line:
#     NODES="node1 node2" VIP=10.213.0.100 ./nfs-drbd.sh
# Prerequisites on every node: the DRBD resource $DRBD_RESOURCE defined (and
# its metadata created), ocf:pyha agents installed
# (python3 -m ocf_agents install), nfs-kernel-server installed but NOT started
# at boot (systemctl disable --now nfs-server: the cluster starts it), $VIP with
# a name in /etc/hosts (sm-notify sends the name), and a working fence device
# (DRBD without fencing risks split brain).
#
# DRBD's resource-level fencing (LINBIT's advice with Pacemaker) lives in drbd.conf, which
# pcs cannot write: put this in the resource's file in /etc/drbd.d/ on BOTH nodes, then
# `drbdadm adjust $DRBD_RESOURCE` (DRBD 9: fencing in net { }, handlers crm-fence-peer.9.sh
# and unfence-peer "crm-unfence-peer.9.sh"):
#     disk { fencing resource-and-stonith; }
#     handlers {
#         fence-peer "/usr/lib/drbd/crm-fence-peer.sh";
#         after-resync-target "/usr/lib/drbd/crm-unfence-peer.sh";
#         split-brain "/usr/lib/ocf/resource.d/pyha/drbd split-brain-handler";
#     }
# A broken replication link then freezes the Primary's I/O until crm-fence-peer has placed
# a -INFINITY Promoted constraint for the other node in the CIB (stale data is never
# promoted); the unfence handler removes it after the resync; the split-brain handler
# makes ocf:pyha:drbd report a split brain at once (see pcs-examples/drbd.sh).  The
# script warns when `drbdadm dump` on this node shows no fencing.
set -euo pipefail

NODES=${NODES:-"node1 node2"}            # the two nodes that hold the disk
DRBD_RESOURCE=${DRBD_RESOURCE:-r0}       # resource name in drbd.conf
DRBD_DEVICE=${DRBD_DEVICE:-/dev/drbd0}   # its device (drbdadm sh-dev r0)
MOUNTPOINT=${MOUNTPOINT:-/srv/nfs}       # where the Primary mounts it
EXPORT_DIR=${EXPORT_DIR:-$MOUNTPOINT/export}
CLIENTS=${CLIENTS:-"10.213.0.0/24"}      # who may mount (exports(5) client specs)
# The export's fsid: the same on both nodes, so clients' file handles stay valid.
# 0 makes it the NFSv4 pseudo-root as well (NFSv4 clients then mount $VIP:/).
FSID=${FSID:-1}
VIP=${VIP:-10.213.0.100}                 # the address clients mount from
CIDR=${CIDR:-24}
MONITOR=${MONITOR:-10s}                  # monitor interval of the service resources
# Grace period after a takeover: clients reclaim their locks in it, new locks and
# NFSv4 opens wait for its end. It must cover nfsserver's start until nfsnotify
# has run (here: exports, floating IP, notify). Lease: NFSv4 client leases.
GRACE=${GRACE:-20}
LEASE=${LEASE:-20}
# The NFS server's state (statd's records, rmtab, NFSv4 client tracking) on DRBD.
STATE_DIR=${STATE_DIR:-$MOUNTPOINT/.nfs-state}
# no: the NFS server is started outside the cluster (a machine without kernel
# nfsd, such as the namespace lab); lock recovery after a crash then needs
# that server's state on the shared disk by other means.
MANAGE_NFS_SERVER=${MANAGE_NFS_SERVER:-yes}
# New DRBD disk with no filesystem yet: create it on this node first.
MKFS=${MKFS:-no}
# PROC_DRBD (optional): where ocf:pyha:drbd reads the DRBD module version instead of
# /proc/drbd (the namespace lab points it at the DRBD emulator's stand-in).

# drbd.conf is not the cluster's: only warn (drbdadm may be missing here, or the resource
# defined only on the cluster nodes when this runs on a management host).
if command -v drbdadm >/dev/null 2>&1 && conf=$(drbdadm dump "$DRBD_RESOURCE" 2>/dev/null); then
    if ! grep -Eq 'fencing[[:space:]]+"?resource-(only|and-stonith)' <<<"$conf"; then
        echo "warning: DRBD resource $DRBD_RESOURCE has no resource-level fencing in drbd.conf" \
             "(see the comment at the top of $0)" >&2
    fi
fi

# 0. One-time: a filesystem on the replicated disk (the peer gets it by resync).
if [ "$MKFS" = yes ]; then
    drbdadm up "$DRBD_RESOURCE"
    drbdadm primary --force "$DRBD_RESOURCE"
    mkfs.ext4 -q -F "$DRBD_DEVICE"
    mkdir -p "$MOUNTPOINT"
    mount "$DRBD_DEVICE" "$MOUNTPOINT"
    mkdir -p "$EXPORT_DIR"
    umount "$MOUNTPOINT"
    drbdadm secondary "$DRBD_RESOURCE"
    drbdadm down "$DRBD_RESOURCE"
fi

# Build the whole configuration offline, then push it in one step: the cluster
# never sees a half-made stack.
CIB=$(mktemp)
trap 'rm -f "$CIB"' EXIT
pcs cluster cib "$CIB"

# 1. The replicated disk: one Promoted (DRBD Primary), one Unpromoted.
pcs -f "$CIB" resource create nfs-drbd ocf:pyha:drbd drbd_resource="$DRBD_RESOURCE" \
    ${PROC_DRBD:+proc_drbd="$PROC_DRBD"} \
    op monitor interval=29s role=Promoted \
    op monitor interval=31s role=Unpromoted \
    promotable promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true

# 2. The service, started in this order on the Promoted node, stopped in reverse:
#    the disk; the NFS server on it (its grace period starts); the exports; only
#    then the floating IP, so no client reaches a server without its exports
#    (they would get "stale file handle"); last the notification, which makes the
#    clients reclaim their locks while the server is in grace.
pcs -f "$CIB" resource create nfs-fs ocf:heartbeat:Filesystem \
    device="$DRBD_DEVICE" directory="$MOUNTPOINT" fstype=ext4 \
    op monitor interval="$MONITOR" --group nfs-service
if [ "$MANAGE_NFS_SERVER" = yes ]; then
    pcs -f "$CIB" resource create nfs-server ocf:pyha:nfsserver \
        shared_infodir="$STATE_DIR" grace_time="$GRACE" lease_time="$LEASE" \
        server_scope=nfs-service check_address="$VIP" \
        op monitor interval="$MONITOR" \
        op monitor interval=60s OCF_CHECK_LEVEL=20 timeout=30s --group nfs-service
fi
pcs -f "$CIB" resource create nfs-export ocf:pyha:nfsexport \
    clientspec="$CLIENTS" directory="$EXPORT_DIR" fsid="$FSID" options=rw,sync,no_root_squash \
    op monitor interval="$MONITOR" --group nfs-service
pcs -f "$CIB" resource create nfs-vip ocf:heartbeat:IPaddr2 ip="$VIP" cidr_netmask="$CIDR" \
    op monitor interval="$MONITOR" --group nfs-service
pcs -f "$CIB" resource create nfs-notify ocf:pyha:nfsnotify source_host="$VIP" \
    op monitor interval="$MONITOR" --group nfs-service

# 3. The service runs where DRBD is Primary, and only after the promotion.
pcs -f "$CIB" constraint colocation add nfs-service with Promoted nfs-drbd-clone INFINITY
pcs -f "$CIB" constraint order promote nfs-drbd-clone then start nfs-service

# 4. Failover policy: a failed service moves at once (rather than restarting
#    in place), and stays where it is when the failed node comes back.
pcs -f "$CIB" resource meta nfs-service migration-threshold=1 resource-stickiness=100

# The DRBD clone may only run on the nodes that have the disk.
rule=()
for node in $NODES; do
    rule+=(${rule[0]+and} '#uname' ne "$node")
done
pcs -f "$CIB" constraint location nfs-drbd-clone rule score=-INFINITY "${rule[@]}"

pcs cluster cib-push "$CIB" --config
echo "nfs-drbd: configured; watch it with: crm_mon -r"
