#!/usr/bin/env bash
# The import benchmark (issue 3): one repository of 500 tags over 100 distinct images in a
# local CNCF distribution registry (`docker-registry` 2.8.2), and
#   1. `berth import-image app --from=REGISTRY/bench/app --all --confirm` into an empty store,
#   2. the same import again when nothing changed upstream,
#   3. the wire's floor for step 2: the same requests (the tag list, a HEAD per tag) sent by
#      curl, 16 in flight (berth's default cap per registry) on kept-alive connections;
#   4. `skopeo inspect` of each tag in a shell loop, as a user would script it.
# Prints seconds and registry requests (counted in the registry's access log) per phase,
# the speed-up of berth's first import over the skopeo loop, and berth's resident memory.
#
# Usage: bench/import.sh
#   IMPORT_EXTRA='limits: {requestsPerSecond: 0, maxConcurrentRequests: 64}' bench/import.sh
#   adds a line to the server config's `import` section (by default none: every import
#   setting but the two the benchmark needs keeps its default).
# Needs (Debian packages): docker-registry, skopeo, jq, curl (7.66 or later, for --parallel),
# python3. Installs nothing.
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in docker-registry skopeo jq curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y $tool" >&2; exit 1; }
done
cargo build --release -q -p berth-cli -p berth-bench
images=100 tags=500 repository=bench/app
work=$(mktemp -d)
registry_pid="" server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
source bench/lib.sh
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$server_pid/status"; }   # MiB
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system time, in clock ticks
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }   # busy, all ticks
# "registry berth other busy%": CPU seconds of the registry, of berth serve and of every other
# process (the CLI, skopeo, anything else running), and how busy the machine's cores were.
cpu_use() {  # registry_ticks_before registry_after berth_before berth_after "busy before" "busy after"
  python3 -c "
hz = $(getconf CLK_TCK); (b0, t0), (b1, t1) = map(int, '$5'.split()), map(int, '$6'.split())
r, b = ($2 - $1) / hz, ($4 - $3) / hz
print(f'{r:.2f} {b:.2f} {(b1 - b0) / hz - r - b:.2f} {100 * (b1 - b0) / max(1, t1 - t0):.0f}%')"
}

# The registry: filesystem storage in $work, one access-log line per request.
registry_port=$(free_port)
registry="127.0.0.1:$registry_port"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $registry
  secret: berth-bench
health:
  storagedriver:
    enabled: false
EOF
# REGISTRY_* variables would override the config file.
env $(env | awk -F= '/^REGISTRY_/ {print "-u " $1}') docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 500); do curl -sf "http://$registry/v2/" >/dev/null && break; sleep 0.02; done
curl -sf "http://$registry/v2/" >/dev/null || { cat "$work/registry.log" >&2; fail "docker-registry did not start"; }

target/release/berth-bench-registry-seed --registry "$registry" --repository "$repository" --images "$images" --tags "$tags"
upstream_tags=$(curl -sf "http://$registry/v2/$repository/tags/list" | jq '.tags | length')
[ "$upstream_tags" -eq "$tags" ] || fail "the registry lists $upstream_tags tags, not $tags"
# For phase 3: one HEAD per tag, as curl's config.
curl -sf "http://$registry/v2/$repository/tags/list?n=1000" | jq -r '.tags[]' \
  | awk -v base="http://$registry/v2/$repository/manifests/" '{print "url = \"" base $0 "\""}' >"$work/heads.cfg"

# Registry requests: the access-log lines (`127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 ...`),
# one per request whatever its status. A phase counts the lines the log gained while it ran.
mark() { sleep 0.3; wc -l <"$work/registry.log"; }   # the access line follows the response
access_lines() { sed -n "$(($1 + 1)),$2p" "$work/registry.log" | grep -E '^[^ ]+ - [^ ]+ \[[^]]+\] "[A-Z]+ /' || true; }
requests() { access_lines "$1" "$2" | wc -l; }
# Requests for a method and path already requested in the same phase.
repeated() { access_lines "$1" "$2" | awk '{split($0, q, "\""); if (seen[q[2]]++) n++} END {print n + 0}'; }
# What the requests were: method, kind (manifest, blob, tags/list, the /v2/ ping) and status.
breakdown() {
  access_lines "$1" "$2" | awk '{
    split($0, q, "\""); split(q[2], r, " "); split(q[3], s, " ")
    kind = r[2]; sub(/\?.*/, "", kind)
    if (kind ~ /\/manifests\//) kind = "manifest"; else if (kind ~ /\/blobs\//) kind = "blob"
    else if (kind ~ /\/tags\/list$/) kind = "tags/list"; else if (kind == "/v2/") kind = "ping"
    n[r[1] " " kind " " s[1]]++
  } END { for (k in n) printf "    %-24s %5d\n", k, n[k] }' | sort
}

