#!/usr/bin/env bash
# Reading files out of VMFS, same run (issue 6): `rescue vmfs cat` against
# `debugvmfs ... cat` and `cat` through `vmfs-fuse` (Debian vmfs-tools), and
# against a plain `cat` of an equal-size regular file. Data: the real
# ESXi-written VMFS5 volume from ../shared/fixtures/vmfs (page-cached):
# `bigger` (128 MiB of data in 1 MiB file blocks) and the first 4 GiB of the
# thin `normal-flat.vmdk` (pointer blocks, unallocated: zeros). Then
# `bigger` with its 128 blocks scattered (by the test-only writer,
# tools/vmfs/examples/fragment_bigger.rs); a 2 GiB file in VMFS6 large file
# blocks (the VMFS6 fixture's `bigger` readdressed over the whole volume by
# tools/vmfs/examples/lfb_file.rs) against debugvmfs6, vmfs6-fuse, cat of a
# sparse copy and `dd bs=1M` of it (one stream of 1 MiB reads: this
# machine's copy speed); and, as root, `bigger` from the disk (page cache
# dropped before each read). Output goes to /dev/null (hyperfine's
# default), so what is timed is the reading.
# Timings: hyperfine, median of RUNS runs after warm-up runs.
# Usage: bench/vmfs.sh [RUNS] (default 20; the slow cases take fewer)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
fixture="../shared/fixtures/vmfs/vmfs5.bin.gz"
fixture6="../shared/fixtures/vmfs/vmfs6.bin.gz"
[ -f "$fixture" ] || { echo "needs $fixture (see its README for the public source)" >&2; exit 2; }
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2"; }; }
need debugvmfs vmfs-tools
need debugvmfs6 vmfs6-tools
need hyperfine hyperfine
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
cargo build --release -q --target x86_64-unknown-linux-musl -p rescue-init
rescue="$PWD/target/x86_64-unknown-linux-musl/release/rescue"
dir="$PWD/target/bench-vmfs"; mnt="$dir/mnt"
rm -rf "$dir"; mkdir -p "$mnt"
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; hyperfine --version
gzip -dc "$fixture" | dd of="$dir/vmfs5.img" bs=1M conv=sparse status=none
img="$dir/vmfs5.img"
"$rescue" vmfs cat "$img" /bigger > "$dir/plain"   # the equal-size regular file
cat "$img" "$dir/plain" > /dev/null
vmfs-fuse "$img" "$mnt"

# measure RUNS PREPARE "LABEL :: COMMAND"...: one table row per command (median
# and mean +- sd in ms); the medians are left in $med, by label.
declare -A med
measure() {
    local runs=$1 prepare=$2; shift 2
    local args=() labels=() c
    for c in "$@"; do labels+=("${c%% :: *}"); args+=("${c#* :: }"); done
    local pre=(--warmup 2)
    [ -n "$prepare" ] && pre=(--prepare "$prepare")
    # Its warnings (a first run slower than the rest...) only if it fails.
    hyperfine -N --style none "${pre[@]}" --runs "$runs" --export-csv "$dir/t.csv" "${args[@]}" \
        > /dev/null 2> "$dir/hyperfine.err" || { cat "$dir/hyperfine.err" >&2; exit 1; }
    # CSV: command,mean,stddev,median,user,system,min,max (seconds)
    local i=0
    while IFS=, read -r _ mean sd median _; do
        med[${labels[$i]}]=$median
        awk -v l="${labels[$i]}" -v m="$median" -v a="$mean" -v s="$sd" \
            'BEGIN { printf "| %s | %.1f ms | %.1f +- %.1f ms |\n", l, m * 1000, a * 1000, s * 1000 }'
        i=$((i + 1))
    done < <(tail -n +2 "$dir/t.csv")
}
header() { echo; echo "$1"; echo "| tool | median | mean +- sd |"; echo "|---|---|---|"; }
# ratio A B...: how many times faster A is than the fastest of B...
ratio() {
    local a=$1 best="" b; shift
    for b in "$@"; do
        if [ -z "$best" ] || awk -v x="${med[$b]}" -v y="${med[$best]}" 'BEGIN { exit !(x < y) }'; then best=$b; fi
    done
    awk -v x="${med[$a]}" -v y="${med[$best]}" -v l="$a" -v b="$best" \
        'BEGIN { printf "%s vs %s: %.2fx\n", l, b, y / x }'
}

header "bigger (128 MiB of data, 1 MiB file blocks), page-cached, $runs runs:"
measure "$runs" "" \
    "rescue vmfs cat :: $rescue vmfs cat $img /bigger" \
    "debugvmfs cat :: debugvmfs $img cat /bigger" \
    "cat via vmfs-fuse :: cat $mnt/bigger" \
    "cat of a regular file :: cat $dir/plain"
ratio "rescue vmfs cat" "debugvmfs cat" "cat via vmfs-fuse"
ratio "rescue vmfs cat" "cat of a regular file"

