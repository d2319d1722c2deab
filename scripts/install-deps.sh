#!/usr/bin/env bash
# Installs the Debian packages pbs-standby needs, only those missing.
#   scripts/install-deps.sh          build and demo: libmicrohttpd-dev, pkg-config, libcrypt-dev, zlib1g-dev, libsqlite3-dev, libzstd-dev
#   scripts/install-deps.sh --test   also what the tests use: prometheus (promtool), openssl, curl, chromium, wrk, zstd (the
#                                    independent PBS datastore writer of the datastore tests compresses chunks with it)
set -euo pipefail
packages=(libmicrohttpd-dev pkg-config libcrypt-dev zlib1g-dev libsqlite3-dev libzstd-dev)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(prometheus openssl curl chromium wrk zstd)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ "${1:-}" == "--test" ]]; then
  # The status JSON schema test validates real responses with Python's jsonschema.
  python3 -c "import jsonschema" 2>/dev/null || python3 -m pip install -q jsonschema
fi
