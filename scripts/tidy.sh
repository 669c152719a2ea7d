#!/usr/bin/env bash
# Runs clang-tidy 16 (checks in .clang-tidy) over the test sources and the
# examples (examples/*.cpp and examples/snippets/*.cpp), and through them over
# every library header, and exits non-zero on any finding. The clang-analyzer
# checks run over the examples and tests/odr/a.cpp only.
#
# Usage: bash scripts/tidy.sh [--json FILE] [FILE...]
#          (default: every example and every test source but tests/catch_main.cpp
#          and tests/odr/b.cpp)
#   --json FILE  also write the result as one line of Meson's testlog JSON
#                ({"name": "clang-tidy", "result": "OK"|"FAIL", "stdout": ...}),
#                which scripts/summarize.py reads with the test logs
# Environment: TIDY_JOBS (parallel clang-tidy processes, default: the number of cores)
#              TIDY_TU_CPU_SECONDS (CPU seconds one translation unit may use,
#              default 900; one that uses more fails the run, named, instead of
#              hanging it. CPU time, not wall time: under test.sh, clang-tidy runs
#              at nice 19 beside the builds and may wait far longer than it computes)
#
# clang 16 cannot see std::expected in libstdc++ 12 (it defines __cpp_concepts
# < 202002L); redefining the macro, as below, is enough for this code base.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$(date +%s)

json=
files=()
while (($#)); do
  case $1 in
    --json)
      (($# >= 2)) || { echo "tidy.sh: --json needs a file name" >&2; exit 2; }
      json=$2
      shift 2 ;;
    --json=*) json=${1#--json=}; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; files+=("$@"); break ;;
    -*) echo "tidy.sh: unknown option $1" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
# The JSON file is written relative to the caller's directory.
if [ -n "$json" ]; then
  case $json in /*) ;; *) json=$OLDPWD/$json ;; esac
fi

need=()
command -v clang-tidy-16 >/dev/null || need+=(clang-tidy-16)
for p in libcurl4-openssl-dev libssl-dev nlohmann-json3-dev catch2; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  echo "tidy.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } >/dev/null ||
    { echo "tidy.sh: cannot install ${need[*]}" >&2; exit 1; }
fi

flags=(-std=c++2b -U__cpp_concepts -D__cpp_concepts=202002L -Wno-builtin-macro-redefined
       -I"$root/include" -I"$root" -I"$root/tests" -I"$root/tests/fuzz" -DCACHESTORE_FUZZ_OPENSSL -DCACHESTORE_TEST_S3=1)

work=$(mktemp -d /tmp/cachestore-tidy.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ((${#files[@]} == 0)); then
  # Every test source and every example. The library's headers are checked
  # through them (HeaderFilterRegex): tests/odr/a.cpp includes every header,
  # so no header needs a translation unit of its own (that is the
  # headers-self-contained test's job).
  # Not tests/catch_main.cpp (Catch2's own implementation, 17 s) nor
  # tests/odr/b.cpp (a.cpp's twin: the same headers).
  while IFS= read -r f; do files+=("$f"); done < <({ find tests -name '*.cpp' ! -path tests/catch_main.cpp ! -path tests/odr/b.cpp
                                                     find examples -maxdepth 1 -name '*.cpp'; find examples/snippets -name '*.cpp'; } | sort)
fi

# Extra flags some translation units need (as the meson.build files pass them),
# and the checks they run. The path-sensitive clang-analyzer-* checks (half of
# clang-tidy's time) run over tests/odr/a.cpp, which includes every header (so
# every inline function of the library is analysed there), and over the
# examples and docs snippets, which instantiate the templates as users do.
# Every other translation unit gets every other check.
extra_flags() {
  xflags=()
  xchecks=()
  case $1 in
    examples/snippets/*) xchecks=(--checks=-clang-analyzer-*) ;;
    examples/* | tests/odr/a.cpp) ;;
    *) xchecks=(--checks=-clang-analyzer-*) ;;
  esac
  case $1 in
    */fault/async_asio_host_test.cpp) # both: the fault server and Asio's coroutines (below)
      xflags=("-DFAULT_SERVER_PY=\"$root/tests/fault/fault_server.py\"" '-DFAULT_PYTHON3="python3"'
              -DASIO_HAS_CO_AWAIT=1 -DASIO_HAS_STD_COROUTINE=1) ;;
    */fault/*_test.cpp | */s3/tls_test.cpp | */layers/fault_layers_test.cpp)
      xflags=("-DFAULT_SERVER_PY=\"$root/tests/fault/fault_server.py\"" '-DFAULT_PYTHON3="python3"') ;;
    */s3/config_test.cpp) xflags=("-DCACHESTORE_ERRORS_MD=\"$root/docs/errors.md\"") ;;
    */consumer/compiled.cpp) xflags=(-DCACHESTORE_SEPARATE_COMPILATION) ;;
    # Asio 1.22 enables co_await under clang only with <experimental/coroutine>,
    # which libstdc++ does not have; clang 16 has the standard coroutines.
    */async/asio_test.cpp | *snippets/coroutine.cpp) xflags=(-DASIO_HAS_CO_AWAIT=1 -DASIO_HAS_STD_COROUTINE=1) ;;
  esac
}

