#!/usr/bin/env bash
# Runs the whole test suite: builds with warnings as errors, starts local S3
# servers (Ceph RGW and moto with signature checking), runs every test, then
# runs the suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Usage (as root on Debian 12): bash scripts/test.sh
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh || { echo "test.sh: installing dependencies failed"; echo "0 passed, 1 failed"; exit 1; }

setup() { # dir, extra args...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dwerror=true -Dexamples=true "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
  fi
  meson compile -C "$dir" || return 1
}
builds=(build build-asan)
setup build || { echo "0 passed, 1 failed"; exit 1; }
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || { echo "0 passed, 1 failed"; exit 1; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_all() {
  local rc=0 b
  for b in "${builds[@]}"; do
    echo "== meson test -C $b"
    meson test -C "$b" --print-errorlogs --num-processes 2 || rc=1
  done
  return $rc
}
export -f run_all
export builds_list="${builds[*]}"
bash tests/servers/with-servers.sh --rgw --moto -- bash -c 'builds=($builds_list); run_all'
rc=$?
python3 scripts/summarize.py "${builds[@]/%//meson-logs/testlog.json}"
exit $rc
