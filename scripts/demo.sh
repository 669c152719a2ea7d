#!/usr/bin/env bash
# The one-command demo (as root on Debian 12, from a clone of this repository):
#
#   bash scripts/demo.sh           # against a local Ceph RGW (S3), started and stopped here
#   bash scripts/demo.sh --posix   # against a file:// store, no server
#
# Installs what is missing (scripts/install-deps.sh), builds the examples with
# Meson into build-demo/, starts Ceph RGW (tests/servers/rgw.sh), then:
#   1. cachestore selftest     the store's boot self-test
#   2. read_through, cold      a 48 MiB origin object in 8 MiB chunks: every chunk a miss
#   3. read_through, warm      the same range again: every chunk a hit
#   4. fill_race               16 writers in 2 processes race to fill the same chunks
#   5. range_proxy             (RGW only) 32 clients at once on a cold 64 MiB object in
#                              the bucket, through the S3-compatible proxy: the origin's
#                              request count (1 HEAD, 1 GET per chunk)
#   6. async_reads             (RGW only) 256 reads in flight on one thread: the S3
#                              async engine on an Asio io_context (throughput, p50/p99)
# and prints a summary. The origin is a local file made to behave like a
# remote object store (50 ms to first byte, 100 MiB/s per stream), so the
# cold/warm difference is what a proxy in front of a cloud origin would see.
# Environment: DEMO_SIZE_MIB (default 48), DEMO_CHUNK (default 8M).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=rgw
case ${1:-} in
  "") ;;
  --posix) mode=posix ;;
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo.sh: unknown argument '$1' (use --posix or nothing)" >&2; exit 2 ;;
esac

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
if [ -t 1 ]; then B=$'\e[1m' N=$'\e[0m'; else B="" N=""; fi
step() { printf '\n%s== %s%s  (t=%ss)\n' "$B" "$*" "$N" "$(elapsed)"; }

