#!/usr/bin/env bash
# `rescue vmdk export` against `qemu-img convert -O raw`, same run (issue
# 19), on three disks made here: monolithicSparse and streamOptimized
# (qemu-img from a raw disk of MIB MiB: 3/4 base64 text of random bytes,
# which deflates to about 3/4 of its size and so makes inflating real
# work, 1/4 zeros), and a two-level SESparse chain (a flat base of MIB MiB and a
# snapshot with every fourth grain rewritten, by vmdk's bench_chain
# example). Inputs page-cached, outputs to tmpfs when it has room. Wall
# time and peak RSS, median of ROUNDS alternating rounds; the ratio is
# qemu-img's time over ours (above 1: we are faster).
# Usage: bench/vmdk.sh [MIB] [ROUNDS] (default 2048 3)
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-2048}"
rounds="${2:-3}"
command -v qemu-img >/dev/null || { apt-get update -qq && apt-get install -y -qq qemu-utils; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
cargo build --release -q --target x86_64-unknown-linux-musl -p rescue-init
rescue="$PWD/target/x86_64-unknown-linux-musl/release/rescue"
dir="$PWD/target/bench-vmdk"
out="$dir/out"
if [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $(( (mib * 2 + 512) * 1024 )) ] 2>/dev/null; then
    out="/dev/shm/bench-vmdk"
fi
rm -rf "$dir" "$out"; mkdir -p "$dir" "$out"
trap 'rm -rf "$dir" "$out"' EXIT
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-img --version | head -1

# The raw source: 3/4 data, 1/4 zeros (a disk's free space).
data=$(( mib * 3 / 4 ))
{ head -c "$((data << 20))" < <(base64 -w0 /dev/urandom); head -c "$(( (mib - data) << 20 ))" /dev/zero; } > "$dir/raw.img"
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$dir/raw.img" "$dir/sparse.vmdk"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$dir/raw.img" "$dir/stream.vmdk"
rm "$dir/raw.img"
cargo run --release -q -p vmdk --example bench_chain -- "$dir/chain" "$mib"

# timed CMD...: "seconds peak_rss_kb"
timed() {
    local s e
    s=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$dir/rss.txt" "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$(awk "BEGIN { print $e - $s }") $(cat "$dir/rss.txt")"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for case in sparse.vmdk stream.vmdk chain/top.vmdk; do
    src="$dir/$case"
    cat "$dir"/*.vmdk "$dir"/chain/* > /dev/null
    ours=(); theirs=(); ours_rss=0; theirs_rss=0
    for _ in $(seq "$rounds"); do
        rm -f "$out/a.raw" "$out/b.raw"
        read -r t m < <(timed "$rescue" vmdk export --quiet "$src" "$out/a.raw")
        ours+=("$t"); [ "$m" -gt "$ours_rss" ] && ours_rss=$m
        read -r t m < <(timed qemu-img convert -f vmdk -O raw "$src" "$out/b.raw")
        theirs+=("$t"); [ "$m" -gt "$theirs_rss" ] && theirs_rss=$m
    done
    cmp "$out/a.raw" "$out/b.raw" || { echo "$case: the exports differ" >&2; exit 1; }
    o=$(printf '%s\n' "${ours[@]}" | median); q=$(printf '%s\n' "${theirs[@]}" | median)
    awk -v c="$case" -v o="$o" -v q="$q" -v om="$ours_rss" -v qm="$theirs_rss" -v mib="$mib" 'BEGIN {
        printf "%s, %d MiB: rescue vmdk export %.2f s (peak %d MiB), qemu-img convert %.2f s (peak %d MiB), ratio %.2fx\n",
            c, mib, o, om / 1024, q, qm / 1024, q / o }'
done
