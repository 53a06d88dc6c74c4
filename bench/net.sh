#!/usr/bin/env bash
# Issue 21's network benchmarks, through one QEMU user network: rescue
# image to rescue receive against dd | nc of the same disk (guest
# seconds), and qemu-img convert from rescue export against qemu-nbd
# --read-only serving the same image on the host. Usage:
# bench/net.sh [MIB] [ROUNDS] (default 256 3)
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh >/dev/null
cargo run --release -q -p image-build >/dev/null
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-system-x86_64 --version | head -1
cargo run --release -q -p qemu-tests --bin bench-net -- "${1:-256}" "${2:-3}"
