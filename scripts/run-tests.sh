#!/usr/bin/env bash
# Runs every test suite (after `swift build --build-tests`) in two phases — the in-process suites,
# then the end-to-end suites that drive subprocesses (their blocking waits would otherwise starve
# the in-process suites' async work on a 2-core machine) — then the promtool checks, and ends with
# one plain summary line: "tests: N passed, M failed". A short libFuzzer run of the PVE parsers
# (scripts/fuzz.sh, 200,000 inputs) runs between the phases.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
fuzzdir=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$fuzzdir"' EXIT
status=0
swift test --skip-build --filter 'MicroHTTPTests|ProxmoxAPITests|StandbyCoreTests|StandbyStoreTests|StandbyServiceTests|FuzzTests' 2>&1 | tee -a "$log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
FUZZ_DIR=$fuzzdir scripts/fuzz.sh "${FUZZ_RUNS:-200000}" || status=1
swift test --skip-build --filter 'EndToEndTests|PBSDatastoreTests' 2>&1 | tee -a "$log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
scripts/check-monitoring.sh || status=1
total=$(grep -oE 'Test run with [0-9]+ tests?' "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
failed=$(grep -cE '^✘ Test [^ ]+ failed' "$log" || true)
if [[ $status -ne 0 && $failed -eq 0 ]]; then failed=1; fi
echo "tests: $((total - failed)) passed, $failed failed"
exit $status
