#!/usr/bin/env bash
# Installs what `podnet demo up --vms N` needs besides podnet's own packages (scripts/setup.sh):
# QEMU, a Debian kernel for the VMs (the cloud flavour boots fastest), e2fsprogs and busybox-static
# for the image (scripts/vm-image.sh). Run as root; does nothing when they are installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=(qemu-system-x86 linux-image-cloud-amd64 e2fsprogs busybox-static)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
