#!/usr/bin/env bash
# Runs the same `kraftwerk bench` workloads against two kraftwerk server
# binaries in alternation (one single node each time, fresh data directory
# under $TMPDIR), with one client binary for both, and prints one line per
# run: workload, binary, records/s, MB/s, and the broker's CPU seconds and
# peak RSS (from /proc).
#
#   bench/before-after.sh OLD_BINARY NEW_BINARY [ROUNDS] [CLIENT_BINARY]
#
# OLD_ARGS and NEW_ARGS add server arguments to one side (the two sides
# may then be the same binary). NEW_SCRAPE=URL_PATHS (space-separated, for
# example "/metrics /api/v1/stats") has a scraper GET those paths from the
# new side's HTTP listener once a second for the whole run, as a
# monitoring system and an open console page would.
#
#   OLD_ARGS="--override kraftwerk.http.listener=" \
#   NEW_SCRAPE="/metrics /api/v1/stats" \
#   bench/before-after.sh target/release/kraftwerk target/release/kraftwerk 5
set -euo pipefail
old="$1"; new="$2"; rounds="${3:-2}"; client="${4:-$new}"
port=39092
http_port=39080

workloads=(
  "produce100|bench produce --topic b100 --num-records 1000000 --record-size 100 --throughput -1 --producer-props acks=1 linger.ms=5 batch.size=131072"
  "produce1k|bench produce --topic b1k --num-records 300000 --record-size 1024 --throughput -1 --producer-props acks=all linger.ms=1 batch.size=131072"
  "consume100|bench consume --topic b100 --num-records 1000000"
  "consume1k|bench consume --topic b1k --num-records 300000"
)

cpu_seconds() { # utime + stime of a pid, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

scrape() { # paths...: GETs each path once a second until killed
  while true; do
    for path in "$@"; do
      curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$http_port$path" || true
    done
    sleep 1
  done
}

run_binary() { # label binary extra_args scrape_paths
  local label="$1" bin="$2" extra="$3" paths="$4" dir pid scraper=""
  dir="$(mktemp -d)"
  # shellcheck disable=SC2086
  "$bin" server --data-dir "$dir/data" --listeners "PLAINTEXT://127.0.0.1:$port" \
      --override num.partitions=6 --override "kraftwerk.http.listener=127.0.0.1:$http_port" \
      $extra >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  if [ -n "$paths" ]; then
    # shellcheck disable=SC2086
    scrape $paths & scraper=$!
  fi
  for w in "${workloads[@]}"; do
    local name="${w%%|*}" cmd="${w#*|}" before after out
    before="$(cpu_seconds "$pid")"
    # shellcheck disable=SC2086
    out="$("$client" $cmd --bootstrap-server "127.0.0.1:$port" 2>&1 | tail -1)"
    after="$(cpu_seconds "$pid")"
    rss="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
    printf '%s\t%s\t%s\tbroker_cpu_s=%.2f\tpeak_rss_kib=%s\n' "$name" "$label" "$out" \
      "$(awk -v a="$after" -v b="$before" 'BEGIN {print a - b}')" "$rss"
  done
  if [ -n "$scraper" ]; then kill "$scraper"; wait "$scraper" 2>/dev/null || true; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

for r in $(seq "$rounds"); do
  run_binary old "$old" "${OLD_ARGS:-}" ""
  run_binary new "$new" "${NEW_ARGS:-}" "${NEW_SCRAPE:-}"
done
