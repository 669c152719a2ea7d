#!/usr/bin/env bash
# The cachestore benchmark (issue 5): installs what it needs, builds, starts
# nginx (and Ceph RGW with --rgw), runs every row and prints Markdown tables
# of ours/baseline ratios (docs/performance.md explains them).
#
#   bash tests/bench/run.sh [--smoke] [--rgw] [--runs N] [--seconds S] [-- BENCH-ARGS...]
#
#   --smoke      every row for a few iterations (CI); fails only when an
#                operation fails, never on timings
#   --rgw        also run the headline rows against Ceph RGW (real SigV4 checks),
#                over http and over https (target rgw-tls), and over http the
#                tiered store's rows (tiered_rows.hpp; about 2 minutes more)
#   --runs N     alternating runs per row (default 7)
#   --seconds S  time per side per run (default 0.3; split into 4 interleaved slices)
#
# Builds into build-bench/ (CACHESTORE_BENCH_BUILD_DIR overrides; CACHESTORE_BENCH_NATIVE_FILE
# passes a Meson native file, e.g. to compile against a private copy of the
# headers, see tests/bench/meson.build). The report is also written to
# <build dir>/bench-results.md. A full run takes about 3-4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

smoke=0
rgw=0
bench_args=()
while (($#)); do
  case $1 in
    --smoke) smoke=1 ;;
    --rgw) rgw=1 ;;
    --runs) bench_args+=(--runs "$2"); shift ;;
    --seconds) bench_args+=(--seconds "$2"); shift ;;
    --) shift; bench_args+=("$@"); break ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((smoke)) && bench_args+=(--smoke)

log() { echo "run.sh: $*" >&2; }

# 1. Packages: the build, the nginx backend, the libs3 baseline, valgrind for
#    the instruction counts. Only what is missing; apt-get needs root.
pkgs=(build-essential meson ninja-build pkg-config libcurl4-openssl-dev libssl-dev nlohmann-json3-dev
      curl nginx libs3-dev)
((smoke)) || pkgs+=(valgrind) # the smoke pass prints n/a for callgrind rows without it
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if ((EUID == 0)); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "WARNING: missing ${missing[*]} and not root; rows that need them will say n/a"
  fi
fi

# 2. Build (warnings are errors).
build=${CACHESTORE_BENCH_BUILD_DIR:-build-bench}
if [[ ! -f $build/build.ninja ]]; then
  setup_args=(-Dbench=true -Dwerror=true -Dtests=false -Dexamples=false -Dbuildtype=debugoptimized)
  [[ -n ${CACHESTORE_BENCH_NATIVE_FILE:-} ]] && setup_args+=(--native-file "$CACHESTORE_BENCH_NATIVE_FILE")
  meson setup "$build" "${setup_args[@]}" >"$build.setup.log" 2>&1 || { cat "$build.setup.log"; exit 1; }
fi
meson compile -C "$build" >/dev/null || meson compile -C "$build"
exe=$root/$build/tests/bench/cachestore_bench
[[ $build == /* ]] && exe=$build/tests/bench/cachestore_bench
[[ -x $exe ]] || { log "no benchmark binary at $exe (is the S3 driver enabled?)"; exit 1; }

# 3. Run against the servers; the report goes to stdout and to a file.
report=$(dirname "$exe")/../../bench-results.md
servers=(--nginx)
((rgw)) && servers+=(--rgw)
export CACHESTORE_BENCH_EXE=$exe CACHESTORE_BENCH_RGW=$rgw CACHESTORE_BENCH_REPORT=$report
export CACHESTORE_BENCH_ARGS="${bench_args[*]}"
# Without CI=true, with-servers.sh would run us without a server that failed
# to start; the benchmark then stops at its first row with a clear message.
rc=0
bash tests/servers/with-servers.sh "${servers[@]}" -- bash -c '
  set -uo pipefail
  read -r -a args <<<"$CACHESTORE_BENCH_ARGS"
  {
    echo "## cachestore benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed "s/^ *//"), kernel $(uname -r);"
    echo "load average at start: $(cut -d" " -f1-3 /proc/loadavg); $(curl --version | head -1 | cut -d" " -f1-2,4-5); nginx $(nginx -v 2>&1 | cut -d/ -f2)."
    echo
  } >"$CACHESTORE_BENCH_REPORT"
  rc=0
  "$CACHESTORE_BENCH_EXE" --target nginx "${args[@]}" >>"$CACHESTORE_BENCH_REPORT" || rc=1
  if [[ $CACHESTORE_BENCH_RGW == 1 ]]; then
    # RGW is slow per request: 5 runs keep the whole pass within ~5 minutes.
    "$CACHESTORE_BENCH_EXE" --target rgw --runs 5 "${args[@]}" >>"$CACHESTORE_BENCH_REPORT" || rc=1
    # The same over https (private CA, TLS session cache): UNSIGNED-PAYLOAD bodies.
    "$CACHESTORE_BENCH_EXE" --target rgw-tls --runs 5 "${args[@]}" >>"$CACHESTORE_BENCH_REPORT" || rc=1
  fi
  echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)" >>"$CACHESTORE_BENCH_REPORT"
  exit $rc' || rc=$?
cat "$report"
log "report written to $report"
exit $rc
