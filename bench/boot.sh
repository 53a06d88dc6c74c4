#!/usr/bin/env bash
# Boot time to the menu vs the same kernel with a busybox-only initramfs,
# initramfs and binary sizes. Usage: bench/boot.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh >/dev/null
cargo run --release -q -p image-build >/dev/null
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-system-x86_64 --version | head -1
cargo run --release -q -p qemu-tests --bin bench-boot -- "${1:-3}"
