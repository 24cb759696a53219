#!/usr/bin/env bash
# The admission benchmark (issue 13): a store of 100,000 images, 10,000 image streams
# (100 namespaces x 100 streams x 10 tags tracking external images) and 1,000
# ImagePolicies; `berth serve --tls self-signed` pinned to core 0, and the load generator
# (berth-bench-admission, pinned to core 1) sending the validating webhook AdmissionReviews
# of Pods over HTTPS, as the Kubernetes API server does. Every review resolves its image
# through the namespace's streams and is judged by the ~10 rules that apply to it of the
# 1,000. Three runs each of: an open loop at 2,000 reviews/s (latency from when each
# review was due), and a closed loop at 32 connections (the most berth answers).
#
# Usage: bench/admission.sh [SECONDS_PER_RUN]   (needs taskset: apt-get install util-linux)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15}
command -v taskset >/dev/null || { echo "taskset is needed: apt-get install -y util-linux" >&2; exit 1; }
cargo build --release -q -p berth-cli -p berth-bench
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
source bench/lib.sh

started=$(now)
target/release/berth-bench-seed --data-dir "$work/data" --images 100000 --policies 1000
echo "seeding took $(seconds "$started" "$(now)" 1) s; store size $(du -sh "$work/data" | cut -f1)"
port=$(free_port)
url="https://127.0.0.1:$port"
started=$(now)
taskset -c 0 target/release/berth serve --data-dir "$work/data" --listen "127.0.0.1:$port" --no-client-config --tls self-signed \
  2>"$work/serve.log" &
pid=$!
until curl -ksf "$url/readyz" >/dev/null; do sleep 0.01; done
echo "start-up on the seeded store: $(seconds "$started" "$(now)" 2) s"
export BERTH_TOKEN=$(cat "$work/data/admin.token")
load() { taskset -c 1 target/release/berth-bench-admission --url "$url" --ca "$work/data/tls/ca.crt" --seconds "$duration" "$@"; }
for run in 1 2 3; do
  load --rate 2000
  load --rate 0 --connections 32
done
echo "resident memory after the runs: $(awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status") MiB (peak $(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status") MiB)"
