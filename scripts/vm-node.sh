#!/usr/bin/env bash
# Runs podnet as one node of a cluster of real Linux VMs that share an etcd.
#   sudo bash scripts/vm-node.sh --etcd http://10.0.0.1:2379 --interface eth0 [--node NAME] [--lb-pool CIDR]
# Installs and builds podnet (scripts/setup.sh; on an image from scripts/vm-image.sh, as `podnet demo up
# --vms N` boots, there is nothing left to do), writes /etc/podnet/config.json and runs the daemon in the
# foreground (Ctrl-C or SIGTERM stops it and leaves its pods for the next start; `podnet node reset`
# removes everything it created). Run it on every VM with the same --etcd; UDP 8472 must be open
# between the VMs.
set -euo pipefail
cd "$(dirname "$0")/.."
etcd="" iface="" node="$(hostname | tr 'A-Z_' 'a-z-')" pool=""
while [ $# -gt 0 ]; do
  case "$1" in
    --etcd) etcd="$2"; shift 2 ;;
    --interface) iface="$2"; shift 2 ;;
    --node) node="$2"; shift 2 ;;
    --lb-pool) pool="$2"; shift 2 ;;
    *) echo "vm-node.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$etcd" ] || { echo "vm-node.sh: --etcd URL is required (an etcd every VM can reach)" >&2; exit 2; }
[ -n "$iface" ] || { echo "vm-node.sh: --interface NAME is required (the VM's network interface)" >&2; exit 2; }
bash scripts/setup.sh
mkdir -p /etc/podnet
cat > /etc/podnet/config.json <<JSON
{
  "node": "$node",
  "underlay": { "interface": "$iface", "mtu": $(cat /sys/class/net/"$iface"/mtu) },
  "store": { "kind": "etcd", "endpoints": ["$etcd"] }$( [ -n "$pool" ] && printf ',\n  "loadBalancerPool": "%s"' "$pool" )
}
JSON
echo "wrote /etc/podnet/config.json:"; cat /etc/podnet/config.json
exec ./bin/podnet daemon --config /etc/podnet/config.json
