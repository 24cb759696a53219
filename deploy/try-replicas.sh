#!/usr/bin/env bash
# Three `berth serve` replicas on this machine, sharing one catalog (a throwaway
# PostgreSQL cluster) and one blob store (s3s-fs, an S3 server on a folder), the way the
# Kubernetes manifests in deploy/kubernetes run them. For trying it out: everything
# listens on loopback, lives in one temporary folder, and stops on Ctrl-C.
#
# Usage: deploy/try-replicas.sh
#
#   BERTH=PATH        the berth binary (default: target/release/berth;
#                     cargo build --release -p berth-cli)
#   S3S_FS=PATH       s3s-fs (default: on PATH, or ~/.cargo/bin/s3s-fs;
#                     cargo install s3s-fs@0.14.1 --locked --features binary)
#   PG_BIN=DIR        PostgreSQL's programs (default: the newest /usr/lib/postgresql/*/bin;
#                     apt-get install postgresql)
#   PG_PORT, S3_PORT  their ports (default 7450 and 7451); the replicas take 7441-7443
#   KEEP=1            keep the temporary folder (data, logs) after stopping
#
# Run as root, it runs PostgreSQL as the `postgres` user (PostgreSQL refuses root).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
berth=${BERTH:-$root/target/release/berth}
s3s_fs=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
pg_bin=${PG_BIN:-$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)}
pg_port=${PG_PORT:-7450}
s3_port=${S3_PORT:-7451}
replica_ports=(7441 7442 7443)

die() {
  echo "try-replicas: $*" >&2
  exit 1
}

[ -x "$berth" ] || die "no berth binary at $berth: cargo build --release -p berth-cli, or set BERTH"
[ -x "$s3s_fs" ] || die "no s3s-fs at $s3s_fs: cargo install s3s-fs@0.14.1 --locked --features binary, or set S3S_FS"
[ -x "${pg_bin:-/nonexistent}/postgres" ] || die "no PostgreSQL under /usr/lib/postgresql: apt-get install postgresql, or set PG_BIN"
command -v curl >/dev/null || die "curl is needed to wait for the servers: apt-get install curl"
for port in "$pg_port" "$s3_port" "${replica_ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use"
  fi
done

# PostgreSQL's programs, as the postgres user when this script runs as root.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

random() {
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-replicas.XXXXXX")
chmod 755 "$work" # the postgres user reaches its folder inside
pg_dir=$work/postgres
pg_data=$pg_dir/data
berth_pids=()
s3_pid=

stop_process() { # pid, name: SIGTERM, then SIGKILL after 20 s
  local pid=$1 name=$2 waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 200 ]; then
      echo "try-replicas: $name did not stop in 20 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
}

wait_for_port() { # port, pid, name, log: until something listens there, for 10 s
  local port=$1 pid=$2 name=$3 log=$4 attempt
  for attempt in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "$name exited: $(tail -n 5 "$log")"
    sleep 0.1
  done
  die "$name does not listen on $port after 10 s: $(tail -n 5 "$log")"
}

