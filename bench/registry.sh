#!/usr/bin/env bash
# The registry benchmark (issue 5): berth's /v2/ side by side with the CNCF distribution
# registry (`docker-registry` 2.8.2 from Debian) on this machine, in the same run, with the
# same images and the same load generators:
#   1. push of a 3-layer 64 MiB image with skopeo (a fresh repository each run),
#   2. manifest GET by tag (100 tags) and by digest with wrk (req/s, p99),
#   3. GET of a 64 MiB blob with wrk at 4 and at 32 connections (MB/s, p99),
#   4. pull-through, cold then warm (median of 5, alternating), with skopeo: berth pulling
#      through from an origin distribution registry vs. distribution configured as a proxy
#      of the same origin,
#   5. resident memory of berth and of distribution after the load (peak and current),
#   6. what TLS costs the manifest GETs: berth over HTTP and over HTTPS (its self-signed
#      certificate; TLS 1.3 on keep-alive connections), alternated three times, berth pinned
#      to one core and wrk to the other (see tls_cost in bench/lib.sh).
# berth runs with its defaults (`--sync full`: blobs and commits are fsynced before they are
# acknowledged); distribution with its filesystem driver (no fsync).
#
# Usage: bench/registry.sh [SECONDS_PER_WRK_RUN] [PUSH_RUNS]
# Needs (Debian packages): docker-registry, skopeo, wrk, jq, curl, python3, util-linux. Installs
# nothing. Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
push_runs=${2:-3}
for tool in docker-registry skopeo wrk jq curl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y $tool" >&2; exit 1; }
done
cargo build --release -q -p berth-cli
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source bench/lib.sh
mem() { awk -v k="$2" '$1 == k":" {print int($2/1024)}' "/proc/$1/status"; }   # MiB of VmRSS / VmHWM

# A distribution registry: filesystem storage in $work/<name>, optionally a proxy of $2.
start_registry() {
  local name=$1 upstream=${2:-} port
  port=$(free_port)
  {
    echo "version: 0.1"
    echo "log: {level: error, accesslog: {disabled: true}}"
    echo "storage: {filesystem: {rootdirectory: $work/$name}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port, secret: berth-bench}"
    [ -n "$upstream" ] && echo "proxy: {remoteurl: http://$upstream}"
  } >"$work/$name.yml"
  env $(env | awk -F= '/^REGISTRY_/ {print "-u " $1}') docker-registry serve "$work/$name.yml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  eval "${name}_pid=$!"
  for _ in $(seq 500); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.02; done
  curl -sf "http://127.0.0.1:$port/v2/" >/dev/null || { cat "$work/$name.log" >&2; fail "docker-registry ($name) did not start"; }
  eval "${name}=127.0.0.1:$port"
}

