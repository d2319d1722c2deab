#!/usr/bin/env bash
# Delta apply vs full restore on a local PBS datastore (pbs-standby datastore apply|restore).
#
#   Benchmarks/delta-bench.sh                 8 GiB image, 4 MiB chunks, 1 %, 10 %, 50 % changed
#   SIZE_GIB=2 PERCENTS="1 10" RUNS=3 Benchmarks/delta-bench.sh
#   BIN=/path/to/pbs-standby TMPDIR=/big/disk Benchmarks/delta-bench.sh
#
# Writes an image (50 % random, 30 % compressible text, 20 % zero chunks) and its snapshots
# with scripts/pbs-datastore-writer.py, then times (median of RUNS) a full `restore` of each
# changed snapshot and an `apply` from the base snapshot onto a copy of the base image. The
# limit for apply is the changed bytes divided by dd's write speed (conv=fsync) on the same
# filesystem. Everything lives under one temporary directory, removed at exit. Needs about
# 3.5 × SIZE_GIB of free space. The datastore is likely in the page cache: this measures CPU
# and write cost, not the PBS disks' read speed. Not run by the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
SIZE_GIB=${SIZE_GIB:-8}
PERCENTS=${PERCENTS:-"1 10 50"}
RUNS=${RUNS:-3}
SCRATCH=${SCRATCH:-$root/.build}
if [[ -z "${BIN:-}" ]]; then
  swift build -c release --scratch-path "$SCRATCH" --product pbs-standby >&2
  BIN=$SCRATCH/release/pbs-standby
fi
writer="$root/scripts/pbs-datastore-writer.py"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/delta-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
ds=$tmp/ds img=$tmp/image archive=drive-scsi0.img.fidx
base=vm/100/2024-01-01T00:00:00Z
chunk=$((4 << 20)) chunks=$((SIZE_GIB * 256))

now() { date +%s.%N; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
snapshot_for() { printf 'vm/100/2024-02-01T%02d:%02d:00Z' $(($1 / 60)) $(($1 % 60)); }

echo "generating a $SIZE_GIB GiB image ($chunks chunks of 4 MiB) ..." >&2
python3 - "$img" "$chunks" <<'EOF'
import os, random, sys
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
with open(path, "wb") as f:
    for i in range(n):
        r = rng.random()
        if r < 0.5:
            f.write(os.urandom(4 << 20))
        elif r < 0.8:
            line = f"block {i} of a guest file system, mostly text and tables\n".encode()
            f.write((line * ((4 << 20) // len(line) + 1))[: 4 << 20])
        else:
            f.write(bytes(4 << 20))
EOF
python3 "$writer" snapshot --datastore "$ds" --snapshot "$base" --archive "$archive=$img" >/dev/null

# Snapshot for p % changed: the first p % of a fixed permutation of the chunks get new data, so
# each snapshot is the base image with exactly p % of its chunks changed.
for p in $PERCENTS; do
  python3 - "$img" "$chunks" "$p" <<'EOF'
import os, random, sys
path, n, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
order = list(range(n)); random.Random(2).shuffle(order)
with open(path, "r+b") as f:
    for i in order[: n * p // 100]:
        f.seek(i * (4 << 20))
        data = os.urandom(4 << 20) if i % 10 < 7 else (f"changed {i} ".encode() * 400000)[: 4 << 20]
        f.seek(i * (4 << 20)); f.write(data)
EOF
  python3 "$writer" snapshot --datastore "$ds" --snapshot "$(snapshot_for "$p")" --archive "$archive=$img" >/dev/null
done
rm -f "$img"

dd_bytes=$((2 << 30))
t=$(now); dd if=/dev/zero of="$tmp/dd.bin" bs=4M count=$((dd_bytes / chunk)) conv=fsync status=none; t2=$(now)
dd_speed=$(echo "$dd_bytes / ($t2 - $t)" | bc -l); rm -f "$tmp/dd.bin"

run() {  # run <label> <args...>: prints "<seconds> <bytes written>"
  local t0 t1 err
  t0=$(now); err=$("$BIN" datastore "$@" 2>&1 >/dev/null) || { echo "$err" >&2; exit 1; }; t1=$(now)
  echo "$(echo "$t1 - $t0" | bc -l) $(grep -o '[0-9]* bytes written' <<<"$err" | cut -d' ' -f1)"
}

common=(--datastore "$ds" --archive "$archive")
printf '| changed | changed bytes | full restore (s) | full bytes written | apply (s) | apply bytes written | speed-up | dd limit (s) | apply ÷ limit |\n'
printf '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for p in $PERCENTS; do
  snap=$(snapshot_for "$p")
  full_t=() apply_t=() full_b=0 apply_b=0
  for _ in $(seq "$RUNS"); do
    rm -f "$tmp/full.img"
    read -r s b < <(run restore "${common[@]}" --snapshot "$snap" --target "$tmp/full.img"); full_t+=("$s"); full_b=$b
    rm -f "$tmp/full.img" "$tmp/target.img"
    run restore "${common[@]}" --snapshot "$base" --target "$tmp/target.img" >/dev/null
    read -r s b < <(run apply "${common[@]}" --from "$base" --to "$snap" --target "$tmp/target.img"); apply_t+=("$s"); apply_b=$b
    "$BIN" datastore verify "${common[@]}" --snapshot "$snap" --target "$tmp/target.img" >/dev/null
  done
  rm -f "$tmp/target.img"
  changed=$("$BIN" datastore diff "${common[@]}" --from "$base" --to "$snap" | wc -l)
  changed_bytes=$((changed * chunk))
  ft=$(printf '%s\n' "${full_t[@]}" | median) at=$(printf '%s\n' "${apply_t[@]}" | median)
  limit=$(echo "$changed_bytes / $dd_speed" | bc -l)
  printf '| %s %% (%s chunks) | %s MiB | %.2f | %s MiB | %.3f | %s MiB | %.1f× | %.3f | %.2f |\n' \
    "$p" "$changed" $((changed_bytes >> 20)) "$ft" $((full_b >> 20)) "$at" $((apply_b >> 20)) \
    "$(echo "$ft / $at" | bc -l)" "$limit" "$(echo "$at / $limit" | bc -l)"
done
printf '\ndd write speed (conv=fsync, 2 GiB, same filesystem): %.0f MiB/s; %s GiB image, 4 MiB chunks, median of %s runs.\n' \
  "$(echo "$dd_speed / 1048576" | bc -l)" "$SIZE_GIB" "$RUNS"
