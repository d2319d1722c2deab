#!/usr/bin/env bash
# libFuzzer runs of the parsers that read input from outside:
#   proxmox  Fuzz/ProxmoxAPIFuzz.swift  PVE's JSON answers, UPIDs, volids, task logs
#   config   Fuzz/ConfigFuzz.swift      the config file (StrictYAML over Yams), durations, VMID globs
#
#   scripts/fuzz.sh [RUNS]         default 200000 inputs per harness; prints libFuzzer's final stats
#   MAX_TIME=600 scripts/fuzz.sh   run each harness for 10 minutes instead of a count
#   FUZZ_DIR=dir                   where binaries, new corpus entries and crashes go (.build/fuzz)
#   FUZZ_TARGETS="config"          which harnesses (default: proxmox config)
#
# Each harness is compiled with the sources it tests by `swiftc -sanitize=fuzzer` as one module
# (the package's imports of its own modules dropped; SwiftPM's entry-point renaming clashes with
# libFuzzer's main). The config harness links the Yams objects of the debug build (run
# `swift build` first), uninstrumented: coverage guides through our code. Seeds in Fuzz/corpus/*
# are never changed; new inputs go to $FUZZ_DIR/corpus-*. A crash, a failed property (fatalError)
# or an input running over 10 s leaves $FUZZ_DIR/crash-* or timeout-* and the script exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-200000}"
OUT="${FUZZ_DIR:-.build/fuzz}"
TARGETS="${FUZZ_TARGETS:-proxmox config}"
mkdir -p "$OUT"
# Swift's crash backtracer would take the signal before libFuzzer writes the failing input.
export SWIFT_BACKTRACE=enable=no

PROXMOX_SOURCES=$(ls Sources/ProxmoxModel/*.swift Sources/ProxmoxAPI/*.swift | grep -v -e HTTPSTransport.swift -e Exports.swift)

build() {  # name, harness, sources and objects…
    local name=$1 harness=$2
    shift 2
    local src="$OUT/src-$name"
    rm -rf "$src" && mkdir -p "$src"
    for f in "$@"; do
        case $f in
        *.swift) sed -E '/^import (ConfigSupport|ProxmoxAPI|ProxmoxModel|StandbyCore)$/d' "$f" >"$src/$(basename "$f")" ;;
        esac
    done
    local objects=()
    for f in "$@"; do [[ $f == *.o ]] && objects+=("$f"); done
    echo "fuzz: building $name with -sanitize=fuzzer" >&2
    swiftc -O -sanitize=fuzzer -parse-as-library -module-name "Fuzz_$name" \
        -I .build/debug/Modules -I .build/checkouts/Yams/Sources/CYaml/include \
        "$src"/*.swift "$harness" "${objects[@]}" -o "$OUT/$name-fuzz"
}

status=0
for target in $TARGETS; do
    case $target in
    proxmox)
        # shellcheck disable=SC2086
        build proxmox Fuzz/ProxmoxAPIFuzz.swift $PROXMOX_SOURCES || { status=1; continue; }
        ;;
    config)
        if [[ ! -d .build/debug/Yams.build ]]; then
            echo "fuzz: config needs the debug build's Yams objects: run swift build first" >&2
            status=1
            continue
        fi
        # shellcheck disable=SC2086
        build config Fuzz/ConfigFuzz.swift Sources/ConfigSupport/*.swift Sources/StandbyCore/*.swift $PROXMOX_SOURCES \
            .build/debug/Yams.build/*.swift.o .build/debug/CYaml.build/src/*.o || { status=1; continue; }
        ;;
    *) echo "fuzz: unknown target $target" >&2; status=1; continue ;;
    esac
    if [[ -n ${MAX_TIME:-} ]]; then limit="-max_total_time=$MAX_TIME"; else limit="-runs=$RUNS"; fi
    mkdir -p "$OUT/corpus-$target"
    echo "fuzz: running $target ($limit)" >&2
    "$OUT/$target-fuzz" "$limit" -seed=1 -max_len=4096 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$OUT/" "$OUT/corpus-$target" "Fuzz/corpus/$target" >"$OUT/$target.log" 2>&1
    rc=$?
    grep -E "^(#[0-9]+ +DONE|stat::|Done|INFO: seed corpus|==[0-9]+==|.*Fatal error|.*Test unit written)" "$OUT/$target.log"
    if [[ $rc -ne 0 ]]; then
        echo "fuzz: $target FAILED (libFuzzer exit $rc); last lines of $OUT/$target.log:" >&2
        tail -20 "$OUT/$target.log" >&2
        for f in "$OUT"/crash-* "$OUT"/timeout-*; do [[ -e $f ]] && { echo "fuzz: input $f:" >&2; od -An -c "$f" | head -20 >&2; }; done
        status=1
    else
        echo "fuzz: $target: 0 crashes" >&2
    fi
done
exit $status
