#!/usr/bin/env bash
# HTTP benchmark of the embedded libmicrohttpd server serving /metrics (release build).
# wrk with 2 threads and 32 connections for 10 s against a ~50 KB and a ~2 MB exposition,
# plain and gzip. Prints one line per case: req/s, p50, p99.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product http-bench-server >/dev/null
DURATION=${DURATION:-10s}
for bytes in 50000 2000000; do
  port=$((18300 + RANDOM % 500))
  .build/release/http-bench-server --bytes "$bytes" --port "$port" > /tmp/http-bench-server.out &
  pid=$!
  until curl -sf "127.0.0.1:$port/metrics" -o /dev/null; do sleep 0.1; done
  for enc in identity gzip; do
    out=$(wrk -t2 -c32 -d"$DURATION" --latency -H "Accept-Encoding: $enc" "http://127.0.0.1:$port/metrics")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
    size=$(curl -s -H "Accept-Encoding: $enc" "127.0.0.1:$port/metrics" | wc -c)
    echo "http-bench body=${bytes}B encoding=$enc wire_bytes=$size req_per_s=$rps p50=$p50 p99=$p99 ${errs:+errors: $errs}"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
