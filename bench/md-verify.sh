#!/usr/bin/env bash
# md verify throughput against plain sequential reads (cat) of the same
# member files, in one run (issue 9; goal: at least 0.8x). Two cases: "disk"
# drops the page cache before each timing (as root), so both read the disk;
# "cached" reads page-cached files, which measures verify's CPU cost against
# memory bandwidth. Usage: bench/md-verify.sh [MIB_PER_MEMBER] (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-1024}"
dir="target/bench-md"
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
cargo build --release -q --target x86_64-unknown-linux-musl -p rescue-init
rescue="target/x86_64-unknown-linux-musl/release/rescue"
cargo run --release -q -p mdraid --example bench_members -- "$dir" "$mib"
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); awk "BEGIN { print $e - $s }"; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
for level in raid1 raid5; do
    files=("$dir/$level"-*.img)
    bytes=$(( ${#files[@]} * mib * 1048576 ))
    for mode in disk cached; do
        if [ "$mode" = cached ]; then cat "${files[@]}" >/dev/null; else drop_caches; fi
        read_s=$(seconds cat "${files[@]}")
        if [ "$mode" = disk ]; then drop_caches; fi
        verify_s=$(seconds "$rescue" md verify --quiet "${files[@]}")
        awk -v l="$level" -v mo="$mode" -v n="${#files[@]}" -v m="$mib" -v b="$bytes" -v r="$read_s" -v v="$verify_s" 'BEGIN {
            printf "%s %s, %d members x %d MiB: sequential read %.2f s (%.0f MB/s), verify %.2f s (%.0f MB/s of members), ratio %.2fx\n",
                l, mo, n, m, r, b / r / 1e6, v, b / v / 1e6, r / v }'
    done
    "$rescue" md verify --quiet "${files[@]}" | tail -1
done
rm -rf "$dir"
