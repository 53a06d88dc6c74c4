#!/usr/bin/env bash
# rescue image against dd and GNU ddrescue, same run (issue 5):
# 1. a healthy source file: throughput and peak RSS;
# 2. the same source with 1,000 scattered bad sectors, given to ddrescue
#    with --test-mode=MAP and to rescue with --simulate-bad MAP: wall time
#    and bytes rescued.
# The source is page-cached and the copies go to tmpfs (/dev/shm, when it
# has room), so the tools' own costs are compared rather than this
# machine's write-back; each copy is timed with its final sync, in ROUNDS
# alternating rounds, and the median is printed.
# Usage: bench/imaging.sh [SOURCE_MIB] [ROUNDS] (default 4096 3). Needs gddrescue.
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-4096}"
rounds="${2:-3}"
command -v ddrescue >/dev/null || { apt-get update -qq && apt-get install -y -qq gddrescue; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
cargo build --release -q --target x86_64-unknown-linux-musl -p rescue-init
rescue="$PWD/target/x86_64-unknown-linux-musl/release/rescue"
src_dir="$PWD/target/bench-imaging"
out_dir="$src_dir/out"
if [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt $(( (mib + 512) * 1024 )) ] 2>/dev/null; then
    out_dir="/dev/shm/bench-imaging"
fi
rm -rf "$src_dir" "$out_dir"; mkdir -p "$src_dir" "$out_dir"
trap 'rm -rf "$src_dir" "$out_dir"' EXIT
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; ddrescue --version | head -1
echo "source: $mib MiB in the page cache; copies to $out_dir; median of $rounds rounds"
src="$src_dir/src.img"
head -c "$((mib << 20))" /dev/urandom > "$src"
bytes=$((mib << 20))
cat "$src" >/dev/null
# timed CMD...: "seconds peak_rss_kb" for CMD followed by sync
timed() {
    local s e
    s=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$src_dir/rss.txt" "$@" >/dev/null 2>&1 || true
    sync
    e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" -v r="$(tail -1 "$src_dir/rss.txt")" 'BEGIN { printf "%.3f %s\n", e - s, r }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rescued() { # bytes in + blocks of a mapfile (mawk has no strtonum)
    awk 'function hex(s,   i, v) { s = tolower(s); sub(/^0x/, "", s); v = 0
            for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
            return v }
         !/^#/ && NF >= 3 && $3 == "+" { t += hex($2) } END { printf "%.0f", t }' "$1"; }
# 1,000 single bad sectors at fixed pseudo-random places (seed 42).
awk -v size="$bytes" 'BEGIN {
    srand(42); n = 0; sectors = size / 512
    while (n < 1000) { s = int(rand() * sectors); if (!(s in bad)) { bad[s] = 1; n++ } }
    m = 0; for (k in bad) keys[++m] = k + 0
    for (i = 2; i <= m; i++) { t = keys[i]; for (j = i - 1; j > 0 && keys[j] > t; j--) keys[j + 1] = keys[j]; keys[j + 1] = t }
    print "# test map: 1000 bad sectors"; print "0x0 +"
    pos = 0
    for (i = 1; i <= m; i++) {
        b = keys[i] * 512
        if (b > pos) printf "0x%X 0x%X +\n", pos, b - pos
        printf "0x%X 0x200 -\n", b; pos = b + 512
    }
    if (pos < size) printf "0x%X 0x%X +\n", pos, size - pos
}' > "$src_dir/bad.map"
out="$out_dir/out.img"; map="$out_dir/out.map"
run() { # name: one copy, appends "seconds rss" to $src_dir/name.times
    rm -f "$out" "$map"
    case "$1" in
        dd) timed dd if="$src" of="$out" bs=8M conv=notrunc status=none ;;
        ddrescue) timed ddrescue -q "$src" "$out" "$map" ;;
        rescue) timed "$rescue" image "$src" "$out" --map "$map" ;;
        ddrescue-bad) timed ddrescue -q --test-mode="$src_dir/bad.map" "$src" "$out" "$map" ;;
        rescue-bad) timed "$rescue" image "$src" "$out" --map "$map" --simulate-bad "$src_dir/bad.map" ;;
    esac >> "$src_dir/$1.times"
    case "$1" in
        rescue) cmp -s "$src" "$out" || { echo "rescue image: copy differs from the source" >&2; exit 1; } ;;
        *-bad) rescued "$map" > "$src_dir/$1.bytes" ;;
    esac
}
for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="dd ddrescue rescue ddrescue-bad rescue-bad"; else order="rescue-bad ddrescue-bad rescue ddrescue dd"; fi
    for t in $order; do run "$t"; done
done
t() { awk '{ print $1 }' "$src_dir/$1.times" | median; }
rss() { awk '{ print $2 }' "$src_dir/$1.times" | median; }
row() { awk -v n="$2" -v t="$(t "$1")" -v r="$(rss "$1")" -v b="$bytes" 'BEGIN { printf "| %s | %.2f s | %.0f MB/s | %.1f MiB |\n", n, t, b / t / 1e6, r / 1024 }'; }
echo "healthy source:"
echo "| tool | time (incl. sync) | rate | peak RSS |"; echo "|---|---|---|---|"
row dd "dd bs=8M conv=notrunc"; row ddrescue "ddrescue"; row rescue "rescue image"
awk -v d="$(t dd)" -v g="$(t ddrescue)" -v o="$(t rescue)" 'BEGIN { f = (d < g) ? d : g; printf "rescue image vs the faster of dd and ddrescue: %.2fx\n", f / o }'
echo; echo "same source, 1,000 scattered bad sectors (identical simulated faults):"
echo "| tool | time (incl. sync) | bytes rescued | peak RSS |"; echo "|---|---|---|---|"
for x in ddrescue-bad rescue-bad; do
    awk -v n="$x" -v t="$(t "$x")" -v b="$(cat "$src_dir/$x.bytes")" -v r="$(rss "$x")" 'BEGIN { printf "| %s | %.2f s | %s | %.1f MiB |\n", n, t, b, r / 1024 }'
done
awk -v d="$(t ddrescue-bad)" -v o="$(t rescue-bad)" -v db="$(cat "$src_dir/ddrescue-bad.bytes")" -v ob="$(cat "$src_dir/rescue-bad.bytes")" \
    'BEGIN { printf "time vs ddrescue: %.2fx (below 1 is faster); bytes rescued: %s\n", o / d, (db == ob) ? "same" : "DIFFERENT" }'
