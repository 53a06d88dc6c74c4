#!/usr/bin/env bash
# Reading files out of VMFS, same run (issue 6): `rescue vmfs cat` against
# `debugvmfs ... cat` and `cat` through `vmfs-fuse` (Debian vmfs-tools), and
# against a plain `cat` of an equal-size regular file. Data: the real
# ESXi-written VMFS5 volume from ../shared/fixtures/vmfs (page-cached):
# `bigger` (128 MiB of data in 1 MiB file blocks, read ROUNDS times per
# tool) and the first 4 GiB of the thin `normal-flat.vmdk` (pointer blocks,
# unallocated: zeros). Then `bigger` again with its 128 blocks scattered
# (by the test-only writer, tools/vmfs/examples/fragment_bigger.rs), page-
# cached and, as root, from the disk (page cache dropped before each read);
# and a 2 GiB file in VMFS6 large file blocks (the VMFS6 fixture's `bigger`
# readdressed over the whole volume by tools/vmfs/examples/lfb_file.rs),
# page-cached, against debugvmfs6, vmfs6-fuse and cat of a sparse copy.
# Usage: bench/vmfs.sh [ROUNDS] (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
fixture="../shared/fixtures/vmfs/vmfs5.bin.gz"
fixture6="../shared/fixtures/vmfs/vmfs6.bin.gz"
[ -f "$fixture" ] || { echo "needs $fixture (see its README for the public source)" >&2; exit 2; }
command -v debugvmfs >/dev/null || { apt-get update -qq && apt-get install -y -qq vmfs-tools; }
command -v debugvmfs6 >/dev/null || { apt-get update -qq && apt-get install -y -qq vmfs6-tools; }
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
cargo build --release -q --target x86_64-unknown-linux-musl -p rescue-init
rescue="$PWD/target/x86_64-unknown-linux-musl/release/rescue"
dir="$PWD/target/bench-vmfs"; mnt="$dir/mnt"
rm -rf "$dir"; mkdir -p "$mnt"
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
gzip -dc "$fixture" | dd of="$dir/vmfs5.img" bs=1M conv=sparse status=none
img="$dir/vmfs5.img"
"$rescue" vmfs cat "$img" /bigger > "$dir/plain"   # the equal-size regular file
cat "$img" "$dir/plain" > /dev/null
vmfs-fuse "$img" "$mnt"
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo
now() { date +%s.%N; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }
# Time of $rounds reads, the median of 3 such timings (this VM's timings
# vary by up to 1.5x between identical runs).
repeat1() { local s; s=$(now); for _ in $(seq "$rounds"); do "$@" > /dev/null; done; secs "$s" "$(now)"; }
repeat() { { repeat1 "$@"; echo; repeat1 "$@"; echo; repeat1 "$@"; echo; } | sort -n | sed -n 2p; }
ours=$(repeat "$rescue" vmfs cat "$img" /bigger)
debug=$(repeat debugvmfs "$img" cat /bigger)
fuse=$(repeat cat "$mnt/bigger")
plain=$(repeat cat "$dir/plain")
bytes=$((rounds * 134217728))
rate() { awk -v b="$bytes" -v t="$1" 'BEGIN { printf "%.0f MB/s", b / t / 1e6 }'; }
echo "bigger (128 MiB, data), $rounds reads each (median of 3):"
echo "| tool | time | rate |"; echo "|---|---|---|"
echo "| rescue vmfs cat | $ours s | $(rate "$ours") |"
echo "| debugvmfs cat | $debug s | $(rate "$debug") |"
echo "| cat through vmfs-fuse | $fuse s | $(rate "$fuse") |"
echo "| cat of a regular file | $plain s | $(rate "$plain") |"
awk -v o="$ours" -v d="$debug" -v f="$fuse" -v p="$plain" 'BEGIN {
    b = (d < f) ? d : f
    printf "rescue vs the faster of debugvmfs and vmfs-fuse: %.2fx; vs plain cat: %.2fx\n", b / o, p / o }'
four=4294967296
s=$(now); "$rescue" vmfs cat "$img" /normal-flat.vmdk --length $four > /dev/null; ours=$(secs "$s" "$(now)")
s=$(now); { debugvmfs "$img" cat /normal-flat.vmdk || true; } | head -c $four > /dev/null || true; debug=$(secs "$s" "$(now)")
s=$(now); head -c $four "$mnt/normal-flat.vmdk" > /dev/null; fuse=$(secs "$s" "$(now)")
echo; echo "normal-flat.vmdk, first 4 GiB (thin: unallocated, zeros):"
echo "| tool | time |"; echo "|---|---|"
echo "| rescue vmfs cat --length 4G | $ours s |"
echo "| debugvmfs cat \| head -c 4G | $debug s |"
echo "| head -c 4G through vmfs-fuse | $fuse s |"
awk -v o="$ours" -v d="$debug" -v f="$fuse" 'BEGIN { b = (d < f) ? d : f; printf "rescue vs the faster of the two: %.2fx\n", b / o }'

