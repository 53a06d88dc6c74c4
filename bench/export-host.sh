#!/usr/bin/env bash
# `rescue export` against `qemu-nbd --read-only` serving the same image,
# both on 127.0.0.1 of this host (no QEMU guest; bench/export.sh, to come,
# measures the appliance in QEMU). The image and the copies live in
# /dev/shm, so what is measured is the servers and the NBD traffic, not a
# disk. Each round copies the whole image with `qemu-img convert` from
# each server (alternating which goes first), and reads it with
# `nbdcopy ... null:` (reading only). Prints medians, MiB/s and the ratio
# (rescue export's throughput / qemu-nbd's).
#
# Usage: bench/export-host.sh [MIB] [ROUNDS]    (default 1024 5)
# RESCUE=path/to/rescue uses a built binary; otherwise it is built with
# `cargo build --release -p rescue-init`. Needs qemu-utils and libnbd-bin.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
ROUNDS=${2:-5}
for t in qemu-img qemu-nbd nbdcopy; do
    command -v "$t" >/dev/null || { echo "export-host: $t is needed (bash qemu-tests/setup.sh)" >&2; exit 2; }
done
if [ -z "${RESCUE:-}" ]; then
    cargo build --release -q -p rescue-init
    RESCUE=target/release/rescue
fi
work=$(mktemp -d /dev/shm/export-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

img=$work/disk.img
# Incompressible and without zeros to skip: every byte is read and sent.
head -c $((MIB << 20)) /dev/urandom >"$img"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
qport=$(free_port)
qemu-nbd --read-only --persistent --shared=4 -f raw -b 127.0.0.1 -p "$qport" -x disk "$img" &
pids+=($!)
"$RESCUE" export "$img" --nbd 127.0.0.1:0 --allow 127.0.0.1 --json >"$work/ready.json" 2>"$work/export.log" &
pids+=($!)
for _ in $(seq 200); do
    [ -s "$work/ready.json" ] && nbdinfo --size "nbd://127.0.0.1:$qport/disk" >/dev/null 2>&1 && break
    sleep 0.05
done
ours=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/ready.json")
theirs="nbd://127.0.0.1:$qport/disk"

now() { date +%s.%N; }
# Seconds one command takes.
timed() {
    local a b
    a=$(now)
    "$@" >/dev/null 2>"$work/err" || { echo "export-host: failed: $*" >&2; cat "$work/err" >&2; exit 2; }
    b=$(now)
    echo "$a $b" | awk '{ printf "%.3f\n", $2 - $1 }'
}
convert() { rm -f "$work/out.raw"; timed qemu-img convert -f raw -O raw "$1" "$work/out.raw"; }
readall() { timed nbdcopy "$1" null:; }

declare -a c_ours c_theirs r_ours r_theirs
for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) -eq 1 ]; then
        c_ours+=("$(convert "$ours")"); cmp -s "$img" "$work/out.raw" || { echo "export-host: copy from rescue export differs" >&2; exit 2; }
        c_theirs+=("$(convert "$theirs")")
        r_ours+=("$(readall "$ours")"); r_theirs+=("$(readall "$theirs")")
    else
        c_theirs+=("$(convert "$theirs")")
        c_ours+=("$(convert "$ours")")
        r_theirs+=("$(readall "$theirs")"); r_ours+=("$(readall "$ours")")
    fi
done
rm -f "$work/out.raw"

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
report() {
    local what=$1 o t
    o=$(median "${@:2:$ROUNDS}")
    t=$(median "${@:$((ROUNDS + 2)):$ROUNDS}")
    awk -v w="$what" -v o="$o" -v t="$t" -v m="$MIB" 'BEGIN {
        printf "%-34s rescue export %7.3f s %7.0f MiB/s   qemu-nbd %7.3f s %7.0f MiB/s   ratio %.2f\n",
            w, o, m / o, t, m / t, t / o }'
}
nproc | sed 's/^/cores: /'; grep -m1 "model name" /proc/cpuinfo; qemu-nbd --version | head -1
echo "image: $MIB MiB in /dev/shm, $ROUNDS rounds, medians (ratio: rescue export's throughput / qemu-nbd's)"
report "qemu-img convert -O raw (to shm)" "${c_ours[@]}" "${c_theirs[@]}"
report "nbdcopy to null:" "${r_ours[@]}" "${r_theirs[@]}"
