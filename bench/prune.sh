#!/usr/bin/env bash
# The prune benchmark: a store of 1,000,000 images in 100,000 image streams (1,000
# namespaces x 100 streams, 2 tags each with 10 history entries, images built on 100
# bases), `berth serve` on it, then:
#   1. the prune plan as `berth adm prune images` asks for it (a dry run, keep 3 revisions,
#      keep-younger-than 60m): the first one after start-up (the storage index is loaded
#      then), and three more; wall time and the server's own plan time;
#   2. manifest GETs (wrk, 32 connections, by tag) without a prune, then while a confirmed
#      prune of the whole store runs: req/s and p99 of each, and how long the prune took.
#
# Usage: bench/prune.sh [SECONDS_OF_GETS] [IMAGES] [NAMESPACES]
#   (needs wrk: apt-get install -y wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15}
images=${2:-1000000}
namespaces=${3:-1000}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q -p berth-cli -p berth-bench
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
source bench/lib.sh

port=$(free_port)
url="http://127.0.0.1:$port"
start=$(now)
target/release/berth-bench-seed --data-dir "$work/data" --images "$images" --namespaces "$namespaces" \
  --streams-per-namespace 100 --tags 2 --history 10 --bases 100
echo "seeding took $(seconds "$start" "$(now)" 1) s; store size $(du -sh "$work/data" | cut -f1)"

serve() {
  target/release/berth serve --data-dir "$work/data" --listen "127.0.0.1:$port" --no-client-config 2>"$work/serve.log" &
  pid=$!
  until curl -sf "$url/readyz" >/dev/null; do sleep 0.01; done
}
serve   # The first start creates the admin token.
kill "$pid"; wait "$pid" 2>/dev/null || true
start=$(now); serve
echo "start-up on the seeded store: $(seconds "$start" "$(now)") s (process start to /readyz answering)"
token=$(cat "$work/data/admin.token")

prune() {  # dryRun query ("?dryRun=All" or "") -> the answer's JSON in $work/prune.json
  curl -sf -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"apiVersion":"berth.dev/v1","kind":"ImagePrune","spec":{"keepTagRevisions":3,"keepYoungerThan":"60m"}}' \
    "$url/apis/berth.dev/v1/imageprunes$1" >"$work/prune.json"
}
cat >"$work/summary.py" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))["status"]
plan = status["plan"]
line = (f"{len(plan['revisions'])} revisions, {len(plan['images'])} images, "
        f"{plan['freedBytes'] / 2**30:.1f} GiB of layers; server plan time {status['planSeconds']:.2f} s")
if not status["dryRun"]:
    line += f"; removed {status['removedRevisions']} revisions, {status['removedImages']} images"
print(line)
PY
summary() { python3 "$work/summary.py" "$work/prune.json"; }

echo
echo "prune plans (dry run, keep 3 revisions, keep-younger-than 60m):"
for run in first second third fourth; do
  start=$(now); prune "?dryRun=All"; took=$(seconds "$start" "$(now)" 2)
  echo "  $run: ${took} s wall; $(summary)"
done
echo "resident memory: $(awk '/VmRSS/ {print int($2/1024) " MiB"}' "/proc/$pid/status")"

echo
printf '%-32s %10s %10s %10s %8s\n' "manifest GET (32 connections)" req/s p50 p99 errors
gets() {  # label
  local out
  out=$(BENCH_REPO=ns-000/app-000 BENCH_TAGS=2 BENCH_TOKEN="$token" wrk -t2 -c32 -d"${duration}s" --latency -s bench/wrk/manifest.lua "$url")
  errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-32s %10s %10s %10s %8s\n' "$1" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" "${errors:-0}"
}
gets "no prune"
start=$(now)
prune "" &
pruning=$!
gets "during a confirmed prune"
wait "$pruning"
echo "the confirmed prune took $(seconds "$start" "$(now)" 1) s: $(summary)"
