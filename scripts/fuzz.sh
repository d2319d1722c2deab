#!/bin/sh
# libFuzzer runs of the PVE-facing parsers (Fuzz/ProxmoxAPIFuzz.swift).
#   scripts/fuzz.sh [RUNS]        default 200000 inputs; prints libFuzzer's final stats
#   MAX_TIME=600 scripts/fuzz.sh  run for 10 minutes instead of a count
#   FUZZ_DIR=dir                  where the binary, new corpus entries and crashes go (.build/fuzz)
# The harness is compiled with Sources/ProxmoxAPI (minus the NIO transport, which is not a
# parser) by `swiftc -sanitize=fuzzer`. New interesting inputs go to .build/fuzz/corpus (the
# seeds in Fuzz/corpus are never changed); a crash leaves .build/fuzz/crash-* and exits non-zero.
set -eu
cd "$(dirname "$0")/.."
RUNS="${1:-200000}"
OUT="${FUZZ_DIR:-.build/fuzz}"
mkdir -p "$OUT/corpus"
SOURCES=$(ls Sources/ProxmoxAPI/*.swift | grep -v HTTPSTransport.swift)
echo "fuzz: building the harness with -sanitize=fuzzer" >&2
# shellcheck disable=SC2086
swiftc -O -sanitize=fuzzer -parse-as-library -module-name ProxmoxAPIFuzz \
    $SOURCES Fuzz/ProxmoxAPIFuzz.swift -o "$OUT/proxmox-api-fuzz"
if [ -n "${MAX_TIME:-}" ]; then LIMIT="-max_total_time=$MAX_TIME"; else LIMIT="-runs=$RUNS"; fi
echo "fuzz: running ($LIMIT)" >&2
"$OUT/proxmox-api-fuzz" "$LIMIT" -seed=1 -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$OUT/" "$OUT/corpus" Fuzz/corpus/proxmox 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::|Done|INFO: seed corpus|==|.*Fatal error|.*crash)" || true
# libFuzzer's exit status is lost in the pipe: a crash leaves an artifact.
if ls "$OUT"/crash-* >/dev/null 2>&1; then
    for f in "$OUT"/crash-*; do echo "fuzz: CRASH $f:" >&2; od -An -c "$f" | head -20 >&2; done
    exit 1
fi
echo "fuzz: 0 crashes" >&2
