#!/usr/bin/env bash
# Reading a large guest file through `rescue attach` of a VMDK and a
# read-only mount, against the kernel's loop device over the flattened raw
# export of the same disk, in the same guest (issue 20). Prints medians and
# the ratio. Usage: bench/attach.sh [MIB] [ROUNDS] (default 256 3)
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh >/dev/null
cargo run --release -q -p image-build >/dev/null
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-system-x86_64 --version | head -1
cargo run --release -q -p qemu-tests --bin bench-attach -- "${1:-256}" "${2:-3}"