# Fragmented: block i of `bigger` where block i * 45 mod 128 was.
cp --sparse=always "$img" "$dir/frag.img"
cargo run --release -q -p vmfs --example fragment_bigger -- "$dir/frag.img"
frag="$dir/frag.img"
umount "$mnt"; vmfs-fuse "$frag" "$mnt"
cmp <("$rescue" vmfs cat "$frag" /bigger) "$dir/plain"
cat "$frag" > /dev/null
ours=$(repeat "$rescue" vmfs cat "$frag" /bigger)
debug=$(repeat debugvmfs "$frag" cat /bigger)
fuse=$(repeat cat "$mnt/bigger")
echo; echo "bigger with its blocks scattered, page-cached, $rounds reads each (median of 3):"
echo "| tool | time | rate |"; echo "|---|---|---|"
echo "| rescue vmfs cat | $ours s | $(rate "$ours") |"
echo "| debugvmfs cat | $debug s | $(rate "$debug") |"
echo "| cat through vmfs-fuse | $fuse s | $(rate "$fuse") |"
awk -v o="$ours" -v d="$debug" -v f="$fuse" 'BEGIN { b = (d < f) ? d : f; printf "rescue vs the faster of the two: %.2fx\n", b / o }'
# Multi-GiB: 2 GiB in large file blocks on VMFS6.
gzip -dc "$fixture6" | dd of="$dir/lfb.img" bs=1M conv=sparse status=none
cargo run --release -q -p vmfs --example lfb_file -- "$dir/lfb.img"
lfb="$dir/lfb.img"
"$rescue" vmfs cat "$lfb" /bigger | cp --sparse=always /dev/stdin "$dir/plain-lfb"
cmp <(debugvmfs6 "$lfb" cat /bigger | tail -c +17) "$dir/plain-lfb"
umount "$mnt"; vmfs6-fuse "$lfb" "$mnt"
cat "$lfb" "$dir/plain-lfb" > /dev/null
lrounds=3
ours=$(rounds=$lrounds repeat "$rescue" vmfs cat "$lfb" /bigger)
debug=$(rounds=$lrounds repeat debugvmfs6 "$lfb" cat /bigger)
fuse=$(rounds=$lrounds repeat cat "$mnt/bigger")
plain=$(rounds=$lrounds repeat cat "$dir/plain-lfb")
echo; echo "2 GiB file in VMFS6 large file blocks, page-cached, $lrounds reads each (median of 3):"
echo "| tool | time |"; echo "|---|---|"
echo "| rescue vmfs cat | $ours s |"
echo "| debugvmfs6 cat | $debug s |"
echo "| cat through vmfs6-fuse | $fuse s |"
echo "| cat of a sparse regular copy | $plain s |"
awk -v o="$ours" -v d="$debug" -v f="$fuse" -v p="$plain" 'BEGIN {
    b = (d < f) ? d : f
    printf "rescue vs the faster of debugvmfs6 and vmfs6-fuse: %.2fx; vs plain cat: %.2fx\n", b / o, p / o }'

if [ -w /proc/sys/vm/drop_caches ]; then
    cold() { local s; sync; echo 3 > /proc/sys/vm/drop_caches; s=$(now); "$@" > /dev/null; secs "$s" "$(now)"; }
    median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    echo; echo "from the disk (page cache dropped before each read), median of 5:"
    echo "| file | rescue vmfs cat | debugvmfs cat | cat via vmfs-fuse | cat of a regular file |"
    echo "|---|---|---|---|---|"
    for which in contiguous scattered; do
        if [ "$which" = contiguous ]; then v="$img"; else v="$frag"; fi
        umount "$mnt"; vmfs-fuse "$v" "$mnt"
        o=""; d=""; f=""; p=""
        for _ in 1 2 3 4 5; do
            o="$o $(cold "$rescue" vmfs cat "$v" /bigger)"
            d="$d $(cold debugvmfs "$v" cat /bigger)"
            f="$f $(cold cat "$mnt/bigger")"
            p="$p $(cold cat "$dir/plain")"
        done
        echo "| bigger, $which | $(echo $o | median) s | $(echo $d | median) s | $(echo $f | median) s | $(echo $p | median) s |"
    done
fi