# The images, as OCI layouts: "big" (3 layers, 64 MiB in all) and "small" (one 4 KiB layer),
# and a lone 64 MiB blob. Layers are random bytes, so skopeo copies need
# --preserve-digests (it would otherwise compress them).
python3 - "$work" "$push_runs" <<'EOF'
import hashlib, json, os, sys
work = sys.argv[1]
def write_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{layout}/blobs/sha256", exist_ok=True)
    with open(f"{layout}/blobs/sha256/{digest}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}
def layout(name, layers):
    path = f"{work}/{name}"
    diff_ids = [f"sha256:{hashlib.sha256(l).hexdigest()}" for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin"], "Labels": {"bench": name}},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **write_blob(path, config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **write_blob(path, l)} for l in layers]}
    manifest_bytes = json.dumps(manifest).encode()
    descriptor = {"mediaType": manifest["mediaType"], **write_blob(path, manifest_bytes), "annotations": {"org.opencontainers.image.ref.name": "latest"}}
    with open(f"{path}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [descriptor]}, f)
    with open(f"{path}/oci-layout", "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(f"{work}/{name}.manifest", "wb") as f:
        f.write(manifest_bytes)
    with open(f"{work}/{name}.digest", "w") as f:
        f.write(descriptor["digest"])
third = 64 * 1024 * 1024 // 3
big = lambda: [os.urandom(third), os.urandom(third), os.urandom(64 * 1024 * 1024 - 2 * third)]
layout("big", big())
# One image per push run and registry: skopeo remembers where it pushed a blob and mounts
# it instead of sending it again, which would time a mount, not a push.
for run in range(1, int(sys.argv[2]) + 1):
    layout(f"push-berth-{run}", big())
    layout(f"push-distribution-{run}", big())
layout("small", [os.urandom(4096)])
blob = os.urandom(64 * 1024 * 1024)
with open(f"{work}/blob", "wb") as f:
    f.write(blob)
with open(f"{work}/blob.digest", "w") as f:
    f.write("sha256:" + hashlib.sha256(blob).hexdigest())
EOF

start_registry distribution
start_registry origin
start_registry proxy "$origin"
port=$(free_port)
berth=127.0.0.1:$port
printf 'import:\n  allowedRegistries: ["127.0.0.1:*"]\n  insecureRegistries: ["127.0.0.1:*"]\n' >"$work/server.yml"
target/release/berth serve --data-dir "$work/berth" --listen "$berth" --no-client-config --server-config "$work/server.yml" \
  2>"$work/berth.log" &
berth_pid=$!
pids+=($berth_pid)
for _ in $(seq 500); do curl -sf "http://$berth/readyz" >/dev/null && break; sleep 0.01; done
curl -sf "http://$berth/readyz" >/dev/null || { cat "$work/berth.log" >&2; fail "berth serve did not start"; }
token=$(cat "$work/berth/admin.token")
export BERTH_SERVER="http://$berth" BERTH_TOKEN="$token" BERTH_CONFIG="$work/client.yaml"
target/release/berth create namespace bench >/dev/null
creds=(--dest-creds "bench:$token")

# 1. Push: a fresh repository per run, so no blob is already there.
push() {  # layout registry dest-args... -> seconds
  local start end
  start=$(now)
  skopeo copy -q --preserve-digests --dest-tls-verify=false "${@:3}" "oci:$work/$1:latest" "docker://$2" >/dev/null
  end=$(now)
  seconds "$start" "$end" 2
}
push_berth=() push_dist=()
for run in $(seq "$push_runs"); do
  push_dist+=("$(push "push-distribution-$run" "$distribution/bench/big$run:latest")")
  push_berth+=("$(push "push-berth-$run" "$berth/bench/big$run:latest" "${creds[@]}")")
done
rss_push=$(mem "$berth_pid" VmHWM)
pushed_digest=$(cat "$work/push-berth-1.digest")
[ "$(target/release/berth get istag big1:latest -n bench -o json | jq -r .image.metadata.name)" = "$pushed_digest" ] \
  || fail "the push to berth did not land as big1:latest at $pushed_digest"

# 2. Manifest GET: the small image under 100 tags in each registry.
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$work/small:latest" "docker://$distribution/bench/small:t0" >/dev/null
skopeo copy -q --preserve-digests --dest-tls-verify=false "${creds[@]}" "oci:$work/small:latest" "docker://$berth/bench/small:t0" >/dev/null
small_type=application/vnd.oci.image.manifest.v1+json
for tag in $(seq 1 99); do
  curl -sf -X PUT -H "Content-Type: $small_type" --data-binary "@$work/small.manifest" "http://$distribution/v2/bench/small/manifests/t$tag" >/dev/null
  curl -sf -X PUT -H "Content-Type: $small_type" -H "Authorization: Bearer $token" --data-binary "@$work/small.manifest" \
    "http://$berth/v2/bench/small/manifests/t$tag" >/dev/null
done
small_digest=$(cat "$work/small.digest")
export BENCH_WRK_DIR="$PWD/bench/wrk"
scheme=http
load() {  # script connections host token extra-env... -> "req/s p99 transfer/s non2xx"
  local out
  out=$(env BENCH_TOKEN="$4" "${@:5}" wrk -t2 -c"$2" -d"${duration}s" --latency -s "bench/wrk/$1" "$scheme://$3")
  local rps p99 transfer errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  transfer=$(awk '/Transfer\/sec/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$rps $p99 $transfer ${errors:-0}"
}
by_tag_dist=$(load manifest.lua 32 "$distribution" "" BENCH_REPO=bench/small BENCH_TAGS=100)
by_tag_berth=$(load manifest.lua 32 "$berth" "$token" BENCH_REPO=bench/small BENCH_TAGS=100)
by_digest_dist=$(load manifest.lua 32 "$distribution" "" BENCH_REPO=bench/small BENCH_DIGEST="$small_digest")
by_digest_berth=$(load manifest.lua 32 "$berth" "$token" BENCH_REPO=bench/small BENCH_DIGEST="$small_digest")
rss_manifests=$(mem "$berth_pid" VmHWM)

# 3. A 64 MiB blob, pushed in one request (POST, then PUT with the bytes).
blob_digest=$(cat "$work/blob.digest")
upload_blob() {  # host auth-header...
  local location
  location=$(curl -sf -D - -o /dev/null -X POST "${@:2}" "http://$1/v2/bench/blob/blobs/uploads/" | awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
  case "$location" in http*) ;; *) location="http://$1$location" ;; esac
  case "$location" in *\?*) location="$location&digest=$blob_digest" ;; *) location="$location?digest=$blob_digest" ;; esac
  curl -sf -X PUT "${@:2}" -H "Content-Type: application/octet-stream" --data-binary "@$work/blob" "$location" >/dev/null
}
upload_blob "$distribution"
upload_blob "$berth" -H "Authorization: Bearer $token"
blob_dist=$(load blob.lua 4 "$distribution" "" BENCH_REPO=bench/blob BENCH_DIGEST="$blob_digest")
blob_berth=$(load blob.lua 4 "$berth" "$token" BENCH_REPO=bench/blob BENCH_DIGEST="$blob_digest")
# As many clients as the manifest runs: a fleet pulling a layer at once.
blob32_dist=$(load blob.lua 32 "$distribution" "" BENCH_REPO=bench/blob BENCH_DIGEST="$blob_digest")
blob32_berth=$(load blob.lua 32 "$berth" "$token" BENCH_REPO=bench/blob BENCH_DIGEST="$blob_digest")
rss_blob=$(mem "$berth_pid" VmHWM)

# 4. Pull-through of the big image from the origin: cold (nothing local), then warm.
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$work/big:latest" "docker://$origin/lib/pt:1" >/dev/null
target/release/berth tag --source=docker "$origin/lib/pt:1" pt:1 -n bench --insecure >/dev/null
pull() {  # source src-args... -> seconds
  local start end dir
  dir=$(mktemp -d -p "$work")
  start=$(now)
  skopeo copy -q --src-tls-verify=false "${@:2}" "docker://$1" "dir:$dir" >/dev/null
  end=$(now)
  cmp -s "$dir/manifest.json" "$work/big.manifest" || fail "the pull of $1 gave another manifest"
  rm -rf "$dir"
  seconds "$start" "$end" 2
}
cold_dist=$(pull "$proxy/lib/pt:1")
cold_berth=$(pull "$berth/bench/pt:1" --src-creds "bench:$token")
# Warm pulls take ~0.4 s, mostly skopeo hashing and writing 64 MiB, so one sample is
# noise: five of each, alternating, and the median.
warm_dists=() warm_berths=()
for _ in 1 2 3 4 5; do
  warm_dists+=("$(pull "$proxy/lib/pt:1")")
  warm_berths+=("$(pull "$berth/bench/pt:1" --src-creds "bench:$token")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
warm_dist=$(median "${warm_dists[@]}")
warm_berth=$(median "${warm_berths[@]}")

berth_hwm=$(mem "$berth_pid" VmHWM) berth_rss=$(mem "$berth_pid" VmRSS) berth_anon=$(mem "$berth_pid" RssAnon)
dist_hwm=$(mem "$distribution_pid" VmHWM) dist_rss=$(mem "$distribution_pid" VmRSS) dist_anon=$(mem "$distribution_pid" RssAnon)
proxy_hwm=$(mem "$proxy_pid" VmHWM)

# 6. What TLS costs the manifest GETs (printed at the end).
start_pinned() {  # scheme
  kill "$berth_pid"; wait "$berth_pid" 2>/dev/null || true
  local flags=(); [ "$1" = https ] && flags=(--tls self-signed)
  taskset -c 0 target/release/berth serve --data-dir "$work/berth" --listen "$berth" --no-client-config \
    --server-config "$work/server.yml" "${flags[@]}" 2>"$work/berth-$1.log" &
  berth_pid=$!
  pids+=($berth_pid)
  for _ in $(seq 500); do curl -ksf "$1://$berth/readyz" >/dev/null && break; sleep 0.01; done
  curl -ksf "$1://$berth/readyz" >/dev/null || { cat "$work/berth-$1.log" >&2; fail "berth serve ($1) did not start"; }
}
load_pinned() {  # scheme by-tag|by-digest
  local select=BENCH_TAGS=100; [ "$2" = by-digest ] && select=BENCH_DIGEST=$small_digest
  pinned_wrk "$1://$berth" manifest.lua BENCH_TOKEN="$token" BENCH_REPO=bench/small "$select"
}
tls_cost 3 start_pinned load_pinned by-tag by-digest >"$work/tls-cost.txt"

mbps() { python3 -c "
v = '$1'; units = {'KB': 1 / 1024, 'MB': 1, 'GB': 1024}
print(f'{float(v[:-2]) * units[v[-2:]]:.0f}')"; }
ratio() { python3 -c "print(f'{float(\"$1\") / float(\"$2\"):.2f}')"; }
col() { awk -v n="$2" '{print $n}' <<<"$1"; }

echo
echo "docker-registry $(docker-registry --version | awk '{print $NF}'), skopeo $(skopeo --version | awk '{print $NF}'), $(nproc) cores, wrk ${duration}s per run"
fmt='%-40s %14s %14s %8s\n'
printf "\n$fmt" measure berth distribution ratio
printf "$fmt" "manifest GET by tag, req/s (c=32)" "$(col "$by_tag_berth" 1)" "$(col "$by_tag_dist" 1)" "$(ratio "$(col "$by_tag_berth" 1)" "$(col "$by_tag_dist" 1)")"
printf "$fmt" "  p99" "$(col "$by_tag_berth" 2)" "$(col "$by_tag_dist" 2)" ""
printf "$fmt" "manifest GET by digest, req/s (c=32)" "$(col "$by_digest_berth" 1)" "$(col "$by_digest_dist" 1)" "$(ratio "$(col "$by_digest_berth" 1)" "$(col "$by_digest_dist" 1)")"
printf "$fmt" "  p99" "$(col "$by_digest_berth" 2)" "$(col "$by_digest_dist" 2)" ""
printf "$fmt" "64 MiB blob GET, MB/s (c=4)" "$(mbps "$(col "$blob_berth" 3)")" "$(mbps "$(col "$blob_dist" 3)")" "$(ratio "$(mbps "$(col "$blob_berth" 3)")" "$(mbps "$(col "$blob_dist" 3)")")"
printf "$fmt" "  p99" "$(col "$blob_berth" 2)" "$(col "$blob_dist" 2)" ""
printf "$fmt" "64 MiB blob GET, MB/s (c=32)" "$(mbps "$(col "$blob32_berth" 3)")" "$(mbps "$(col "$blob32_dist" 3)")" "$(ratio "$(mbps "$(col "$blob32_berth" 3)")" "$(mbps "$(col "$blob32_dist" 3)")")"
printf "$fmt" "  p99" "$(col "$blob32_berth" 2)" "$(col "$blob32_dist" 2)" ""
printf "$fmt" "push 3 layers / 64 MiB (skopeo), s" "$(tr ' ' / <<<"${push_berth[*]}")" "$(tr ' ' / <<<"${push_dist[*]}")" ""
printf "$fmt" "pull-through cold (skopeo), s" "$cold_berth" "$cold_dist (proxy)" ""
printf "$fmt" "pull-through warm (skopeo, median of 5), s" "$warm_berth" "$warm_dist (proxy)" ""
echo "(warm pulls, in order: berth ${warm_berths[*]}; distribution proxy ${warm_dists[*]})"
printf "$fmt" "resident memory peak / now, MiB" "$berth_hwm / $berth_rss" "$dist_hwm / $dist_rss" ""
printf "$fmt" "  of it the process's own (anonymous) now" "$berth_anon" "$dist_anon" ""
echo "(berth serves blobs from shared read-only mappings of their files, which count as resident page cache while mapped)"
echo "(the proxy registry's peak: $proxy_hwm MiB; berth's peak after the pushes $rss_push MiB, the manifest GETs $rss_manifests MiB, the blob GETs $rss_blob MiB)"
errors="$(col "$by_tag_berth" 4) $(col "$by_tag_dist" 4) $(col "$by_digest_berth" 4) $(col "$by_digest_dist" 4) $(col "$blob_berth" 4) $(col "$blob_dist" 4) $(col "$blob32_berth" 4) $(col "$blob32_dist" 4)"
cat "$work/tls-cost.txt"
echo "non-2xx responses per wrk run (berth/distribution: tag, digest, blob c=4, blob c=32): $errors"
for e in $errors; do [ "$e" = 0 ] || fail "a load run got non-2xx responses"; done
