#!/usr/bin/env bash
# Runs the whole test suite: builds with warnings as errors, starts local S3
# servers (Ceph RGW and moto with signature checking), runs every test, runs
# the suite again under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# concurrent suites under ThreadSanitizer, a smoke pass of the benchmarks,
# each fuzz target for a short bounded time, and clang-tidy over the tree.
# The last line is "N passed, N failed".
# Usage (as root on Debian 12): bash scripts/test.sh [--quick]
#   --quick  the contributor's loop (CONTRIBUTING.md): the normal build only
#            (build/, configured once, rebuilt incrementally), then every
#            test that needs no server. No S3 servers, no sanitizer builds, no
#            benchmarks, fuzzing or clang-tidy, not the consumer tests (suite
#            "consumer": they build whole projects) and not the fault matrix
#            against the fake S3 server (suite "fault": 45 s of waiting).
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
case ${1:-} in
  '') ;;
  --quick) quick=1 ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "test.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac

# setup DIR [meson options...]
setup() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dwerror=true "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
  fi
}

# The plain build: -O2 (the warnings that need the optimiser) without -g, which
# took a third of each compile (45 s -> 29 s for the largest test); failures
# are debugged in build-asan, which keeps -g. TSan runs at -O1 -g1: function
# names and lines in its reports, half the compile time of -O1 -g (42 s -> 23 s
# for callbacks_test.cpp). Neither sanitizer tree builds the fuzz replays:
# scripts/fuzz.sh replays the same corpora under ASan before it fuzzes.
plain_opts=(-Dbench=true -Ddebug=false)

if ((quick)); then
  bash scripts/install-deps.sh --no-servers || { echo "test.sh: installing dependencies failed"; echo "0 passed, 1 failed"; exit 1; }
  # The same options as the full run below, so either can reuse build/.
  setup build "${plain_opts[@]}" || { echo "test.sh: meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
  rm -f build/meson-logs/testlog.json
  echo "== meson test -C build (--quick: no servers, no sanitizers, no consumer projects, no fault matrix)"
  # Without --no-rebuild, meson test first rebuilds exactly what the selected
  # tests use, not the S3-server suites' binaries or the benchmarks.
  meson test -C build --print-errorlogs --num-processes 2 --no-suite s3 --no-suite consumer --no-suite fault
  rc=$?
  [ -f build/meson-logs/testlog.json ] || { echo "test.sh: build failed"; echo "0 passed, 1 failed"; exit 1; }
  python3 scripts/summarize.py build/meson-logs/testlog.json
  exit $rc
fi

bash scripts/install-deps.sh || { echo "test.sh: installing dependencies failed"; echo "0 passed, 1 failed"; exit 1; }

# clang-tidy runs beside everything else at the lowest priority: it takes the
# CPU the builds and tests leave idle (tests waiting on servers).
mkdir -p build-tidy
nice -n 19 bash scripts/tidy.sh --json build-tidy/tidylog.json >build-tidy/tidy.log 2>&1 &
tidy_pid=$!

# The concurrent suites, built and run under TSan (libcurl itself is not
# instrumented; TSan still sees every access our code makes).
tsan_tests=(fill-flight fill-engine fill-metadata conformance-local async-epoll-loop async-pooled posix_store posix-bounds posix-accounting posix-stress layers layers-fault callbacks-throw conformance-s3-rgw
            conformance-s3-rgw-tls conformance-s3-rgw-layers conformance-s3-moto s3-rgw-specific async-engine conformance-s3-async-rgw)
tsan_targets=(tests/fill_flight_test tests/fill_engine_test tests/fill_metadata_test tests/conformance_local_test tests/async_epoll_loop_test tests/async_pooled_test tests/posix_store_test tests/posix_bounds_test tests/posix_accounting_test
              tests/posix_stress_test
              tests/layers/layers_test tests/layers/layers_fault_test tests/fault/callbacks_test tests/conformance_s3_test
              tests/conformance_s3_rgw_layers_test tests/s3_rgw_specific_test tests/fault/async_engine_test tests/conformance_s3_async_test)

# The plain tree is built first. The sanitizer trees are only configured here:
# they compile (at nice 10) while the plain tree's tests run, which spend much
# of their time waiting on servers, sleeps and deadlines.
setup build "${plain_opts[@]}" &&
  meson compile -C build &&
  setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Dfuzz_replays=false &&
  setup build-tsan -Db_sanitize=thread -Doptimization=1 -Ddebug=false -Dcpp_args=-g1 -Dexamples=false -Dfuzz_replays=false ||
  { kill "$tidy_pid" 2>/dev/null; echo "test.sh: build failed"; echo "0 passed, 1 failed"; exit 1; }
rm -f build-asan/meson-logs/testlog.json build-tsan/meson-logs/testlog.json

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
export TSAN_TESTS="${tsan_tests[*]}" TSAN_TARGETS="${tsan_targets[*]}"
run_all() {
  local rc=0
  # shellcheck disable=SC2086
  { nice -n 10 meson compile -C build-asan && nice -n 10 meson compile -C build-tsan $TSAN_TARGETS; } >build-sanitizers.log 2>&1 &
  local sanitizer_build=$!
  echo "== meson test -C build (the sanitizer trees compile meanwhile, at nice 10)"
  meson test -C build --no-rebuild --print-errorlogs --num-processes 2 || rc=1
  echo "== benchmarks, smoke pass (builds and runs every row briefly; asserts no timing)"
  meson test -C build --benchmark --logbase benchlog --no-rebuild --print-errorlogs || rc=1
  if ! wait "$sanitizer_build"; then
    # No testlog.json in either sanitizer tree: summarize.py counts each as failed.
    tail -60 build-sanitizers.log
    echo "test.sh: the sanitizer build failed (build-sanitizers.log)"
    return 1
  fi
  echo "== meson test -C build-asan (AddressSanitizer + UndefinedBehaviorSanitizer)"
  # (not the consumer suite: it builds separate, unsanitized projects, as in the run above;
  # not the fork suite: GCC 12's ASan runtime has no fork handlers, so a child can
  # inherit its allocator's lock held by another thread; tests/fault/meson.build)
  meson test -C build-asan --no-rebuild --print-errorlogs --num-processes 2 --no-suite consumer --no-suite fork || rc=1
  echo "== meson test -C build-tsan (ThreadSanitizer, concurrent suites)"
  # shellcheck disable=SC2086
  meson test -C build-tsan --no-rebuild --print-errorlogs --num-processes 1 $TSAN_TESTS || rc=1
  return $rc
}
export -f run_all
bash tests/servers/with-servers.sh --rgw --moto --nginx -- bash -c run_all
rc=$?

# libFuzzer: every harness for a short bounded time (the replays already ran above).
echo "== fuzzing (libFuzzer, ${CACHESTORE_FUZZ_SECONDS:-10} s per target)"
fuzz_result=OK
bash scripts/fuzz.sh "${CACHESTORE_FUZZ_SECONDS:-10}" || { fuzz_result=FAIL; rc=1; }
printf '{"name": "libfuzzer-bounded-run", "result": "%s", "stdout": ""}\n' "$fuzz_result" > build/fuzzlog.json

echo "== clang-tidy (every header, test and example; .clang-tidy)"
wait "$tidy_pid" || rc=1
cat build-tidy/tidy.log
python3 scripts/summarize.py build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
  build-tsan/meson-logs/testlog.json build/meson-logs/benchlog.json build/fuzzlog.json build-tidy/tidylog.json
exit $rc
