#!/usr/bin/env bash
# `rescue files-hit` on the VMFS5 fixture holding VMS small VM disks, one
# bad 4 KiB block under a guest file in each (issue 20: 100 VMs, under
# 10 s in TCG wanted). Prints the guest's wall time. Usage:
# bench/files-hit.sh [VMS] (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh >/dev/null
cargo run --release -q -p image-build >/dev/null
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-system-x86_64 --version | head -1
cargo run --release -q -p qemu-tests --bin bench-files-hit -- "${1:-100}"