four=4294967296
header "normal-flat.vmdk, first 4 GiB (thin: unallocated, zeros), 3 runs:"
printf 'debugvmfs %q cat /normal-flat.vmdk | head -c %s\n' "$img" "$four" > "$dir/debug-thin.sh"
measure 3 "" \
    "rescue vmfs cat --length 4G :: $rescue vmfs cat $img /normal-flat.vmdk --length $four" \
    "debugvmfs cat, head -c 4G :: bash $dir/debug-thin.sh" \
    "head -c 4G via vmfs-fuse :: head -c $four $mnt/normal-flat.vmdk"
ratio "rescue vmfs cat --length 4G" "debugvmfs cat, head -c 4G" "head -c 4G via vmfs-fuse"

# Fragmented: block i of `bigger` where block i * 45 mod 128 was.
cp --sparse=always "$img" "$dir/frag.img"
cargo run --release -q -p vmfs --example fragment_bigger -- "$dir/frag.img"
frag="$dir/frag.img"
umount "$mnt"; vmfs-fuse "$frag" "$mnt"
cmp <("$rescue" vmfs cat "$frag" /bigger) "$dir/plain"
cat "$frag" > /dev/null
header "bigger with its blocks scattered, page-cached, $runs runs:"
measure "$runs" "" \
    "rescue vmfs cat (scattered) :: $rescue vmfs cat $frag /bigger" \
    "debugvmfs cat (scattered) :: debugvmfs $frag cat /bigger" \
    "cat via vmfs-fuse (scattered) :: cat $mnt/bigger"
ratio "rescue vmfs cat (scattered)" "debugvmfs cat (scattered)" "cat via vmfs-fuse (scattered)"

# Multi-GiB: 2 GiB in large file blocks on VMFS6.
gzip -dc "$fixture6" | dd of="$dir/lfb.img" bs=1M conv=sparse status=none
cargo run --release -q -p vmfs --example lfb_file -- "$dir/lfb.img"
lfb="$dir/lfb.img"
"$rescue" vmfs cat "$lfb" /bigger | cp --sparse=always /dev/stdin "$dir/plain-lfb"
cmp <(debugvmfs6 "$lfb" cat /bigger | tail -c +17) "$dir/plain-lfb"
umount "$mnt"; vmfs6-fuse "$lfb" "$mnt"
cat "$lfb" "$dir/plain-lfb" > /dev/null
lruns=$(( runs / 2 > 3 ? runs / 2 : 3 ))
header "2 GiB file in VMFS6 large file blocks, page-cached, $lruns runs:"
measure "$lruns" "" \
    "rescue vmfs cat (2 GiB) :: $rescue vmfs cat $lfb /bigger" \
    "debugvmfs6 cat (2 GiB) :: debugvmfs6 $lfb cat /bigger" \
    "cat via vmfs6-fuse (2 GiB) :: cat $mnt/bigger" \
    "cat of a sparse copy (2 GiB) :: cat $dir/plain-lfb" \
    "dd bs=1M of the sparse copy (2 GiB) :: dd if=$dir/plain-lfb of=/dev/null bs=1M status=none"
ratio "rescue vmfs cat (2 GiB)" "debugvmfs6 cat (2 GiB)" "cat via vmfs6-fuse (2 GiB)"
ratio "rescue vmfs cat (2 GiB)" "cat of a sparse copy (2 GiB)"
ratio "rescue vmfs cat (2 GiB)" "dd bs=1M of the sparse copy (2 GiB)"

if [ -w /proc/sys/vm/drop_caches ]; then
    drop="bash -c 'sync; echo 3 > /proc/sys/vm/drop_caches'"
    cruns=$(( runs / 4 > 5 ? runs / 4 : 5 ))
    umount "$mnt"; vmfs-fuse "$img" "$mnt"
    header "bigger from the disk (page cache dropped before each run), $cruns runs:"
    measure "$cruns" "$drop" \
        "rescue vmfs cat (disk) :: $rescue vmfs cat $img /bigger" \
        "debugvmfs cat (disk) :: debugvmfs $img cat /bigger" \
        "cat via vmfs-fuse (disk) :: cat $mnt/bigger" \
        "cat of a regular file (disk) :: cat $dir/plain"
    ratio "rescue vmfs cat (disk)" "debugvmfs cat (disk)" "cat via vmfs-fuse (disk)"
    ratio "rescue vmfs cat (disk)" "cat of a regular file (disk)"
    umount "$mnt"; vmfs-fuse "$frag" "$mnt"
    header "bigger scattered, from the disk, $cruns runs:"
    measure "$cruns" "$drop" \
        "rescue vmfs cat (scattered, disk) :: $rescue vmfs cat $frag /bigger" \
        "debugvmfs cat (scattered, disk) :: debugvmfs $frag cat /bigger" \
        "cat via vmfs-fuse (scattered, disk) :: cat $mnt/bigger"
    ratio "rescue vmfs cat (scattered, disk)" "debugvmfs cat (scattered, disk)" "cat via vmfs-fuse (scattered, disk)"
fi
