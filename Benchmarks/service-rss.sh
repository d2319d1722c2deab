#!/usr/bin/env bash
# The service's own memory at N guests (default 1000): `pbs-standby simulator --tls --guests N` in
# one process, `pbs-standby run` (https, pinned fingerprint) in another, restores running, wrk on
# /metrics for DURATION (default 30 s). Prints the run process's peak RSS and the scrape figures.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release ${STATIC:+--static-swift-stdlib} --product pbs-standby >/dev/null
GUESTS=${GUESTS:-1000}
DURATION=${DURATION:-30s}
dir=$(mktemp -d)
simport=$((19100 + RANDOM % 400)); port=$((19600 + RANDOM % 300))
.build/release/pbs-standby simulator --tls --guests "$GUESTS" --speed 60 --web.listen-address "127.0.0.1:$simport" > "$dir/sim.out" 2>/dev/null &
sim=$!
until grep -q '^node=' "$dir/sim.out" 2>/dev/null; do sleep 0.2; done
url=$(sed -n 's/^url=//p' "$dir/sim.out"); fp=$(sed -n 's/^fingerprint=//p' "$dir/sim.out")
(umask 077; sed -n 's/^token=//p' "$dir/sim.out" > "$dir/token")
cat > "$dir/config.yml" <<CONFIG
proxmox: {transport: https, url: "$url", token_file: "$dir/token", fingerprint: "$fp", node: pve-standby}
state: {path: "$dir/state.db"}
restore: {workers: 4, poll_interval: 30s}
sources: [{storage: pbs-prod, target_storage: local-lvm}]
CONFIG
env ${RUN_ENV:-} .build/release/pbs-standby run --config.file "$dir/config.yml" --web.listen-address "127.0.0.1:$port" --log.level warn 2>/dev/null &
svc=$!
until curl -sf "127.0.0.1:$port/-/ready" -o /dev/null; do sleep 0.2; done
sleep 15
out=$(wrk -t${THREADS:-2} -c${CONNECTIONS:-32} -d"$DURATION" --latency -H "Accept-Encoding: ${ENCODING:-gzip}" "http://127.0.0.1:$port/metrics")
restored=$(curl -s "127.0.0.1:$port/api/v1/status" | grep -o '"result":"success"' | wc -l)
echo "service-rss guests=$GUESTS restored_so_far=$restored req_per_s=$(awk '/Requests\/sec/ {print $2}' <<<"$out") p99=$(awk '$1=="99%" {print $2}' <<<"$out") errors=$(grep -cE 'Non-2xx|Socket errors' <<<"$out" || true) service_peak_rss_mb=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$svc/status) simulator_rss_mb=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$sim/status)"
kill "$svc" "$sim"; wait "$svc" "$sim" 2>/dev/null || true
rm -rf "$dir"
