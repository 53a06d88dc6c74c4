#!/usr/bin/env bash
# The whole test suite: installs prerequisites, builds the appliance image,
# runs every crate's tests and the QEMU boot tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash qemu-tests/setup.sh
echo "=== building the image (cargo run --release -p image-build)"
cargo run --release -p image-build
echo "=== running the tests"
set +e
# The suite profile (Cargo.toml): release optimizations without fat LTO.
# --no-fail-fast: every test binary runs, so one failure does not hide
# the others (the exit status still says it failed).
cargo test --workspace --profile suite --no-fail-fast 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "suite: %d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.log
exit "$status"
