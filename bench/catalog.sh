#!/usr/bin/env bash
# The catalog benchmark: a store of 10,000 image streams x 10 tags x 5 history entries,
# `berth serve` on it, and wrk at 32 connections for each scenario. Prints req/s, p50 and
# p99 per scenario, start-up time on the seeded store, and resident memory; then what TLS
# costs the two GET scenarios (see the end).
#
# Usage: bench/catalog.sh [SECONDS_PER_SCENARIO]   (needs wrk and taskset: apt-get install wrk util-linux)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15}
for tool in wrk taskset; do command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y wrk util-linux" >&2; exit 1; }; done
cargo build --release -q -p berth-cli -p berth-bench
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

source bench/lib.sh
port=$(free_port)
url="http://127.0.0.1:$port"
seed_start=$(date +%s.%N)
target/release/berth-bench-seed --data-dir "$work/data"
seed_end=$(date +%s.%N)
echo "seeding took $(python3 -c "print(round($seed_end-$seed_start,1))") s; store size $(du -sh "$work/data" | cut -f1)"

serve() {  # extra serve flags...
  target/release/berth serve --data-dir "$work/data" --listen "127.0.0.1:$port" --no-client-config "$@" 2>"$work/serve.log" &
  pid=$!
  until curl -ksf "$url/readyz" >/dev/null; do sleep 0.005; done
}
serve   # The first start creates the admin token.
kill "$pid"; wait "$pid" 2>/dev/null || true
start=$(date +%s%N); serve; ready=$(date +%s%N)
startup_ms=$(( (ready - start) / 1000000 ))
export BERTH_TOKEN=$(cat "$work/data/admin.token") BENCH_WRK_DIR="$PWD/bench/wrk"

run() {  # scenario url -> prints a row
  local out rps p50 p99 errors rss_now
  out=$(wrk -t2 -c32 -d"${duration}s" --latency -s "bench/wrk/$1.lua" "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx/ {print $5}' <<<"$out"); errors=${errors:-0}
  rss_now=$(awk '/VmRSS/ {print int($2/1024) " MiB"}' "/proc/$pid/status")
  printf '%-22s %12s %10s %10s %10s %12s\n' "$1" "$rps" "$p50" "$p99" "$errors" "$rss_now"
}
printf '\n%-22s %12s %10s %10s %10s %12s\n' scenario req/s p50 p99 errors "RSS after"
for scenario in get-istag get-imagestream list-namespace tag-update; do
  run "$scenario" "$url"
done
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo
echo "start-up on the seeded store: ${startup_ms} ms (process start to /readyz answering)"
echo "resident memory after the run: $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB)"

# What TLS costs the two GETs (TLS 1.3 with berth's self-signed certificate, on
# keep-alive connections as kubectl and controllers use them).
start_pinned() {  # scheme
  kill "$pid"; wait "$pid" 2>/dev/null || true
  url="$1://127.0.0.1:$port"
  local flags=(); [ "$1" = https ] && flags=(--tls self-signed)
  taskset -c 0 target/release/berth serve --data-dir "$work/data" --listen "127.0.0.1:$port" --no-client-config "${flags[@]}" \
    2>"$work/serve.log" &
  pid=$!
  until curl -ksf "$url/readyz" >/dev/null; do sleep 0.005; done
}
load_pinned() { pinned_wrk "$1://127.0.0.1:$port" "$2.lua"; }  # scheme scenario
tls_cost 3 start_pinned load_pinned get-istag get-imagestream
