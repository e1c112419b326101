#!/usr/bin/env bash
# Installs everything podnet needs on a fresh Debian/Ubuntu machine and builds it. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "setup.sh: run as root (it installs packages)" >&2; exit 1; fi
# A prepared system (the VM demo's image, built by scripts/vm-image.sh) holds everything installed and
# built, and has no package manager or registry to ask: nothing to do.
if [ -f /etc/podnet/prepared ] && [ -f dist/src/cli/main.js ] && ls build/Release/*.node >/dev/null 2>&1 \
  && command -v node >/dev/null && command -v ip >/dev/null && command -v iptables >/dev/null; then
  echo "setup.sh: $(cat /etc/podnet/prepared): nothing to install or build"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# containerd, runc, containernetworking-plugins (portmap, bandwidth), umoci and busybox-static: the CNI tests
# run containers from an image built here (test/helpers/containerd.ts). chromium: the UI test drives it
# headless through playwright-core (which brings no browser of its own). gcc: bench:floor builds its C relay.
need=(iproute2 iputils-ping iperf3 libpcap-dev etcd-server tcpdump tshark ethtool util-linux procps python3 make gcc g++ iptables curl kmod
  containerd runc containernetworking-plugins umoci busybox-static chromium)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  # tshark's wireshark-common asks whether non-root users may capture: answer no, without asking
  # (podnet capture and the tests only read files with tshark -r).
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -e /dev/net/tun ] || { modprobe tun 2>/dev/null || true; }
npm ci --no-audit --no-fund
# Native dependencies build from source (no prebuilt downloads here); build any an npm policy skipped.
for m in better-sqlite3 cap raw-socket; do
  ls node_modules/$m/build/Release/*.node >/dev/null 2>&1 || npm rebuild --foreground-scripts "$m"
done
npm run build