# berth serve on an empty data directory, importing from the registry over plain HTTP with
# no cap on the tags of a repository; every other import setting is the default
# (limits per registry: 500 requests/s, burst 500, 16 in flight) unless IMPORT_EXTRA says.
cat >"$work/server.yml" <<EOF
import:
  allowedRegistries: ["127.0.0.1:*"]
  insecureRegistries: ["127.0.0.1:*"]
  maxImagesBulkImportedPerRepository: -1
  ${IMPORT_EXTRA:-}
EOF
port=$(free_port)
export BERTH_SERVER="http://127.0.0.1:$port" BERTH_CONFIG="$work/client.yaml"
target/release/berth serve --data-dir "$work/data" --listen "127.0.0.1:$port" --no-client-config \
  --server-config "$work/server.yml" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 500); do curl -sf "$BERTH_SERVER/readyz" >/dev/null && break; sleep 0.01; done
curl -sf "$BERTH_SERVER/readyz" >/dev/null || { cat "$work/serve.log" >&2; fail "berth serve did not start"; }
export BERTH_TOKEN=$(cat "$work/data/admin.token")
target/release/berth create namespace bench >/dev/null

import() {
  target/release/berth import-image app --from="$registry/$repository" --all --confirm -n bench >"$work/import-$1.out" 2>&1 \
    || { cat "$work/import-$1.out" "$work/serve.log" >&2; fail "berth import-image ($1) failed"; }
}
# Every tag imported, the 100 images among them, and (after the re-import) no new history.
check_stream() {
  target/release/berth get is app -n bench -o json >"$work/stream.json"
  local got distinct deepest
  got=$(jq '[.status.tags[]? | select((.items // []) | length > 0)] | length' "$work/stream.json")
  distinct=$(jq '[.status.tags[]?.items[0].image] | unique | length' "$work/stream.json")
  deepest=$(jq '[.status.tags[]? | (.items // []) | length] | max' "$work/stream.json")
  [ "$got" -eq "$tags" ] || { tail -20 "$work/import-$1.out" >&2; fail "$1: $got of $tags tags imported"; }
  [ "$distinct" -eq "$images" ] || fail "$1: the tags point at $distinct images, not $images"
  [ "$deepest" -eq 1 ] || fail "$1: a tag has $deepest history entries; nothing changed upstream, so each should have 1"
  local failed
  failed=$(jq '[.status.tags[]? | .conditions[]? | select(.status == "False")] | length' "$work/stream.json")
  [ "$failed" -eq 0 ] || fail "$1: $failed tags have a failed import condition"
}

# 1. The first import, into an empty store.
rss_idle=$(rss); mem_idle=$(memory "$server_pid" "$BERTH_SERVER" "$BERTH_TOKEN")
from=$(mark); cpu_r=$(cpu "$registry_pid"); cpu_b=$(cpu "$server_pid"); busy0=$(busy); start=$(now)
import first
end=$(now); busy1=$(busy); cpu_r1=$(cpu "$registry_pid"); cpu_b1=$(cpu "$server_pid"); to=$(mark)
first_s=$(seconds "$start" "$end"); first_req=$(requests "$from" "$to"); first_kinds=$(breakdown "$from" "$to"); first_rep=$(repeated "$from" "$to")
first_cpu=$(cpu_use "$cpu_r" "$cpu_r1" "$cpu_b" "$cpu_b1" "$busy0" "$busy1")
check_stream first
rss_first=$(rss); mem_first=$(memory "$server_pid" "$BERTH_SERVER" "$BERTH_TOKEN")
sleep 1   # the per-registry rate limiter's burst refills, as it would between real imports

# 2. The same import again; nothing changed upstream.
from=$(mark); between=$(requests "$to" "$from"); cpu_r=$(cpu "$registry_pid"); cpu_b=$(cpu "$server_pid"); busy0=$(busy); start=$(now)
import again
end=$(now); busy1=$(busy); cpu_r1=$(cpu "$registry_pid"); cpu_b1=$(cpu "$server_pid"); to=$(mark)
again_s=$(seconds "$start" "$end"); again_req=$(requests "$from" "$to"); again_kinds=$(breakdown "$from" "$to"); again_rep=$(repeated "$from" "$to")
again_cpu=$(cpu_use "$cpu_r" "$cpu_r1" "$cpu_b" "$cpu_b1" "$busy0" "$busy1")
check_stream again
rss_again=$(rss); mem_again=$(memory "$server_pid" "$BERTH_SERVER" "$BERTH_TOKEN"); hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$server_pid/status"); settle_from=$(now)
sleep 1

