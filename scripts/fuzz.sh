#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang 16 (ASan + UBSan +
# libFuzzer) and runs each for a bounded time on a copy of its seed corpus.
# Prints the executions per target and any crash (with its reproducer), and
# exits non-zero when a target crashed, leaked, timed out or ran out of memory.
#
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 20 s, all targets)
# Environment:
#   FUZZ_BUILD_DIR  where the binaries go (default build-fuzz/)
#   FUZZ_JOBS       targets fuzzed at once (default: the number of cores, at most 2)
#   FUZZ_KEEP=1     keep the temporary corpus and artifact directories
#
# Why clang: GCC has no libFuzzer. clang 14/16 cannot see std::expected in
# libstdc++ 12 because they define __cpp_concepts < 202002L; redefining the
# macro (below) is enough for this code base.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
secs=${1:-20}
shift || true
[[ $secs =~ ^[0-9]+$ ]] && ((secs > 0)) || { echo "fuzz.sh: SECONDS_PER_TARGET must be a positive integer" >&2; exit 2; }

all_targets=(chunk_key error_xml http_date content_range response_headers sigv4 config_json endpoint credentials_ini)
[ -f examples/store_url.hpp ] && [ -f tests/fuzz/store_url.cpp ] && all_targets+=(store_url)
targets=("${@:-${all_targets[@]}}")

# Per-target libFuzzer limits: the XML reader reads up to 64 KiB, so let inputs grow past that.
max_len_for() {
  case $1 in
    error_xml) echo 70000 ;;
    *) echo 4096 ;;
  esac
}

# --- toolchain ---------------------------------------------------------------
need=()
command -v clang++-16 >/dev/null || need+=(clang-16)
[ -f /usr/lib/llvm-16/lib/clang/16/lib/linux/libclang_rt.fuzzer-x86_64.a ] || need+=(libclang-rt-16-dev)
for p in libcurl4-openssl-dev libssl-dev nlohmann-json3-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  echo "fuzz.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } >/dev/null ||
    { echo "fuzz.sh: cannot install ${need[*]}" >&2; exit 1; }
fi

out=${FUZZ_BUILD_DIR:-$root/build-fuzz}
mkdir -p "$out"
cxx=clang++-16
cxxflags=(-std=c++2b -U__cpp_concepts -D__cpp_concepts=202002L -Wno-builtin-macro-redefined
          -Wall -Wextra -Wpedantic -Werror -Wno-c++20-extensions
          -g -O1 -fno-omit-frame-pointer
          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
          -I"$root/include" -I"$root/tests/fuzz" -I"$root")
libs_for() {
  case $1 in
    chunk_key) echo "-DCACHESTORE_FUZZ_OPENSSL -lcrypto" ;;
    *) echo "-lcurl -lcrypto" ;;
  esac
}

# Rebuild a target when its harness, a header it may include, or this script is newer.
build_one() {
  local t=$1 bin=$out/fuzz_$t
  local newest
  newest=$(find "$root/tests/fuzz/$t.cpp" "$root/tests/fuzz/fuzz_support.hpp" "$root/include" \
                "$root/scripts/fuzz.sh" $( [ "$t" = store_url ] && echo "$root/examples" ) \
                -newer "$bin" -print -quit 2>/dev/null)
  if [ -x "$bin" ] && [ -z "$newest" ]; then return 0; fi
  # shellcheck disable=SC2046
  if ! $cxx "${cxxflags[@]}" "$root/tests/fuzz/$t.cpp" -o "$bin.tmp" $(libs_for "$t") >"$out/$t.build.log" 2>&1; then
    echo "fuzz.sh: building $t failed:" >&2
    cat "$out/$t.build.log" >&2
    return 1
  fi
  mv "$bin.tmp" "$bin"
}

jobs=${FUZZ_JOBS:-$(nproc)}
((jobs > 2)) && jobs=2
((jobs < 1)) && jobs=1

start=$SECONDS
echo "== fuzz.sh: building ${#targets[@]} targets with $cxx into $out"
build_fail=0
pids=()
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/$t.cpp" ] || { echo "fuzz.sh: no target $t" >&2; build_fail=1; continue; }
  build_one "$t" &
  pids+=($!)
  if ((${#pids[@]} >= jobs)); then wait "${pids[0]}" || build_fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || build_fail=1; done
((build_fail)) && { echo "fuzz.sh: build failed"; exit 1; }
echo "== fuzz.sh: built in $((SECONDS - start)) s; fuzzing each target for $secs s, $jobs at a time"

work=$(mktemp -d /tmp/cachestore-fuzz.XXXXXX)
cleanup() { [ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

# run_one TARGET: fuzzes on a private copy of the seed corpus; writes $work/TARGET.status.
run_one() {
  local t=$1 dir=$work/$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -R "tests/fuzz/corpus/$t/." "$dir/corpus/" 2>/dev/null || true
  local dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="tests/fuzz/dict/$t.dict")
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$out/fuzz_$t" "$dir/corpus" "${dict[@]}" \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len="$(max_len_for "$t")" \
      -print_final_stats=1 -artifact_prefix="$dir/artifacts/" >"$dir/log" 2>&1
  echo $? >"$dir/rc"
}

pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if ((${#pids[@]} >= jobs)); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done

crashed=0
printf '%-18s %12s %8s %6s  %s\n' target execs exec/s corpus result
for t in "${targets[@]}"; do
  dir=$work/$t
  rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
  units=$(find "$dir/corpus" -type f | wc -l)
  mapfile -t found < <(find "$dir/artifacts" -type f 2>/dev/null)
  if [ "$rc" = 0 ] && ((${#found[@]} == 0)); then
    printf '%-18s %12s %8s %6s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$units" ok
  else
    crashed=1
    printf '%-18s %12s %8s %6s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$units" "FAILED (exit $rc)"
    mkdir -p "$out/crashes/$t"
    for f in "${found[@]}"; do
      cp "$f" "$out/crashes/$t/"
      echo "  reproducer: $out/crashes/$t/$(basename "$f")  (replay: $out/fuzz_$t $out/crashes/$t/$(basename "$f"))"
      echo "  bytes (C escapes): $(od -An -c -v "$f" | tr -s ' \n' ' ' | head -c 400)"
    done
    echo "  --- last lines of the log:"
    grep -v '^#[0-9]' "$dir/log" | tail -40 | sed 's/^/  | /'
  fi
done
echo "== fuzz.sh: done in $((SECONDS - start)) s"
if ((crashed)); then
  echo "fuzz.sh: a target failed (reproducers under $out/crashes/)"
  exit 1
fi
echo "fuzz.sh: no crash"
