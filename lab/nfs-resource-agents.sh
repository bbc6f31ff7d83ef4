#!/bin/bash
# The widely published pcs recipe for an active/passive NFS server, with
# resource-agents' own agents (Red Hat's "Configuring an active/passive NFS
# server in a Red Hat High Availability cluster", with DRBD in place of LVM:
# LINBIT's ocf:linbit:drbd). The lab runs it beside pcs-examples/nfs-drbd.sh to
# compare what clients see across the same failures; it is not a recommendation.
# Resource names match nfs-drbd.sh's so the lab's checks apply unchanged.
set -euo pipefail

NODES=${NODES:-"node1 node2"}
DRBD_RESOURCE=${DRBD_RESOURCE:-r0}
DRBD_DEVICE=${DRBD_DEVICE:-/dev/drbd0}
MOUNTPOINT=${MOUNTPOINT:-/srv/nfs}
EXPORT_DIR=${EXPORT_DIR:-$MOUNTPOINT/export}
CLIENTS=${CLIENTS:-"10.213.0.0/24"}
VIP=${VIP:-10.213.0.100}
CIDR=${CIDR:-24}
MONITOR=${MONITOR:-10s}
FSID=${FSID:-1}

CIB=$(mktemp)
trap 'rm -f "$CIB"' EXIT
pcs cluster cib "$CIB"

pcs -f "$CIB" resource create nfs-drbd ocf:linbit:drbd drbd_resource="$DRBD_RESOURCE" \
    op monitor interval=29s role=Promoted op monitor interval=31s role=Unpromoted \
    promotable promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true
pcs -f "$CIB" resource create nfs-fs ocf:heartbeat:Filesystem \
    device="$DRBD_DEVICE" directory="$MOUNTPOINT" fstype=ext4 \
    op monitor interval="$MONITOR" --group nfs-service
# The recipe: nfsserver with its state on the shared disk, sm-notify left to nfsnotify.
pcs -f "$CIB" resource create nfs-server ocf:heartbeat:nfsserver \
    nfs_shared_infodir="$MOUNTPOINT/nfsinfo" nfs_no_notify=true \
    op monitor interval="$MONITOR" --group nfs-service
pcs -f "$CIB" resource create nfs-export ocf:heartbeat:exportfs \
    clientspec="$CLIENTS" options=rw,sync,no_root_squash directory="$EXPORT_DIR" fsid="$FSID" \
    op monitor interval="$MONITOR" --group nfs-service
pcs -f "$CIB" resource create nfs-vip ocf:heartbeat:IPaddr2 ip="$VIP" cidr_netmask="$CIDR" \
    op monitor interval="$MONITOR" --group nfs-service
pcs -f "$CIB" resource create nfs-notify ocf:heartbeat:nfsnotify source_host="$VIP" \
    op monitor interval="$MONITOR" --group nfs-service

pcs -f "$CIB" constraint colocation add nfs-service with Promoted nfs-drbd-clone INFINITY
pcs -f "$CIB" constraint order promote nfs-drbd-clone then start nfs-service
pcs -f "$CIB" resource meta nfs-service migration-threshold=1 resource-stickiness=100
rule=()
for node in $NODES; do
    rule+=(${rule[0]+and} '#uname' ne "$node")
done
pcs -f "$CIB" constraint location nfs-drbd-clone rule score=-INFINITY "${rule[@]}"
pcs cluster cib-push "$CIB" --config
