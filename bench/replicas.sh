#!/usr/bin/env bash
# The scale-out benchmark (issue 16): berth on PostgreSQL + S3 with 1, 2 and 3 replicas
# beside the single server on its embedded SQLite store, in the same run, on the same
# catalog (10,000 image streams x 10 tags x 5 history entries, seeded into both stores)
# and the same image pushed under 100 tags:
#   - GET imagestreamtag, and manifest GET by tag, at 32 connections in all (with several
#     replicas, one wrk per replica sharing the 32; the rate is their sum, the p99 the
#     worst of theirs);
#   - durable tag updates (ImageStreamMappings), on SQLite and on PostgreSQL with 1 and 3
#     replicas.
# Everything runs on this machine's cores: with 2 cores, more replicas share the same two
# cores with PostgreSQL and wrk, so the figures show what PostgreSQL and replication cost,
# not how berth scales across machines.
#
# Usage: bench/replicas.sh [SECONDS_PER_RUN]
# Needs: wrk, curl, python3, postgresql (Debian), s3s-fs (cargo install s3s-fs@0.14.1
# --locked --features binary; scripts/test installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
for tool in wrk curl python3; do command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y wrk curl python3" >&2; exit 1; }; done
s3s_fs=$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")
[ -x "$s3s_fs" ] || { echo "s3s-fs is needed: cargo install s3s-fs@0.14.1 --locked --features binary" >&2; exit 1; }
pg_bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[ -x "${pg_bin:-/nonexistent}/postgres" ] || { echo "PostgreSQL is needed: apt-get install -y postgresql" >&2; exit 1; }
cargo build --release -q -p berth-cli -p berth-bench

