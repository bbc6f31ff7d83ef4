#!/bin/bash
# Installs what the agents, their tests, the benchmarks and the lab need on a
# Debian 12 root machine. Idempotent: quick when everything is there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

DEBS=(
  # the cluster stack and the reference agents (ocf-tester, heartbeat/*, linbit/drbd)
  pacemaker pacemaker-cli-utils corosync pcs crmsh resource-agents
  # the real tools the agents drive
  drbd-utils nfs-kernel-server nfs-common rpcbind
  moosefs-master moosefs-metalogger moosefs-chunkserver moosefs-client moosefs-cli fuse3
  # the real-kernel lab: qemu VMs (Debian's kernel is fetched by the lab with apt-get download)
  qemu-system-x86 busybox-static
  # tests and benchmarks
  libxml2-utils iproute2 psmisc procps util-linux mount kmod e2fsprogs xfsprogs strace
  python3 python3-pytest python3-pip python3-psutil python3-hypothesis
  # building the Debian package (debian/, tests/packaging): dpkg-buildpackage -b
  build-essential dpkg-dev debhelper dh-python python3-all python3-setuptools
  pybuild-plugin-pyproject python3-build python3-installer python3-wheel
)

missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
