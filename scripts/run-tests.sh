#!/usr/bin/env bash
# Runs every test suite (after `swift build --build-tests`), then the promtool checks, and ends
# with one plain summary line: "tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift test --skip-build 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
scripts/check-monitoring.sh
monitoring=$?
total=$(grep -oE 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
failed_tests=$(grep -E '^✘ Test [^ ]+ failed' "$log" | wc -l)
if [[ $status -ne 0 && $failed_tests -eq 0 ]]; then failed_tests=1; fi
echo "tests: $((total - failed_tests)) passed, $failed_tests failed"
[[ $status -eq 0 && $monitoring -eq 0 ]]