size_mib=${DEMO_SIZE_MIB:-48}
chunk=${DEMO_CHUNK:-8M}
work=$(mktemp -d "${TMPDIR:-/tmp}/cachestore-demo.XXXXXX")
rgw_dir=""
cleanup() {
  local rc=$?
  trap '' INT TERM
  if [ -n "$rgw_dir" ]; then
    if bash "$root/tests/servers/rgw.sh" stop "$rgw_dir" >/dev/null 2>&1; then
      echo "demo.sh: Ceph RGW stopped"
    else
      echo "demo.sh: WARNING: stopping RGW failed (state in $rgw_dir)" >&2
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Installing dependencies (scripts/install-deps.sh)"
bash scripts/install-deps.sh

step "Building the examples into build-demo/ (Meson, -Dtests=false)"
# -O1 without debug info: a third of the compile time of the default
# debugoptimized (-O2 -g), and the same speed where the demo spends its time.
if [ ! -f build-demo/build.ninja ]; then
  meson setup build-demo -Dtests=false -Dexamples=true -Doptimization=1 -Ddebug=false \
    >"$work/setup.log" 2>&1 || { cat "$work/setup.log"; exit 1; }
fi
meson compile -C build-demo examples/cachestore examples/read_through examples/fill_race examples/range_proxy \
  examples/async_reads
bin=$root/build-demo/examples

if [ "$mode" = rgw ]; then
  step "Starting Ceph RGW (tests/servers/rgw.sh)"
  rgw_dir=$work/rgw
  bash tests/servers/rgw.sh start "$rgw_dir"
  # shellcheck disable=SC1091
  . "$rgw_dir/env"
  # The examples take credentials from the standard AWS variables, never from the URL.
  export AWS_ACCESS_KEY_ID=$CACHESTORE_RGW_ACCESS_KEY
  export AWS_SECRET_ACCESS_KEY=$CACHESTORE_RGW_SECRET_KEY
  export AWS_REGION=$CACHESTORE_RGW_REGION
  endpoint_enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$CACHESTORE_RGW_ENDPOINT")
  store="s3://$CACHESTORE_RGW_BUCKET/demo-$$/?endpoint=$endpoint_enc"
  where="Ceph RGW at $CACHESTORE_RGW_ENDPOINT, bucket $CACHESTORE_RGW_BUCKET, prefix demo-$$/"
else
  mkdir -m 700 "$work/store"  # a POSIX store's root must exist (or add ?create=1 to the URL)
  store="file://$work/store"
  where="POSIX directory $work/store"
fi
echo "store URL: $store"

step "1. cachestore selftest"
"$bin/cachestore" selftest --store "$store"
"$bin/cachestore" selftest --store "$store" --json >"$work/selftest.json"

step "Generating a ${size_mib} MiB origin object"
head -c $((size_mib << 20)) /dev/urandom >"$work/origin.bin"
ls -l "$work/origin.bin"

rt=("$bin/read_through" --store "$store" --origin-file "$work/origin.bin" --chunk-size "$chunk"
    --threads 4 --origin-latency-ms 50 --origin-mibps 100 --verify --no-progress)
step "2. read_through, cold cache (origin: 50 ms to first byte, 100 MiB/s per stream)"
"${rt[@]}" --json-file "$work/cold.json"
step "3. read_through, warm cache (same range, same ETag)"
"${rt[@]}" --json-file "$work/warm.json" --metrics "$work/warm.prom"

step "4. fill_race: 2 processes x 8 threads race to fill 4 chunks, 2 rounds"
"$bin/fill_race" --store "$store" --processes 2 --threads 8 --chunks 4 --rounds 2 --chunk-size 1M \
  --json-file "$work/race.json"

if [ "$mode" = rgw ]; then
  step "5. range_proxy: 32 clients at once on a cold 64 MiB object, through the proxy"
  key="demo-$$/origin/model.bin"
  head -c $((64 << 20)) /dev/urandom >"$work/model.bin"
  # The origin object goes into the bucket with the AWS CLI (scripts/install-deps.sh installs it).
  aws --endpoint-url "$CACHESTORE_RGW_ENDPOINT" s3 cp --only-show-errors "$work/model.bin" "s3://$CACHESTORE_RGW_BUCKET/$key"
  "$bin/range_proxy" --listen 127.0.0.1:0 --metrics-port 0 --chunk-size "$chunk" --store "$store" \
    --origin "s3://$CACHESTORE_RGW_BUCKET?endpoint=$endpoint_enc" >"$work/proxy.out" 2>"$work/proxy.err" &
  proxy_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/proxy.out" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/proxy.out")
  mport=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$work/proxy.out")
  [ -n "$port" ] || { cat "$work/proxy.err"; exit 1; }
  echo "range_proxy listening on http://127.0.0.1:$port (origin: bucket $CACHESTORE_RGW_BUCKET; cache: the store above)"
  want=$(sha256sum <"$work/model.bin" | cut -d' ' -f1)
  p0=$(date +%s.%N)
  clients=()
  for i in $(seq 32); do
    { curl -sS "http://127.0.0.1:$port/$CACHESTORE_RGW_BUCKET/$key" | sha256sum | cut -d' ' -f1 >"$work/client.$i"; } &
    clients+=($!)
  done
  wait "${clients[@]}"
  p1=$(date +%s.%N)
  curl -sS "http://127.0.0.1:$mport/metrics" >"$work/proxy.prom"
  kill -TERM "$proxy_pid"
  wait "$proxy_pid" || true
  python3 - "$work" "$want" "$p0" "$p1" "$chunk" <<'EOF'
