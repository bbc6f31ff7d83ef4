#!/bin/sh
# A DRBD resource as a promotable clone, with an ext4 filesystem mounted on the Promoted node.
#
#   DRBD_RESOURCE=r0 DEVICE=/dev/drbd0 MOUNTPOINT=/srv/data sh pcs-examples/drbd.sh
#
# Needs: the DRBD resource defined in /etc/drbd.d/ on both nodes (with a filesystem made once
# on the Primary), ocf:pyha:drbd installed (python3 -m ocf_agents install), pcs >= 0.10.
# Run on one cluster node; everything is written in one CIB push.
#
# Split brain: add DRBD's split-brain handler to the resource in /etc/drbd.d/ on both nodes so
# the split brain is recorded the moment DRBD detects it (crit log line, node attribute
# drbd-<resource>-split-brain=1 shown by `crm_mon -A`, and the monitor's exit reason):
#     handlers { split-brain "/usr/lib/ocf/resource.d/pyha/drbd split-brain-handler"; }
# Without it the agent still finds a split brain by comparing the two sides' generation
# UUIDs (drbdsetup get-gi, DRBD 9) once both monitors have seen the StandAlone connection.
set -eu

DRBD_RESOURCE=${DRBD_RESOURCE:-r0}
DEVICE=${DEVICE:-/dev/drbd0}
MOUNTPOINT=${MOUNTPOINT:-/srv/data}
FSTYPE=${FSTYPE:-ext4}
NAME=${NAME:-drbd_$DRBD_RESOURCE}
# PROC_DRBD (optional): where ocf:pyha:drbd reads the DRBD module version instead of
# /proc/drbd (the namespace lab points it at the DRBD emulator's stand-in).

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
