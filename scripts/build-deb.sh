#!/usr/bin/env bash
# Builds out/pbs-standby_<version>_amd64.deb: the static binary, the systemd unit, example configs,
# alerts and dashboard under /usr/share/pbs-standby.
# Usage: scripts/build-deb.sh [--binary PATH] [--out DIR]
#   default: a release build with --static-swift-stdlib (no Swift runtime needed on the node);
#   --binary packages an existing build instead (the test suite does, to avoid a second full build).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="" out=out
while (($#)); do
  case "$1" in
    --binary) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$bin" ]]; then
  swift build -c release --static-swift-stdlib --product pbs-standby
  bin=.build/release/pbs-standby
  strip_binary=1
fi
version=$("$bin" --version | awk '{print $2}')
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$bin" "$root/usr/bin/pbs-standby"
[[ -n "${strip_binary:-}" ]] && strip "$root/usr/bin/pbs-standby"
install -D -m 0644 deploy/pbs-standby.service "$root/lib/systemd/system/pbs-standby.service"
install -D -m 0644 deploy/config.example.yml "$root/usr/share/pbs-standby/config.example.yml"
install -D -m 0644 deploy/web-config.example.yml "$root/usr/share/pbs-standby/web-config.example.yml"
install -D -m 0644 deploy/prometheus-scrape.yml "$root/usr/share/pbs-standby/prometheus-scrape.yml"
install -D -m 0644 deploy/alertmanager-route.yml "$root/usr/share/pbs-standby/alertmanager-route.yml"
install -D -m 0644 deploy/api/status.schema.json "$root/usr/share/pbs-standby/status.schema.json"
install -D -m 0644 alerts/pbs-standby.rules.yml "$root/usr/share/pbs-standby/alerts/pbs-standby.rules.yml"
install -D -m 0644 dashboards/pbs-standby.json "$root/usr/share/pbs-standby/dashboards/pbs-standby.json"
install -D -m 0644 README.md "$root/usr/share/doc/pbs-standby/README.md"
mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: pbs-standby
Version: $version
Architecture: amd64
Maintainer: pbs-standby developers <pbs-standby@localhost>
Depends: libmicrohttpd12, libcrypt1, libsqlite3-0, zlib1g, libstdc++6, libgcc-s1
Recommends: curl
Section: admin
Priority: optional
Description: keeps a Proxmox VE standby node hot from PBS backups
 Restores the newest complete Proxmox Backup Server backup of every selected guest onto a
 standby PVE node as soon as it appears, safely, with Prometheus metrics, a status API and page.
CONTROL
cat > "$root/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
mkdir -p /etc/pbs-standby
[ -f /etc/pbs-standby/config.yml ] || cp /usr/share/pbs-standby/config.example.yml /etc/pbs-standby/config.yml.example
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POST
chmod 0755 "$root/DEBIAN/postinst"
mkdir -p "$out"
level=-z1; [[ -n "${strip_binary:-}" ]] && level=-z9
dpkg-deb -Zgzip "$level" --root-owner-group --build "$root" "$out/pbs-standby_${version}_amd64.deb" >/dev/null
echo "$out/pbs-standby_${version}_amd64.deb"
