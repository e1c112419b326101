#!/bin/sh
# Start-up of a VM of `podnet demo up --vms N` (installed as /etc/podnet-vm-rc by scripts/vm-image.sh,
# run once by busybox init). Reads its settings from the kernel command line:
#   podnet.name=vm1 podnet.ip=198.18.0.11/24 podnet.etcd=http://198.18.0.1:2379
#   podnet.agent=7070 podnet.allow=198.18.0.1 [podnet.lbpool=CIDR]
# and the exec agent's token from QEMU's fw_cfg item opt/podnet/token (not the command line, which any
# user of the host can read in qemu's, and any process of the VM in /proc/cmdline),
# mounts what Linux needs, brings up eth0, starts the demo's exec agent and runs scripts/vm-node.sh
# exactly as README.md tells a user on a real VM. Lines starting "podnet-vm:" on the console are the
# stages the host shows.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
say() { echo "podnet-vm: $*" > /dev/console; }
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^podnet\.$1=//p"; }
# /proc, /sys and /dev come mounted from the initramfs (mount --move); mount them only if not.
[ -e /proc/self ] || mount -t proc proc /proc
grep -q ' /sys ' /proc/mounts || mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
echo /sbin/modprobe > /proc/sys/kernel/modprobe
name=$(arg name) ip=$(arg ip) etcd=$(arg etcd) agent=$(arg agent) allow=$(arg allow) pool=$(arg lbpool)
hostname "$name"
say "init $name ($(uname -r))"
for m in virtio_net virtio_rng tun veth qemu_fw_cfg; do modprobe "$m" 2>/dev/null; done
ip link set lo up
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip addr add "$ip" dev eth0 && ip link set eth0 up || say "eth0 failed"
say "network eth0 $ip"
mkdir -p /run/podnet-vm
fw=/sys/firmware/qemu_fw_cfg/by_name/opt/podnet/token/raw
# Without a token the agent does not start (agent.ts refuses a missing or short one): say so on the console.
umask 077; cat "$fw" > /run/podnet-vm/token 2>/dev/null || say "no agent token (fw_cfg $fw): demo exec will not work"; umask 022
node /opt/podnet/dist/src/demo/agent.js --listen "${ip%/*}:$agent" --allow "$allow" --token-file /run/podnet-vm/token \
  > /var/log/podnet-agent.log 2>&1 &
cd /opt/podnet
(
  bash scripts/vm-node.sh --etcd "$etcd" --interface eth0 ${pool:+--lb-pool "$pool"} > /var/log/podnet.log 2>&1
  say "daemon exited ($?); last lines of /var/log/podnet.log:"; tail -20 /var/log/podnet.log > /dev/console
) &
(
  i=0; while [ ! -S "/run/podnet/$name.sock" ] && [ $i -lt 6000 ]; do sleep 0.2; i=$((i+1)); done
  [ -S "/run/podnet/$name.sock" ] && say "daemon serving"
) &
