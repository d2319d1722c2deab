#!/usr/bin/env bash
# Load test: `pbs-standby demo --guests 1000` (restores running, 4 workers, simulated time 60x)
# with wrk on /metrics for DURATION (default 60 s, 32 connections). Reports errors, latency, and
# whether the reconcile loop kept its interval meanwhile (one pass per simulated minute = one per
# real second): distinct values of pbs_standby_loop_last_run_timestamp_seconds seen each second.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product pbs-standby >/dev/null
DURATION=${DURATION:-60}
port=$((18900 + RANDOM % 90))
state=$(mktemp -d)
.build/release/pbs-standby demo --guests 1000 --workers 4 --web.listen-address "127.0.0.1:$port" \
  --state.path "$state/state.db" --log.level warn >/dev/null 2>&1 &
pid=$!
until curl -sf "127.0.0.1:$port/-/ready" -o /dev/null; do sleep 0.2; done
sleep 3
samples=$(mktemp)
( for _ in $(seq "$DURATION"); do
    curl -s "127.0.0.1:$port/metrics" | awk '/^pbs_standby_loop_last_run_timestamp_seconds/ {print $2}'; sleep 1
  done > "$samples" ) &
sampler=$!
out=$(wrk -t2 -c32 -d"${DURATION}s" --latency -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics")
wait "$sampler"
passes=$(sort -u "$samples" | wc -l)
maxgap=$(sort -un "$samples" | awk 'NR>1 {g=$1-p; if (g>m) m=g} {p=$1} END {printf "%.0f", m}')
restoring=$(curl -s "127.0.0.1:$port/api/v1/status" | grep -o '"restores_in_progress":[0-9]*')
echo "load-test guests=1000 duration_s=$DURATION requests=$(awk '/requests in/ {print $1}' <<<"$out") req_per_s=$(awk '/Requests\/sec/ {print $2}' <<<"$out") p50=$(awk '$1=="50%" {print $2}' <<<"$out") p99=$(awk '$1=="99%" {print $2}' <<<"$out") errors=$(grep -cE 'Non-2xx|Socket errors' <<<"$out" || true) loop_passes_seen=$passes loop_max_gap_sim_s=$maxgap $restoring peak_rss_mb=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$pid/status)"
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$state" "$samples"
