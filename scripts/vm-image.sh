#!/usr/bin/env bash
# Builds what `podnet demo up --vms N` boots, from this machine's own files (no download):
#   vmlinuz      Debian's kernel (linux-image-cloud-amd64 preferred: it boots fastest)
#   initrd.cpio  busybox and the virtio modules; mounts the root disk and switches to it
#   rootfs.ext4  node, podnet (dist, node_modules, native build), iproute2, iptables, kmod, bash, ping,
#                curl, util-linux's nsenter, the kernel's modules, busybox for the rest, and an init
#                that brings up eth0 and runs scripts/vm-node.sh as the README tells a user to
# The result is cached in CACHE/<key> (default /var/cache/podnet-vm), where the key is a hash of
# everything that goes in (the repository's files by content, system files by size and mtime), so a
# new podnet build gives a new image; older images are removed. Prints the image directory.
#   sudo bash scripts/vm-image.sh [--cache DIR]
# Run as root after `npm run build`. Needs busybox-static, e2fsprogs and a kernel package.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cache=/var/cache/podnet-vm
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    *) echo "vm-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "vm-image.sh: run as root (it reads /boot and builds a root-owned file system)" >&2; exit 1; }
[ -f dist/src/cli/main.js ] && ls build/Release/*.node >/dev/null 2>&1 || { echo "vm-image.sh: build podnet first (npm run build)" >&2; exit 1; }

kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1 || true)
[ -n "$kernel" ] || kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
[ -n "$kernel" ] || { echo "vm-image.sh: no kernel in /boot (apt-get install linux-image-cloud-amd64)" >&2; exit 1; }
kver=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$kver" ] || { echo "vm-image.sh: no modules for $kver in /lib/modules" >&2; exit 1; }
busybox=$(command -v busybox) || { echo "vm-image.sh: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$busybox" 2>&1 | grep -q 'not a dynamic' || { echo "vm-image.sh: $busybox is not static (apt-get install busybox-static)" >&2; exit 1; }

# Programs the VM needs as real binaries (busybox covers the rest): the daemon runs ip, nsenter,
# sysctl and iptables(-restore); vm-node.sh and setup.sh are bash; the demo uses ping and curl.
tools=(node bash ip nsenter sysctl kmod ping curl xtables-nft-multi env)
paths=()
for t in "${tools[@]}"; do p=$(command -v "$t") || { echo "vm-image.sh: $t not found (run scripts/setup.sh)" >&2; exit 1; }; paths+=("$(readlink -f "$p")"); done
xtlib=/usr/lib/x86_64-linux-gnu/xtables
natives=$(ls build/Release/*.node node_modules/*/build/Release/*.node 2>/dev/null || true)

repo_files() {
  find dist bin scripts -type f; echo package.json; echo package-lock.json; echo test/fixtures/nettool.mjs
  echo $natives | tr ' ' '\n'
}
key=$( {
  echo "format 1 $kver"
  repo_files | sort | xargs sha256sum
  find node_modules -type f -printf '%p %s %T@\n' | sort
  for f in "$kernel" "$busybox" "${paths[@]}"; do stat -L -c '%n %s %Y' "$f"; done
  find "/lib/modules/$kver" "$xtlib" -type f -printf '%p %s %T@\n' | sort
} | sha256sum | cut -c1-16)
out="$cache/$key"
if [ -f "$out/ready" ]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/ready" ]; then echo "$out"; exit 0; fi
started=$(date +%s)
work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,proc,sys,dev,run,tmp,root,var/log,var/lib,opt,mnt}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
chmod 1777 "$root/tmp"

# A file and the shared libraries it loads, at the paths the dynamic loader looks for them.
declare -A copied=()
copy() {
  local f=$1 dest=${2:-$1}
  [ -n "${copied[$dest]:-}" ] && return 0
  copied[$dest]=1
  install -D -m "$(stat -L -c %a "$f")" "$f" "$root$dest"
  local lib
  for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+' || true); do
    [ -e "$lib" ] && copy "$lib"
  done
}
for p in "${paths[@]}"; do copy "$p"; done
for f in "$xtlib"/*.so; do copy "$f"; done
for n in $natives; do for lib in $(ldd "$n" | grep -oE '/[^ ]+' || true); do [ -e "$lib" ] && copy "$lib"; done; done
ln -sf /usr/bin/kmod "$root/usr/sbin/modprobe"
for l in insmod rmmod lsmod depmod modinfo; do ln -sf /usr/bin/kmod "$root/usr/sbin/$l"; done
for l in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do
  ln -sf "$(readlink -f "$(command -v xtables-nft-multi)")" "$root/usr/sbin/$l"
done
install -m 755 "$busybox" "$root/usr/bin/busybox"
# sh is bash: Debian's busybox shell runs its own applets before PATH (its ip lacks netns), and
# scripts that say /bin/sh should find the same tools a user's machine has.
ln -s bash "$root/usr/bin/sh"
for a in $("$busybox" --list); do
  [ -e "$root/usr/bin/$a" ] || [ -e "$root/usr/sbin/$a" ] || ln -s busybox "$root/usr/bin/$a"
done
mkdir -p "$root/lib/modules"
cp -a "/lib/modules/$kver" "$root/lib/modules/"
cp -a /etc/iproute2 "$root/etc/" 2>/dev/null || true
for f in protocols services ethertypes; do [ -f "/etc/$f" ] && cp "/etc/$f" "$root/etc/"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
printf '127.0.0.1 localhost\n' > "$root/etc/hosts"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
: > "$root/etc/resolv.conf"

# podnet, as a clone with its build: what scripts/vm-node.sh expects to find.
mkdir -p "$root/opt/podnet/build/Release" "$root/opt/podnet/test/fixtures"
cp -a dist bin scripts package.json package-lock.json "$root/opt/podnet/"
cp build/Release/*.node "$root/opt/podnet/build/Release/"
cp test/fixtures/nettool.mjs "$root/opt/podnet/test/fixtures/"
cp -a node_modules "$root/opt/podnet/"
ln -s /opt/podnet/bin/podnet "$root/usr/bin/podnet"
# setup.sh finds this and has nothing to install or build (there is no package manager in the image).
mkdir -p "$root/etc/podnet"
echo "podnet VM image $key (scripts/vm-image.sh)" > "$root/etc/podnet/prepared"

# init: busybox init (it reaps orphans as PID 1) runs scripts/vm-rc.sh once.
install -m 755 scripts/vm-rc.sh "$root/etc/podnet-vm-rc"
cat > "$root/etc/inittab" <<'EOF'
::sysinit:/etc/podnet-vm-rc
::ctrlaltdel:/bin/poweroff -f
EOF
ln -sf /usr/bin/busybox "$root/usr/sbin/init"

size=$(( $(du -sm "$root" | cut -f1) * 12 / 10 + 256 ))
truncate -s "${size}M" "$work/rootfs.ext4"
mke2fs -q -F -t ext4 -O ^has_journal -L podnet-vm -d "$root" "$work/rootfs.ext4"

# initramfs: virtio PCI and block drivers (modules in this kernel), then mount /dev/vda and switch.
ir="$work/initrd"
mkdir -p "$ir"/{bin,dev,proc,sys,newroot,lib/modules/$kver}
install -m 755 "$busybox" "$ir/bin/busybox"
for a in sh mount umount mkdir sleep cat echo modprobe switch_root poweroff grep; do ln -s busybox "$ir/bin/$a"; done
cp "/lib/modules/$kver/modules.dep" "$ir/lib/modules/$kver/"
for m in virtio_pci virtio_blk; do
  line=$(grep -E "/$m\.ko(\.[a-z]+)?:" "/lib/modules/$kver/modules.dep")
  for f in ${line/:/}; do install -D "/lib/modules/$kver/$f" "$ir/lib/modules/$kver/$f"; done
done
cat > "$ir/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
echo "podnet-vm: initramfs"
if grep -q podnet.probe /proc/cmdline; then echo "podnet-vm: probe ok"; poweroff -f; fi
modprobe virtio_pci; modprobe virtio_blk
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "podnet-vm: cannot mount /dev/vda"; poweroff -f; }
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /sbin/init
EOF
chmod 755 "$ir/init"
(cd "$ir" && find . | "$busybox" cpio -o -H newc --quiet > "$work/initrd.cpio")

install -m 644 "$kernel" "$work/vmlinuz"
echo "$kver" > "$work/kernel-version"
# Older images go: only the newest build is kept.
for d in "$cache"/*/; do [ -d "$d" ] && [ "${d%/}" != "$out" ] && rm -rf "$d"; done
rm -rf "$out"
mkdir -p "$out"
mv "$work/vmlinuz" "$work/initrd.cpio" "$work/rootfs.ext4" "$work/kernel-version" "$out/"
echo "$(( $(date +%s) - started )) s, rootfs ${size} MB" > "$out/ready"
echo "vm-image.sh: built $out in $(cat "$out/ready")" >&2
echo "$out"
