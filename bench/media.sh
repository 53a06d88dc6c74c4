#!/usr/bin/env bash
# Time from QEMU start to the menu for every boot medium and firmware, in one
# run, and the media's sizes (issue 8). Usage: bench/media.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh >/dev/null
cargo run --release -q -p image-build >/dev/null
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-system-x86_64 --version | head -1
cargo run --release -q -p qemu-tests --bin bench-media -- "${1:-1}"