# The slowest translation units start first, so that no long one is left
# running alone at the end (measured: the Catch2 suites and the example programs,
# 45-150 s each against under 20 s for most others).
order() {
  local f
  for f in "$@"; do
    case $f in
      */fault_test.cpp | */beyond_http_test.cpp | */config_test.cpp | */sigv4_test.cpp | */posix_store_test.cpp | */conformance/local_test.cpp | \
      */rgw_specific_test.cpp | */conformance_s3_test.cpp | */bench/bench.cpp | examples/cachestore_cli.cpp | examples/fill_race.cpp | examples/read_through.cpp | \
      examples/range_proxy.cpp)
        echo "0 $f" ;;
      *) echo "1 $f" ;;
    esac
  done | sort -s -k1,1n | cut -d' ' -f2-
}
mapfile -t files < <(order "${files[@]}")

jobs=${TIDY_JOBS:-$(nproc)}
cpu_limit=${TIDY_TU_CPU_SECONDS:-900}
[[ $cpu_limit =~ ^[1-9][0-9]*$ ]] || { echo "tidy.sh: TIDY_TU_CPU_SECONDS must be a positive number of seconds, got '$cpu_limit'" >&2; exit 2; }
echo "== tidy.sh: clang-tidy-16 on ${#files[@]} translation units, $jobs at a time"
i=0
for f in "${files[@]}"; do
  i=$((i + 1))
  log=$work/$i.log
  extra_flags "$f"
  ( t0=$(date +%s)
    # The limit is on CPU time (SIGXCPU, then SIGKILL): a wall-clock timeout
    # stopped healthy translation units that were only waiting for a CPU (CI:
    # the slowest one needs 110 CPU-s, and waited past 900 s of wall time).
    ( ulimit -t "$cpu_limit" && exec clang-tidy-16 --quiet --config-file="$root/.clang-tidy" "${xchecks[@]}" "$f" -- "${flags[@]}" "${xflags[@]}" ) >"$log" 2>&1
    rc=$?
    ((rc == 128 + 24 || rc == 128 + 9)) && echo "tidy.sh: clang-tidy did not finish $f within $cpu_limit CPU seconds (stopped)" >>"$log"
    echo $rc >"$log.rc"
    echo "$(($(date +%s) - t0)) ${f#"$work"/}" >"$log.time" ) &
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n; done
done
wait

# Findings, each once (a header's finding shows up in every TU that includes
# it, and as dir/../header from some of them).
cat "$work"/*.log | grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' |
  sed -E -e ':a' -e 's#/[^/:]+/\.\./#/#' -e 'ta' | sed "s|$root/||" | sort -u >"$work/findings"
grep -h '^tidy.sh: clang-tidy did not finish' "$work"/*.log >>"$work/findings"
failed_tus=0
for rc in "$work"/*.rc; do [ "$(cat "$rc")" = 0 ] || failed_tus=$((failed_tus + 1)); done
n=$(wc -l <"$work/findings")
elapsed=$(($(date +%s) - start))
wall=$(printf '%dm%02ds' $((elapsed / 60)) $((elapsed % 60)))
slowest=$(cat "$work"/*.time | sort -rn | head -3 | awk '{printf "%s%s %ds", (NR > 1 ? ", " : ""), $2, $1}')

if ((n > 0 || failed_tus > 0)); then
  {
    cat "$work/findings"
    if ((n == 0)); then
      echo "tidy.sh: clang-tidy failed without a finding; its output:"
      for rc in "$work"/*.rc; do [ "$(cat "$rc")" = 0 ] || cat "${rc%.rc}"; done | head -100
    fi
    echo "tidy.sh: $n findings in ${failed_tus} of ${#files[@]} translation units"
  } >"$work/report"
  result=FAIL
  status=1
else
  echo "clean (${#files[@]} translation units)" >"$work/report"
  result=OK
  status=0
fi
cat "$work/report"
echo "tidy.sh: wall time $wall for ${#files[@]} translation units, $jobs at a time (slowest: $slowest)"

if [ -n "$json" ]; then
  python3 - "$json" "$result" "$work/report" "$elapsed" <<'EOF' || { echo "tidy.sh: cannot write $json" >&2; exit 1; }
import json, sys
path, result, report, elapsed = sys.argv[1:5]
with open(report, encoding="utf-8", errors="replace") as f:
    out = f.read()
with open(path, "w", encoding="utf-8") as f:
    f.write(json.dumps({"name": "clang-tidy", "result": result, "stdout": out.rstrip("\n"),
                        "duration": float(elapsed)}) + "\n")
EOF
fi
exit $status
