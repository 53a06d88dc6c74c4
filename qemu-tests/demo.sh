#!/usr/bin/env bash
# Builds the appliance and boots it in QEMU on a demo set of disks, with the
# serial console on this terminal. Quit: choose "p" (power off) in the menu,
# or press Ctrl-A then X.
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh
cargo run --release -p image-build
cargo run --release -p qemu-tests --bin demo -- "$@"
