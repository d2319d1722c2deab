#!/usr/bin/env bash
# promtool checks of the shipped alert rules and their unit tests (run by `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G "alerts/*.yml" >/dev/null; then
  promtool check rules alerts/*.yml
  if compgen -G "alerts/tests/*.test.yml" >/dev/null; then
    promtool test rules alerts/tests/*.test.yml
  fi
else
  echo "no alert rules yet"
fi