source bench/lib.sh
work=$(mktemp -d)
chmod 755 "$work"
pids=()
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_servers() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; pids=(); }
cleanup() {
  stop_servers
  [ -n "${s3_pid:-}" ] && kill "$s3_pid" 2>/dev/null
  [ -f "$work/pg/PG_VERSION" ] && as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL with its defaults (fsync and synchronous commit on: every acknowledged write
# is on disk, as on SQLite with --sync full), on loopback.
pg_port=$(free_port)
install -d -m 700 "$work/pg"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$work/pg"
as_postgres "$pg_bin/initdb" -D "$work/pg" -U berth -A trust -E UTF8 --no-locale >"$work/initdb.log" 2>&1 || fail "initdb: $(tail -3 "$work/initdb.log")"
as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work/pg -c max_connections=200" start >/dev/null
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U berth berth
# Not exported: berth serve reads $BERTH_DATABASE, and the SQLite server must not.
database="postgres://berth@127.0.0.1:$pg_port/berth"

# s3s-fs with one bucket.
s3_port=$(free_port)
mkdir -p "$work/s3/berth"
"$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret "$work/s3" >"$work/s3.log" 2>&1 &
s3_pid=$!
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_ALLOW_HTTP=true

# The same catalog in both stores.
read -r -a seed <<<"${BENCH_SEED:-}"   # extra berth-bench-seed arguments (a smaller catalog)
start=$(now); target/release/berth-bench-seed --data-dir "$work/sqlite" "${seed[@]}"; echo "seeded SQLite in $(seconds "$start" "$(now)" 1) s"
mkdir -p "$work/seed-pg"
start=$(now); target/release/berth-bench-seed --data-dir "$work/seed-pg" --database "$database" "${seed[@]}"; echo "seeded PostgreSQL in $(seconds "$start" "$(now)" 1) s"
echo "stores: SQLite $(du -sh "$work/sqlite" | cut -f1), PostgreSQL $(as_postgres psql -h 127.0.0.1 -p "$pg_port" -U berth -tAc "select pg_size_pretty(pg_database_size('berth'))" berth)"

# Starts berth on the SQLite store (replicas=0) or N replicas on PostgreSQL + S3; sets urls.
urls=()
serve() {
  stop_servers
  urls=()
  local n=$1 i port dir
  for i in $(seq "$(( n == 0 ? 1 : n ))"); do
    port=$(free_port)
    if [ "$n" = 0 ]; then
      dir=$work/sqlite
      target/release/berth serve --data-dir "$dir" --listen "127.0.0.1:$port" --no-client-config 2>"$work/serve-sqlite.log" &
    else
      dir=$work/replica-$i
      target/release/berth serve --data-dir "$dir" --database "$database" --blob-store s3://berth/blobs \
        --listen "127.0.0.1:$port" --no-client-config 2>"$work/serve-$i.log" &
    fi
    pids+=("$!")
    urls+=("http://127.0.0.1:$port")
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.02; done
  done
  # Each server loads its storage and lineage indexes from a scan of the store once it
  # serves; the measures start after that, on servers at rest.
  local log
  for log in "$work"/serve-*.log; do
    until grep -q "storage index loaded" "$log" && grep -q "lineage index loaded" "$log"; do sleep 0.1; done
  done
}

# One image under tags t0..t99 in ns-000/small, pushed through the first server.
push_small() {  # url token
  local host=${1#http://} token=$2 layer config digest
  layer=$(head -c 4096 /dev/urandom | tee "$work/layer" | sha256sum | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$layer" >"$work/config"
  config=$(sha256sum "$work/config" | cut -d' ' -f1)
  for blob in layer config; do
    digest=$(sha256sum "$work/$blob" | cut -d' ' -f1)
    curl -sf -X POST -H "Authorization: Bearer $token" --data-binary "@$work/$blob" \
      "http://$host/v2/ns-000/small/blobs/uploads/?digest=sha256:$digest" >/dev/null || fail "pushing the $blob"
  done
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":4096}]}' \
    "$config" "$(stat -c %s "$work/config")" "$layer" >"$work/manifest"
  for tag in $(seq 0 99); do
    curl -sf -X PUT -H "Authorization: Bearer $token" -H "Content-Type: application/vnd.oci.image.manifest.v1+json" \
      --data-binary "@$work/manifest" "http://$host/v2/ns-000/small/manifests/t$tag" >/dev/null || fail "pushing tag t$tag"
  done
}

export BENCH_WRK_DIR="$PWD/bench/wrk"
# 32 connections spread over the servers: one wrk each, at once. Prints "req/s p99 non2xx".
load() {  # script VAR=VALUE...
  local i n=${#urls[@]} conns loaders=()
  for i in "${!urls[@]}"; do
    conns=$(( 32 / n + (i < 32 % n ? 1 : 0) ))
    env "${@:2}" wrk -t1 -c"$conns" -d"${duration}s" --latency -s "bench/wrk/$1" "${urls[$i]}" >"$work/wrk-$i.out" &
    loaders+=("$!")
  done
  wait "${loaders[@]}"
  python3 - "$work" "$n" <<'PY'
import re, sys
work, n = sys.argv[1], int(sys.argv[2])
def ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rate, p99, errors = 0.0, 0.0, 0
for i in range(n):
    out = open(f"{work}/wrk-{i}.out").read()
    rate += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = max(p99, ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(m.group(1)) if m else 0
print(f"{rate:.0f} {p99:.2f}ms {errors}")
PY
}

results=()
measure() {  # label scenario-script VAR=VALUE...
  local label=$1 rps p99 errors
  read -r rps p99 errors <<<"$(load "${@:2}")"
  [ "$errors" = 0 ] || fail "$label: $errors non-2xx responses"
  results+=("$(printf '%-34s %10s %10s' "$label" "$rps" "$p99")")
  echo "${results[-1]}"
}

printf '\n%-34s %10s %10s\n' "run (32 connections in all)" "req/s" "p99"
for setup in 0 1 2 3; do
  serve "$setup"
  # The first server on each store wrote its admin token.
  if [ "$setup" = 0 ]; then token=$(cat "$work/sqlite/admin.token"); else token=$(cat "$work/replica-1/admin.token"); fi
  export BERTH_TOKEN=$token
  if [ "$setup" -le 1 ]; then push_small "${urls[0]}" "$token"; fi
  name=$([ "$setup" = 0 ] && echo "SQLite, 1 server" || echo "PostgreSQL+S3, $setup replica(s)")
  # A short run first, not counted: connections made, caches and statements warm.
  duration=3 load get-istag.lua >/dev/null
  measure "$name: GET istag" get-istag.lua
  measure "$name: GET manifest" manifest.lua BENCH_TOKEN="$token" BENCH_REPO=ns-000/small BENCH_TAGS=100
  if [ "$setup" != 2 ]; then
    measure "$name: tag update" tag-update.lua
  fi
done
