#!/bin/sh
# A DRBD resource as a promotable clone, with an ext4 filesystem mounted on the Promoted node.
#
#   DRBD_RESOURCE=r0 DEVICE=/dev/drbd0 MOUNTPOINT=/srv/data sh pcs-examples/drbd.sh
#
# Needs: the DRBD resource defined in /etc/drbd.d/ on both nodes (with a filesystem made once
# on the Primary), ocf:pyha:drbd installed (python3 -m ocf_agents install), pcs >= 0.10.
# Run on one cluster node; everything is written in one CIB push.
#
# Fencing (LINBIT's advice with Pacemaker; pcs cannot write drbd.conf, so put this in the
# resource's file in /etc/drbd.d/ on BOTH nodes, then `drbdadm adjust <resource>`):
#     DRBD 8.4:                                   DRBD 9: the same, but fencing goes in net { }
#       disk { fencing resource-and-stonith; }    and the handlers are crm-fence-peer.9.sh /
#       handlers {                                unfence-peer "crm-unfence-peer.9.sh"
#         fence-peer "/usr/lib/drbd/crm-fence-peer.sh";
#         after-resync-target "/usr/lib/drbd/crm-unfence-peer.sh";
#         split-brain "/usr/lib/ocf/resource.d/pyha/drbd split-brain-handler";
#       }
# When only the replication link breaks, the Primary's I/O freezes until crm-fence-peer has put
# a -INFINITY Promoted constraint (drbd-fence-by-handler-<resource>-<clone>) for every other
# node into the CIB, so stale data is never promoted; the unfence handler removes it once the
# peer has resynced.  resource-and-stonith also needs a working STONITH device.  The script
# warns when `drbdadm dump` on this node shows no fencing.
#
# Split brain: the split-brain handler above records it the moment DRBD detects it (crit log
# line, node attribute drbd-<resource>-split-brain=1 shown by `crm_mon -A`, and the monitor's
# exit reason).  Without it the agent still finds a split brain by comparing the two sides'
# generation UUIDs (drbdsetup get-gi, DRBD 9) once both monitors have seen the StandAlone
# connection; on DRBD 8.4 only the handler reports it.
set -eu

DRBD_RESOURCE=${DRBD_RESOURCE:-r0}
DEVICE=${DEVICE:-/dev/drbd0}
MOUNTPOINT=${MOUNTPOINT:-/srv/data}
FSTYPE=${FSTYPE:-ext4}
NAME=${NAME:-drbd_$DRBD_RESOURCE}
# PROC_DRBD (optional): where ocf:pyha:drbd reads the DRBD module version instead of
# /proc/drbd (the namespace lab points it at the DRBD emulator's stand-in).

# drbd.conf is not the cluster's: only warn (drbdadm may be missing or the resource defined
# on the other nodes only, e.g. when this runs on a management host).
if command -v drbdadm >/dev/null 2>&1 && conf=$(drbdadm dump "$DRBD_RESOURCE" 2>/dev/null); then
    if ! printf '%s\n' "$conf" | grep -Eq 'fencing[[:space:]]+"?resource-(only|and-stonith)'; then
        echo "warning: DRBD resource $DRBD_RESOURCE has no resource-level fencing in drbd.conf" \
             "(see the comment at the top of $0)" >&2
    fi
fi

cib=$(mktemp /tmp/pyha-drbd-cib.XXXXXX)
trap 'rm -f "$cib"' EXIT
pcs cluster cib "$cib"

# Promotable clone: one instance per node, one Promoted (2 only with allow-two-primaries),
# notify=true (the agent uses pre/post notifications). Monitor intervals differ per role so
# Pacemaker keeps both operations.
pcs -f "$cib" resource create "$NAME" ocf:pyha:drbd \
    drbd_resource="$DRBD_RESOURCE" ${PROC_DRBD:+proc_drbd="$PROC_DRBD"} \
    op monitor interval=29s role=Promoted timeout=20s \
    op monitor interval=31s role=Unpromoted timeout=20s \
    op start timeout=240s op stop timeout=100s \
    op promote timeout=90s op demote timeout=90s op notify timeout=90s \
    promotable promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true

pcs -f "$cib" resource create "fs_$DRBD_RESOURCE" ocf:heartbeat:Filesystem \
    device="$DEVICE" directory="$MOUNTPOINT" fstype="$FSTYPE" \
    op monitor interval=20s timeout=40s

# The filesystem runs only where DRBD is Primary, and only after the promotion.
pcs -f "$cib" constraint colocation add "fs_$DRBD_RESOURCE" with Promoted "$NAME-clone" INFINITY
pcs -f "$cib" constraint order promote "$NAME-clone" then start "fs_$DRBD_RESOURCE"

pcs cluster cib-push "$cib" --config
echo "created $NAME-clone (ocf:pyha:drbd) and fs_$DRBD_RESOURCE on $MOUNTPOINT"
