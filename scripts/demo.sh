#!/usr/bin/env bash
# Sets up podnet on this machine and runs the multi-host demo (hosts as network namespaces; with
# --vms N, real QEMU VMs: see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
case " $* " in *" --vms "*) bash scripts/vm-packages.sh ;; esac
./bin/podnet demo down >/dev/null 2>&1 || true
exec ./bin/podnet demo up "$@"
