# Helpers the benchmark scripts share; sourced, not run.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Nanoseconds since the epoch.
now() { date +%s%N; }
# Seconds between two `now`s: seconds START END [DECIMALS, default 3].
seconds() { python3 -c "print(f'{($2 - $1) / 1e9:.${3:-3}f}')"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# Where berth serve's memory is: memory PID URL TOKEN -> "RSS MiB (anonymous N MiB, live heap
# N MiB, SQLite N MiB)": resident memory and its anonymous part (not the binary's or
# libraries' pages) from /proc, and the two memory gauges of its /metrics.
memory() {
  local rss gauges
  rss="$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$1/status") MiB (anonymous $(awk '/^Anonymous/ {print int($2/1024)}' "/proc/$1/smaps_rollup") MiB,"
  gauges=$(curl -ksf -H "Authorization: Bearer $3" "$2/metrics" \
    | awk '$1=="berth_heap_live_bytes" {a=$2} $1=="berth_sqlite_heap_bytes" {s=$2} END {printf "live heap %.1f MiB, SQLite %.1f MiB", a/1048576, s/1048576}')
  echo "$rss $gauges)"
}

# One wrk run with one thread pinned to core 1: pinned_wrk URL SCRIPT [VAR=VALUE...]
# -> "req/s p99 non2xx". SCRIPT is a file in bench/wrk.
pinned_wrk() {
  local out errors
  out=$(env "${@:3}" taskset -c 1 wrk -t1 -c32 -d"${duration}s" --latency -s "bench/wrk/$2" "$1")
  errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") ${errors:-0}"
}

# What TLS costs a set of scenarios, measured so that the noise shows: berth on core 0 and
# wrk on core 1 (on two shared cores, wrk's own TLS work would take berth's CPU), HTTP and
# HTTPS alternated ROUNDS times, every sample printed, and the cost taken from the medians.
# Usage: tls_cost ROUNDS START LOAD SCENARIO...
#   START SCHEME            (re)starts berth on that scheme, pinned to core 0; ready on return
#   LOAD SCHEME SCENARIO    one run, prints "req/s p99 non2xx" (pinned_wrk does)
tls_cost() {
  local rounds=$1 start=$2 load=$3 round scheme scenario rps p99 errors
  shift 3
  declare -A rates latencies
  for round in $(seq "$rounds"); do
    for scheme in http https; do
      "$start" "$scheme"
      for scenario in "$@"; do
        read -r rps p99 errors <<<"$("$load" "$scheme" "$scenario")"
        [ "$errors" = 0 ] || fail "$scenario over $scheme got $errors non-2xx responses"
        rates[$scheme $scenario]+="$rps "
        latencies[$scheme $scenario]+="$p99 "
      done
    done
  done
  echo
  echo "What TLS costs: berth on core 0, wrk (one thread, 32 connections) on core 1; HTTP and HTTPS alternated $rounds times"
  for scenario in "$@"; do
    python3 - "$scenario" "${rates[http $scenario]}" "${rates[https $scenario]}" \
      "${latencies[http $scenario]}" "${latencies[https $scenario]}" <<'PY'
import statistics, sys
name, http, https, http_p99, https_p99 = sys.argv[1:]
http = [float(v) for v in http.split()]
https = [float(v) for v in https.split()]
h, s = statistics.median(http), statistics.median(https)
print(f"{name}: http req/s {' '.join(f'{v:,.0f}' for v in http)} (median {h:,.0f}; p99 {http_p99.strip()})")
print(f"{' ' * len(name)}  https req/s {' '.join(f'{v:,.0f}' for v in https)} (median {s:,.0f}; p99 {https_p99.strip()})")
print(f"{' ' * len(name)}  TLS costs {(1 - s / h) * 100:.1f}% of the median request rate")
PY
  done
}
