#!/usr/bin/env bash
# Scrape benchmark: `pbs-standby demo --guests N` (the real service against the simulator, restores
# running) with wrk on /metrics and /api/v1/status, 32 connections, DURATION each (default 30 s).
# Prints req/s, p50, p99, body size plain and gzip, peak RSS (VmHWM) and CPU per scrape.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product pbs-standby >/dev/null
DURATION=${DURATION:-30s}
for guests in ${GUESTS:-100 1000}; do
  port=$((18500 + RANDOM % 400))
  state=$(mktemp -d)
  .build/release/pbs-standby demo --guests "$guests" --workers 4 --web.listen-address "127.0.0.1:$port" \
    --state.path "$state/state.db" --log.level warn >/dev/null 2>&1 &
  pid=$!
  until curl -sf "127.0.0.1:$port/-/ready" -o /dev/null; do sleep 0.2; done
  sleep 5   # let restores get going
  for path in /metrics /api/v1/status; do
    plain=$(curl -s "127.0.0.1:$port$path" | wc -c)
    gz=$(curl -s -H 'Accept-Encoding: gzip' "127.0.0.1:$port$path" | wc -c)
    cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
    out=$(wrk -t2 -c32 -d"$DURATION" --latency -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port$path")
    cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
    cpu_ms=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.3f", (b-a)*1000/hz/n}')
    echo "scrape-bench guests=$guests path=$path bytes=$plain gzip_bytes=$gz gzip_ratio=$(awk -v a=$plain -v b=$gz 'BEGIN{printf "%.1f", a/b}') req_per_s=$rps p50=$p50 p99=$p99 cpu_ms_per_req=$cpu_ms ${errs:+errors: $errs}"
  done
  echo "scrape-bench guests=$guests peak_rss_mb=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$pid/status) rss_now_mb=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$state"
done
