#!/bin/sh
# A highly available MooseFS master with Pacemaker: a floating IP and ocf:pyha:mfsmaster.
#
# The seed's keepalived design (VIP + notify scripts that start mfsmaster, rsync of
# /var/lib/mfs both ways, pgrep as health check) done with Pacemaker. Choose where the
# master's DATA_PATH lives on the node that takes over:
#
#   STORAGE=metalogger VIP=10.213.0.100 sh pcs-examples/mfs.sh
#       DATA_PATH is local on each node; a metalogger on every node follows the master
#       through the VIP, and the standby restores from its metalogger's directory
#       (metadata_sources). Changes the metalogger had not received yet are lost; the
#       cluster attribute the agent keeps refuses a restore older than what the cluster saw.
#
#   STORAGE=drbd DRBD_RESOURCE=mfs DEVICE=/dev/drbd1 VIP=10.213.0.100 sh pcs-examples/mfs.sh
#       DATA_PATH is on DRBD (ocf:pyha:drbd promotable clone + ocf:heartbeat:Filesystem):
#       the standby mounts the dead master's own directory, so nothing is lost; the agent
#       runs mfsmaster -a (safely) after a crash. Set CHANGELOG_SAVE_MODE = 2 in
#       mfsmaster.cfg: with the default (0, changelogs written in the background and never
#       synced) a power loss of the master's node lost a file a client had written and
#       synced just before (measured on real kernels in the lab's VM backend).
#
# The floating IP comes last: after a crash the master restores while it starts, and
# chunkservers, metaloggers and clients must reach it only once the agent has checked the
# version it serves. The master listens on * (MATO*_LISTEN_HOST default), so it needs no VIP.
# It also goes first when the group stops, and must: a stopping mfsmaster serves for ~3 s
# more, but from its third second on drops the changelog lines of what it still changes
# ("changelog received during termination - changelog line lost", with the default
# CHANGELOG_SAVE_MODE = 0; they are only in the metadata.mfs it saves at exit). With the
# address stopped after the master (tried, measured
# in the lab) clients wrote in that second, the changelog got a hole, the next master appended
# after it, and the restore after the next crash failed on the hole (README).
#
# SERVER_VIP (optional): a second floating address for the chunkservers and
# metaloggers (their MASTER_HOST), started before the master; the clients keep VIP, started
# after it (safe: nothing listens on SERVER_VIP until the agent has checked the metadata and
# launched the master; a chunkserver refused meanwhile retries at its next tick, see
# MASTER_RECONNECTION_DELAY below). Then the master's start tickles the chunkservers and lets the clients in only
# once they are back, before the clients' address comes up, so no client is refused on the
# way (mfsmount tries a refused master again only 2 s later). With one address the agent
# does the same from a detached helper, and a client that finds the address first waits.
# Measured in the lab (README): the second address removes that 2 s tail but the clients'
# address comes up ~0.5-1 s later in a plain failover (it waits for the chunkservers'
# whole-second reconnection tick and one more IPaddr2 start); one address is faster in the
# common case.
#
# Needs on every node: moosefs-master (and moosefs-metalogger for STORAGE=metalogger),
# /etc/mfs/mfsmaster.cfg with the same settings, MASTER_HOST=$VIP in the clients'
# configuration and in the chunkservers' and metaloggers' ($SERVER_VIP if set), ocf:pyha:* installed (python3 -m ocf_agents
# install). Run on one cluster node; everything is written in one CIB push.
#
# Set MASTER_RECONNECTION_DELAY = 1 in every mfschunkserver.cfg (default 5): after a
# failover a chunkserver reconnects only at its next tick. Until every chunkserver is back
# the new master would answer reads with "no copies", which mfsmount retries only after a
# fixed 10 s, so the agent lets the clients in only then (hold_clients, default true): the
# sooner the chunkservers reconnect, the sooner the clients may.
set -eu

