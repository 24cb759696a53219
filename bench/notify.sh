#!/usr/bin/env bash
# The notification benchmark (issue 4), run RUNS times (default 3), each on a fresh
# registry and a fresh berth data directory:
#   latency    - a registry notification (CNCF distribution envelope) POSTed to
#                /webhooks/registry -> the Subscription's signed CloudEvent received;
#                200 iterations after 10 warm-up ones, one at a time;
#   throughput - 100 Subscriptions x 1,000 tag changes (ImageStreamMappings, 8 in flight)
#                -> 100,000 deliveries, every one checked for signature, completeness, order.
# berth-bench-notify does the work (see crates/bench/src/notify.rs); this script builds the
# release binaries, runs it, and prints each run and the min / median over the runs.
#
# Usage: bench/notify.sh [RUNS]
#   NOTIFY_ARGS='--pause-ms 100' bench/notify.sh 1     passes options to berth-bench-notify
#   NOTIFY_ARGS="--perf-dir /tmp/perf" bench/notify.sh 1   records perf profiles of berth serve
#   BENCH_SMAPS=/tmp/smaps bench/notify.sh 1     keeps berth serve's /proc/PID/smaps once it has settled
#   NOTIFY_ARGS="--registry-notifies --skip-throughput" bench/notify.sh   latency with the registry's
#     own notifications: the clock starts at the manifest PUT
# Needs (Debian packages): docker-registry, python3. Installs nothing. Everything listens on
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
for tool in docker-registry python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y $tool" >&2; exit 1; }
done
cargo build --release -q -p berth-cli -p berth-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (+ uncommitted changes)')"
for run in $(seq "$runs"); do
  echo
  echo "=== run $run of $runs (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  # shellcheck disable=SC2086
  target/release/berth-bench-notify --berth target/release/berth --json "$work/run-$run.json" ${NOTIFY_ARGS:-}
  sleep 2
done

echo
python3 - "$work" "$runs" <<'EOF'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
reports = [json.load(open(f"{work}/run-{n}.json")) for n in range(1, runs + 1)]

def get(report, path):
    value = report
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value

rows = [
    ("latency p50 (ms)", "latency.ms.p50", "{:.1f}"),
    ("latency p90 (ms)", "latency.ms.p90", "{:.1f}"),
    ("latency p99 (ms)", "latency.ms.p99", "{:.1f}"),
    ("latency max (ms)", "latency.ms.max", "{:.1f}"),
    ("  iterations > 50 ms", "latency.over50ms", "{}"),
    ("  iterations > 100 ms", "latency.over100ms", "{}"),
    ("  start -> committed p50", "latency.toCommitMs.p50", "{:.1f}"),
    ("  start -> committed p99", "latency.toCommitMs.p99", "{:.1f}"),
    ("  committed -> event p50", "latency.commitToEventMs.p50", "{:.1f}"),
    ("  committed -> event p99", "latency.commitToEventMs.p99", "{:.1f}"),
    ("  202 (or PUT) answered p50 (ms)", "latency.acceptMs.p50", "{:.2f}"),
    ("  berth CPU ms / iteration", "latency.berthCpuMsPerIteration", "{:.1f}"),
    ("deliveries / s", "throughput.deliveriesPerSecond", "{:,.0f}"),
    ("  first write -> 100,000th (s)", "throughput.deliverySeconds", "{:.2f}"),
    ("  1,000 changes written (s)", "throughput.writeSeconds", "{:.2f}"),
    ("  first delivery after (ms)", "throughput.firstDeliveryMs", "{:.1f}"),
    ("  duplicates", "throughput.duplicates", "{}"),
    ("  out of order", "throughput.outOfOrder", "{}"),
    ("  berth CPU (s)", "throughput.berthCpuSeconds", "{:.2f}"),
    ("  generator CPU (s)", "throughput.generatorCpuSeconds", "{:.2f}"),
    ("  cores busy (%)", "throughput.busyPercent", "{:.0f}"),
    ("RSS before throughput (MiB)", "throughput.rssBeforeMiB", "{}"),
    ("RSS after throughput (MiB)", "throughput.rssAfterMiB", "{}"),
    ("RSS 10 s after throughput (MiB)", "throughput.rssSettledMiB", "{}"),
    ("  of which anonymous (MiB)", "throughput.anonymousSettledMiB", "{}"),
    ("  live heap (MiB)", "throughput.liveHeapSettledMiB", "{:.1f}"),
    ("  SQLite heap (MiB)", "throughput.sqliteHeapSettledMiB", "{:.1f}"),
    ("RSS idle, at the start (MiB)", "rssIdleMiB", "{}"),
    ("RSS peak (MiB)", "hwmMiB", "{}"),
    ("bad signatures", "badSignatures", "{}"),
]
header = f"{'':34}" + "".join(f"{'run ' + str(n):>10}" for n in range(1, runs + 1)) + f"{'min':>10}{'median':>10}"
print(header)
for label, path, fmt in rows:
    values = [get(r, path) for r in reports]
    cells = ["-" if v is None else fmt.format(v) for v in values]
    numbers = [v for v in values if isinstance(v, (int, float))]
    summary = [fmt.format(min(numbers)), fmt.format(statistics.median(numbers))] if numbers else ["-", "-"]
    print(f"{label:34}" + "".join(f"{c:>10}" for c in cells) + "".join(f"{c:>10}" for c in summary))
complete = [get(r, "throughput.complete") for r in reports]
print(f"\nevery subscription got every event, in order, in every run: {all(complete) and all(get(r, 'throughput.outOfOrder') == 0 for r in reports)}")
print("targets: latency p99 < 100 ms on loopback; >= 2,000 deliveries/s with 100 subscriptions x 1,000 events")
EOF