import json, re, sys, glob
work, want, p0, p1, chunk = sys.argv[1:6]
prom = open(f"{work}/proxy.prom").read()
num = lambda name: int(re.search("^" + re.escape(name) + r" (\d+)$", prom, re.M).group(1))
ok = sum(open(f).read().strip() == want for f in glob.glob(f"{work}/client.*"))
unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
cbytes = int(chunk[:-1]) * unit[chunk[-1]] if chunk[-1] in unit else int(chunk)
r = {"clients": 32, "ok": ok, "chunks": -(-(64 << 20) // cbytes), "seconds": float(p1) - float(p0),
     "heads": num('range_proxy_origin_requests_total{method="HEAD"}'),
     "gets": num('range_proxy_origin_requests_total{method="GET"}'),
     "joined": num('cachestore_fill_joined_total{engine="range_proxy"}')}
json.dump(r, open(f"{work}/proxy.json", "w"))
print(f"{ok}/32 clients got every byte of the 64 MiB object in {r['seconds']:.2f} s; "
      f"the origin saw {r['heads']} HEAD and {r['gets']} GETs for {r['chunks']} chunks "
      f"({r['joined']} chunk reads joined another client's fill)")
for line in prom.splitlines():
    if line.startswith(("cachestore_fill_started_total", "cachestore_fill_joined_total", "cachestore_fill_commits_total{",
                        "cachestore_fill_metadata_total", "range_proxy_origin_requests_total")):
        print("  " + line)
EOF
fi

if [ "$mode" = rgw ]; then
  step "6. async_reads: 256 reads of 4 KiB in flight on one thread for 2 s (the S3 async engine on Asio)"
  "$bin/async_reads" --store "$store" --in-flight 256 --seconds 2 --size 4K
fi

step "Summary"
python3 - "$work" "$where" "$(elapsed)" <<'EOF'
import json, sys
work, where, wall = sys.argv[1], sys.argv[2], sys.argv[3]
load = lambda n: json.load(open(f"{work}/{n}.json"))
st, cold, warm, race = load("selftest"), load("cold"), load("warm"), load("race")
mib = lambda b: b / 1048576
def run(r):
    return (f"{r['hits']}/{r['chunks']} hits, {r['misses']} misses "
            f"(commits won {r['commits_won']}, lost {r['commits_lost']}), "
            f"{mib(r['bytes_served']):.1f} MiB in {r['seconds']:.2f} s = {r['mib_per_s']:.0f} MiB/s"
            + (", every byte verified" if r['verify'] and r['ok'] else ""))
print(f"  store:      {where}")
st_line = "passed"
if st["store"] == "s3":
    st_line += "; If-None-Match commits " + ("enforced" if st.get("conditional_put_enforced") else "NOT enforced (stat-then-put)")
else:
    st_line += "; commits are atomic (link())"
print(f"  self-test:  {st_line}")
print(f"  cold run:   {run(cold)}")
print(f"  warm run:   {run(warm)}")
speedup = warm['mib_per_s'] / cold['mib_per_s'] if cold['mib_per_s'] else 0
print(f"              hit rate {cold['hit_rate']*100:.0f}% -> {warm['hit_rate']*100:.0f}%, "
      f"throughput x{speedup:.1f}, origin traffic {mib(cold['bytes_from_origin']):.0f} MiB -> {mib(warm['bytes_from_origin']):.0f} MiB")
print("  metrics:    (warm run, Prometheus text from read_through --metrics; excerpt)")
for line in open(f"{work}/warm.prom"):
    if line.startswith(("cachestore_operations_total", "cachestore_read_bytes_total")) and not line.rstrip().endswith(" 0"):
        print("              " + line.rstrip())
n = len(race["chunks"])
winners = sorted({c["winners"] for c in race["chunks"]})
if race["ok"] and race["atomic_commit"]:
    verdict = f"exactly one winner for each of {n} chunks; every reader saw identical bytes"
elif race["ok"]:
    verdict = f"{race['chunks_with_several_uploads']} of {n} chunks uploaded by several writers (identical bytes); every reader saw identical bytes"
else:
    verdict = "VIOLATIONS: " + "; ".join(race["violations"])
print(f"  fill race:  {race['writers']} writers ({race['processes']} processes x {race['threads']} threads): {verdict}")
import os
proxy_ok = True
if os.path.exists(f"{work}/proxy.json"):
    px = load("proxy")
    proxy_ok = px["ok"] == px["clients"] and px["heads"] == 1 and px["gets"] == px["chunks"]
    print(f"  range proxy: {px['ok']}/{px['clients']} clients served a cold 64 MiB object in {px['seconds']:.2f} s; "
          f"origin requests: {px['heads']} HEAD + {px['gets']} GET ({px['chunks']} chunks)")
print(f"  wall time:  {wall} s (including the build)")
ok = cold["ok"] and warm["ok"] and race["ok"] and warm["hits"] == warm["chunks"] and proxy_ok
sys.exit(0 if ok else 1)
EOF
step "Done"