STORAGE=${STORAGE:-metalogger}
VIP=${VIP:?set VIP to the floating address of the master (MASTER_HOST everywhere)}
SERVER_VIP=${SERVER_VIP:-}
CIDR=${CIDR:-24}
# Monitor interval of the address and of the master's quick check (a crash of the node
# is seen by corosync, not by a monitor; a killed mfsmaster within this interval). Not
# 60s: that is the deep check's interval, and Pacemaker refuses two monitors at one interval.
MONITOR=${MONITOR:-10s}
MFSMASTER_CFG=${MFSMASTER_CFG:-/etc/mfs/mfsmaster.cfg}
METALOGGER_CFG=${METALOGGER_CFG:-/etc/mfs/mfsmetalogger.cfg}
# The metalogger's DATA_PATH (from mfsmetalogger.cfg); keep it apart from the master's.
METALOGGER_DATA=${METALOGGER_DATA:-/var/lib/mfs-metalogger}
DRBD_RESOURCE=${DRBD_RESOURCE:-mfs}
DEVICE=${DEVICE:-/dev/drbd1}
MOUNTPOINT=${MOUNTPOINT:-/var/lib/mfs}     # = DATA_PATH in mfsmaster.cfg
FSTYPE=${FSTYPE:-ext4}
# PROC_DRBD (optional): where ocf:pyha:drbd reads the DRBD module version instead of
# /proc/drbd (the namespace lab points it at the DRBD emulator's stand-in).

cib=$(mktemp /tmp/pyha-mfs-cib.XXXXXX)
trap 'rm -f "$cib"' EXIT
pcs cluster cib "$cib"

pcs -f "$cib" resource create mfs-ip ocf:heartbeat:IPaddr2 ip="$VIP" cidr_netmask="$CIDR" \
    op monitor interval="$MONITOR"
# the chunkservers' and metaloggers' address (if any) comes before the master
servers_ip=
if [ -n "$SERVER_VIP" ]; then
    pcs -f "$cib" resource create mfs-server-ip ocf:heartbeat:IPaddr2 ip="$SERVER_VIP" \
        cidr_netmask="$CIDR" op monitor interval="$MONITOR"
    servers_ip=mfs-server-ip
fi

case "$STORAGE" in
metalogger)
    # A metalogger on every node (mfsmetalogger has no OCF agent: ocf:heartbeat:anything
    # keeps it in the foreground). It connects to the VIP, wherever the master runs.
    pcs -f "$cib" resource create mfs-metalogger ocf:heartbeat:anything \
        binfile=/usr/sbin/mfsmetalogger cmdline_options="-f -c $METALOGGER_CFG start" \
        op monitor interval=30s clone
    pcs -f "$cib" resource create mfs-master ocf:pyha:mfsmaster \
        config="$MFSMASTER_CFG" metadata_sources="$METALOGGER_DATA" \
        op start timeout=300s op stop timeout=120s \
        op monitor interval="$MONITOR" timeout=20s \
        op monitor interval=60s timeout=30s OCF_CHECK_LEVEL=10
    # the master, then the address (see below)
    pcs -f "$cib" resource group add mfs $servers_ip mfs-master mfs-ip
    ;;
drbd)
    pcs -f "$cib" resource create "drbd-$DRBD_RESOURCE" ocf:pyha:drbd \
        drbd_resource="$DRBD_RESOURCE" ${PROC_DRBD:+proc_drbd="$PROC_DRBD"} \
        op monitor interval=29s role=Promoted timeout=20s \
        op monitor interval=31s role=Unpromoted timeout=20s \
        promotable promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true
    pcs -f "$cib" resource create mfs-fs ocf:heartbeat:Filesystem \
        device="$DEVICE" directory="$MOUNTPOINT" fstype="$FSTYPE" op monitor interval=20s
    pcs -f "$cib" resource create mfs-master ocf:pyha:mfsmaster config="$MFSMASTER_CFG" \
        op start timeout=300s op stop timeout=120s \
        op monitor interval="$MONITOR" timeout=20s \
        op monitor interval=60s timeout=30s OCF_CHECK_LEVEL=10
    # filesystem, master, address; all where DRBD is Primary
    pcs -f "$cib" resource group add mfs mfs-fs $servers_ip mfs-master mfs-ip
    pcs -f "$cib" constraint colocation add mfs with Promoted "drbd-$DRBD_RESOURCE-clone" INFINITY
    pcs -f "$cib" constraint order promote "drbd-$DRBD_RESOURCE-clone" then start mfs
    ;;
*)
    echo "STORAGE must be metalogger or drbd" >&2
    exit 2
    ;;
esac

# A master that fails once should move, not restart in place forever; and it must not
# come back to a node by itself (the agent refuses stale metadata anyway).
pcs -f "$cib" resource meta mfs-master migration-threshold=1 resource-stickiness=200

pcs cluster cib-push "$cib" --config
echo "created group mfs (VIP $VIP${SERVER_VIP:+, chunkserver VIP $SERVER_VIP}, ocf:pyha:mfsmaster, storage: $STORAGE)"
