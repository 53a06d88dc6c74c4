#!/usr/bin/env bash
# Probe time with 16 emulated disks, measured inside the guest (TCG).
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh >/dev/null
cargo run --release -q -p image-build >/dev/null
cargo run --release -q -p qemu-tests --bin bench-probe
