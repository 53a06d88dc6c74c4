#!/usr/bin/env bash
# Time from QEMU start to the menu for every boot medium and firmware, in one
# run, and the media's sizes (issues 8 and 17). Usage: bench/media.sh [RUNS]
# RESCUE_OUT=DIR benches the media already in DIR (e.g. an older build made
# with image-build --out DIR, to compare in the same run) instead of
# building out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh >/dev/null
if [ -z "${RESCUE_OUT:-}" ]; then
    cargo run --release -q -p image-build >/dev/null
    # The benchmark must time the media as built: check them against the
    # checksums image-build wrote.
    (cd out && sha256sum -c --quiet SHA256SUMS)
fi
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-system-x86_64 --version | head -1
cargo run --release -q -p qemu-tests --bin bench-media -- "${1:-1}"