# 3. The wire's floor: what the re-import asks, sent by curl with nothing else to do.
accept="application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
from=$(mark); between=$((between + $(requests "$to" "$from"))); cpu_r=$(cpu "$registry_pid"); cpu_b=$(cpu "$server_pid"); busy0=$(busy); start=$(now)
curl -sf -o /dev/null "http://$registry/v2/$repository/tags/list?n=1000"
curl -sf -I -H "Accept: $accept" --parallel --parallel-max 16 -K "$work/heads.cfg" >/dev/null \
  || fail "curl's HEADs failed"
end=$(now); busy1=$(busy); cpu_r1=$(cpu "$registry_pid"); cpu_b1=$(cpu "$server_pid"); to=$(mark)
wire_s=$(seconds "$start" "$end"); wire_req=$(requests "$from" "$to")
wire_cpu=$(cpu_use "$cpu_r" "$cpu_r1" "$cpu_b" "$cpu_b1" "$busy0" "$busy1")
sleep 1

# 4. skopeo, one process per tag, as a user would script it.
from=$(mark); between=$((between + $(requests "$to" "$from"))); cpu_r=$(cpu "$registry_pid"); cpu_b=$(cpu "$server_pid"); busy0=$(busy); start=$(now)
listed=$(skopeo list-tags --tls-verify=false "docker://$registry/$repository" | jq -r '.Tags[]')
inspected=0
for tag in $listed; do
  skopeo inspect --tls-verify=false "docker://$registry/$repository:$tag" >/dev/null
  inspected=$((inspected + 1))
done
end=$(now); busy1=$(busy); cpu_r1=$(cpu "$registry_pid"); cpu_b1=$(cpu "$server_pid"); to=$(mark)
[ "$inspected" -eq "$tags" ] || fail "skopeo inspected $inspected tags, not $tags"
rss_settled=$(rss); mem_settled=$(memory "$server_pid" "$BERTH_SERVER" "$BERTH_TOKEN"); settled_s=$(seconds "$settle_from" "$(now)")
skopeo_s=$(seconds "$start" "$end"); skopeo_req=$(requests "$from" "$to"); skopeo_kinds=$(breakdown "$from" "$to")
skopeo_cpu=$(cpu_use "$cpu_r" "$cpu_r1" "$cpu_b" "$cpu_b1" "$busy0" "$busy1")

echo
echo "server config: $(tr '\n' ' ' <"$work/server.yml" | tr -s ' ')"
echo "registry: docker-registry $(docker-registry --version | awk '{print $NF}') at $registry; $repository: $tags tags over $images images"
echo "CPU seconds during each phase: of the registry, of berth serve, and of all other processes"
echo "(the berth CLI, skopeo, anything else running); busy: share of the machine's $(nproc) cores in use"
fmt='%-38s %8s %9s %8s %9s %7s %7s %6s\n'
printf "\n$fmt" phase seconds requests req/tag "registry" berth other busy
row() {
  local c=($5)
  printf "$fmt" "$1" "$2" "$3" "$(python3 -c "print(f'{$3 / $4:.2f}')")" "${c[@]}"
}
row "berth import-image --all (first)" "$first_s" "$first_req" "$tags" "$first_cpu"
row "berth import-image --all (no change)" "$again_s" "$again_req" "$tags" "$again_cpu"
row "curl: the re-import's requests (floor)" "$wire_s" "$wire_req" "$tags" "$wire_cpu"
row "skopeo list-tags + inspect per tag" "$skopeo_s" "$skopeo_req" "$tags" "$skopeo_cpu"
echo
echo "speed-up of the first import over the skopeo loop: $(python3 -c "print(f'{$skopeo_s / $first_s:.1f}')")x (target >= 20x)"
echo "no-change re-import: ${again_s} s (target < 0.25 s), $again_req requests for $tags tags (target: one per tag, plus the tag list)"
echo "  the same requests sent by curl (the wire's floor with this registry): ${wire_s} s; berth took $(python3 -c "print(f'{$again_s - $wire_s:+.3f}')") s more"
echo "registry requests between the phases (none expected): $between"
echo "berth's requests for a method and path it had already requested in the same phase (none expected): $first_rep in the first import, $again_rep in the re-import"
echo "berth serve resident memory (peak $hwm MiB; target: back within 2x of idle):"
echo "  before the imports:      $mem_idle"
echo "  after the first import:  $mem_first"
echo "  after the re-import:     $mem_again"
echo "  after ${settled_s} s without work (phases 3 and 4 ask nothing of berth): $mem_settled"
echo
echo "requests by method, kind and status:"
echo "  first import:";  echo "$first_kinds"
echo "  re-import:";     echo "$again_kinds"
echo "  skopeo loop:";   echo "$skopeo_kinds"
