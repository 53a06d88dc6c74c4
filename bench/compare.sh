#!/usr/bin/env bash
# The `rescue` binary built at REV against the one of the working tree, in
# the same run, on the three throughput workloads (issue 18: a refactoring
# must not make any of them slower):
# - imaging: `rescue image` of a 1 GiB page-cached random source to tmpfs
#   (/dev/shm when it has room), mapfile beside it;
# - vmfs: `rescue vmfs cat` of `bigger` (128 MiB in 1 MiB file blocks) from
#   the real ESXi-written VMFS5 fixture, page-cached, to /dev/null;
# - md verify: `rescue md verify` of a page-cached 3-member RAID-5 (256 MiB
#   per member, made by mdraid's bench_members example).
# Timings: hyperfine, median of RUNS runs after a warm-up, both binaries in
# one hyperfine call per workload; the ratio is old/new (above 1: faster).
# Usage: bench/compare.sh REV [RUNS] (default RUNS 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: bench/compare.sh REV [RUNS]}"
runs="${2:-10}"
fixture="../shared/fixtures/vmfs/vmfs5.bin.gz"
[ -f "$fixture" ] || { echo "needs $fixture (see its README for the public source)" >&2; exit 2; }
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl

dir="$PWD/target/bench-compare"
old_tree="$dir/old-tree"
rm -rf "$dir"; mkdir -p "$dir"
out="$dir"
if [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $(( 1536 * 1024 )) ] 2>/dev/null; then
    out="/dev/shm/bench-compare"
fi
mkdir -p "$out"
cleanup() { git worktree remove --force "$old_tree" 2>/dev/null || true; rm -rf "$dir" "$out"; }
trap cleanup EXIT

cargo build --release -q --target x86_64-unknown-linux-musl -p rescue-init
new="$dir/rescue-new"
cp target/x86_64-unknown-linux-musl/release/rescue "$new"
git worktree add -q --detach "$old_tree" "$rev"
# The old tree builds into its own target directory: the two builds must
# not share artefacts.
(cd "$old_tree" && cargo build --release -q --target x86_64-unknown-linux-musl -p rescue-init)
old="$dir/rescue-old"
cp "$old_tree/target/x86_64-unknown-linux-musl/release/rescue" "$old"

nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; hyperfine --version
echo "old: $(git rev-parse --short "$rev") ($(stat -c %s "$old") bytes); new: working tree at $(git rev-parse --short HEAD) ($(stat -c %s "$new") bytes)"

# compare NAME ARGS...: hyperfine on "$old ARGS" and "$new ARGS"; prints the
# medians and old/new.
compare() {
    local name="$1"; shift
    local prepare="$1"; shift
    hyperfine -N --runs "$runs" --warmup 1 --prepare "$prepare" --export-json "$dir/h.json" \
        -n old "$old $*" -n new "$new $*" >/dev/null
    python3 - "$dir/h.json" "$name" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
o, n = r["old"]["median"], r["new"]["median"]
print(f"{sys.argv[2]}: old {o:.3f} s, new {n:.3f} s (median), old/new {o / n:.2f}x")
EOF
}

# Imaging.
src="$dir/src.img"
head -c $((1 << 30)) /dev/urandom > "$src"
cat "$src" > /dev/null
compare "rescue image, 1 GiB page-cached to $out" "rm -f $out/dst.img $out/dst.map" \
    image --map "$out/dst.map" "$src" "$out/dst.img"

# VMFS.
gzip -dc "$fixture" | dd of="$dir/vmfs5.img" bs=1M conv=sparse status=none
"$new" vmfs cat "$dir/vmfs5.img" /bigger | cmp - <("$old" vmfs cat "$dir/vmfs5.img" /bigger)
compare "rescue vmfs cat, 128 MiB" "true" vmfs cat "$dir/vmfs5.img" /bigger

# md verify.
cargo run --release -q -p mdraid --example bench_members -- "$dir/md" 256
files=("$dir/md"/raid5-*.img)
cat "${files[@]}" > /dev/null
compare "rescue md verify, RAID-5 3 x 256 MiB cached" "true" md verify --quiet "${files[@]}"