cleanup() {
  trap - EXIT INT TERM
  echo "try-replicas: stopping"
  # The replicas first (each drains), then what they use.
  local i
  for i in "${!berth_pids[@]}"; do
    kill -TERM "${berth_pids[$i]}" 2>/dev/null || true
  done
  for i in "${!berth_pids[@]}"; do
    stop_process "${berth_pids[$i]}" "replica $((i + 1))"
  done
  if [ -n "$s3_pid" ]; then
    stop_process "$s3_pid" s3s-fs
  fi
  if [ -f "$pg_data/postmaster.pid" ]; then
    as_postgres "$pg_bin/pg_ctl" --pgdata="$pg_data" --mode=fast --wait --silent stop || true
  fi
  if [ "${KEEP:-}" = 1 ]; then
    echo "try-replicas: kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Every service runs in its own session (setsid), so that Ctrl-C reaches this script
# alone and it stops them in order.

# --- PostgreSQL: a new cluster on loopback, password authentication -------------------
pg_password=$(random)
if [ "$(id -u)" -eq 0 ]; then
  install -d -m 700 -o postgres -g postgres "$pg_dir"
else
  install -d -m 700 "$pg_dir"
fi
printf '%s\n' "$pg_password" | as_postgres tee "$pg_dir/password" >/dev/null
# In a subshell: a function's redirections stay in force while a Ctrl-C trap runs inside
# it, and would send cleanup's messages into the log.
(as_postgres "$pg_bin/initdb" --pgdata="$pg_data" --username=berth --pwfile="$pg_dir/password" \
  --auth=scram-sha-256 --encoding=UTF8 --no-locale) >"$work/initdb.log" 2>&1 ||
  die "initdb failed: $(tail -n 5 "$work/initdb.log")"
rm -f "$pg_dir/password"
printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $pg_port" "unix_socket_directories = ''" \
  >>"$pg_data/postgresql.conf"
as_postgres setsid "$pg_bin/pg_ctl" --pgdata="$pg_data" --log="$pg_dir/postgres.log" --wait --silent start ||
  die "PostgreSQL did not start: $(tail -n 5 "$pg_dir/postgres.log")"
PGPASSWORD=$pg_password "$pg_bin/createdb" --host=127.0.0.1 --port="$pg_port" --username=berth berth

# --- s3s-fs: an S3 endpoint over a folder, one bucket (a folder under its root) --------
s3_access_key=berth
s3_secret_key=$(random)
mkdir -p "$work/s3/berth"
setsid "$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key "$s3_access_key" --secret-key "$s3_secret_key" \
  "$work/s3" </dev/null >"$work/s3s-fs.log" 2>&1 &
s3_pid=$!
wait_for_port "$s3_port" "$s3_pid" s3s-fs "$work/s3s-fs.log"

# --- three replicas ---------------------------------------------------------------------
# The database URL (with its password) and the S3 credentials go through the
# environment, as the Kubernetes Secret gives them, not the command line; $work/env has
# them for later use (`. $work/env; berth serve ...` starts a fourth replica).
cat >"$work/env" <<EOF
export BERTH_DATABASE=postgres://berth:$pg_password@127.0.0.1:$pg_port/berth
export BERTH_BLOB_STORE=s3://berth/blobs
export AWS_ACCESS_KEY_ID=$s3_access_key
export AWS_SECRET_ACCESS_KEY=$s3_secret_key
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
export AWS_ALLOW_HTTP=true
EOF
chmod 600 "$work/env"
# shellcheck source=/dev/null
. "$work/env"
for i in "${!replica_ports[@]}"; do
  n=$((i + 1))
  setsid "$berth" serve --listen "127.0.0.1:${replica_ports[$i]}" --data-dir "$work/replica-$n" \
    --blob-store "$BERTH_BLOB_STORE" --no-client-config \
    </dev/null >"$work/replica-$n.log" 2>&1 &
  berth_pids+=("$!")
done
for i in "${!replica_ports[@]}"; do
  n=$((i + 1))
  for attempt in $(seq 600); do
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${replica_ports[$i]}/readyz" || true)
    [ "$status" = 200 ] && break
    kill -0 "${berth_pids[$i]}" 2>/dev/null || die "replica $n exited: $(tail -n 20 "$work/replica-$n.log")"
    [ "$attempt" -lt 600 ] || die "replica $n is not ready after 60 s: $(tail -n 20 "$work/replica-$n.log")"
    sleep 0.1
  done
done

token=$(find "$work" -maxdepth 2 -name admin.token -path "$work/replica-*" | head -n 1)
cat <<EOF

berth: ${#replica_ports[@]} replicas sharing one catalog (PostgreSQL) and one blob store (s3s-fs)

  http://127.0.0.1:${replica_ports[0]}   http://127.0.0.1:${replica_ports[1]}   http://127.0.0.1:${replica_ports[2]}

  admin token:  ${token:-(none: the first replica to start writes it, on an empty database)}
  try:          export BERTH_TOKEN=\$(cat ${token:-ADMIN_TOKEN_FILE})
                $berth --server http://127.0.0.1:${replica_ports[0]} create namespace team
                $berth --server http://127.0.0.1:${replica_ports[2]} get namespaces
                skopeo copy --dest-tls-verify=false --dest-creds "admin:\$BERTH_TOKEN" \\
                  docker://docker.io/library/alpine:3.20 docker://127.0.0.1:${replica_ports[0]}/team/alpine:3.20
                skopeo inspect --tls-verify=false --creds "admin:\$BERTH_TOKEN" \\
                  docker://127.0.0.1:${replica_ports[1]}/team/alpine:3.20
  PostgreSQL:   127.0.0.1:$pg_port, database berth, user berth (URL in $work/env)
  S3:           http://127.0.0.1:$s3_port, bucket berth (files in $work/s3/berth)
  logs:         $work/replica-{1,2,3}.log, $work/s3s-fs.log, $pg_dir/postgres.log

Stop a replica (kill PID) to see the others carry on: ${berth_pids[*]}. Ctrl-C stops everything.
EOF

# Until Ctrl-C, or until every replica has exited.
running=("${berth_pids[@]}")
while [ ${#running[@]} -gt 0 ]; do
  exited=
  status=0
  wait -n -p exited "${running[@]}" || status=$?
  [ -n "$exited" ] || continue
  echo "try-replicas: berth (pid $exited) exited with status $status"
  remaining=()
  for pid in "${running[@]}"; do
    [ "$pid" = "$exited" ] || remaining+=("$pid")
  done
  running=("${remaining[@]}")
done
