#!/usr/bin/env bash
# Builds tests/consumer as a parent project that vendors this repository under
# subprojects/cachestore, then installs this repository and builds against the
# installed pkg-config file. Usage: run.sh SOURCE_ROOT
# Environment: CONSUMER_CXX, the consumer's compiler (default c++; the suite
# also runs it with clang++-16).
set -euo pipefail
src=$(cd "$1" && pwd)
cxx=${CONSUMER_CXX:-c++}
if ! command -v "$cxx" >/dev/null; then
  echo "$(basename "$0"): the compiler $cxx is not installed (scripts/install-deps.sh installs clang-16)"
  # Under CI a missing tool is a failure, elsewhere a loud skip (77: meson's "skipped").
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== as a subproject ($cxx)"
cp -r "$src/tests/consumer" "$work/parent"
mkdir -p "$work/parent/subprojects"
ln -s "$src" "$work/parent/subprojects/cachestore"
CXX=$cxx meson setup "$work/parent-build" "$work/parent" >"$work/setup.log" 2>&1 || { cat "$work/setup.log"; exit 1; }
grep -q 'cachestore-s3 found' "$work/setup.log" || { cat "$work/setup.log"; exit 1; }
# A parent's configure shows no warning of ours (getting-started.md promises it).
if grep -E '^cachestore\|.*WARNING' "$work/setup.log"; then
  echo "run.sh: configuring the parent printed the warning(s) above from the cachestore subproject"; exit 1
fi
meson compile -C "$work/parent-build" >"$work/compile.log" 2>&1 || { cat "$work/compile.log"; exit 1; }
"$work/parent-build/consumer"
if [ -x "$work/parent-build/consumer-compiled" ]; then "$work/parent-build/consumer-compiled"; fi

echo "== installed, through pkg-config ($cxx)"
meson setup "$work/self" "$src" -Dtests=false -Dexamples=false --prefix=/usr >"$work/self.log" 2>&1 || { cat "$work/self.log"; exit 1; }
DESTDIR="$work/root" meson install -C "$work/self" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
pcdir=$(dirname "$(find "$work/root" -name cachestore.pc | head -n1)")
[ -n "$pcdir" ] || { echo "no cachestore.pc installed"; exit 1; }
export PKG_CONFIG_SYSROOT_DIR="$work/root" PKG_CONFIG_PATH="$pcdir"
cflags=$(pkg-config --cflags cachestore)
libs=$(pkg-config --libs cachestore)
# shellcheck disable=SC2086
"$cxx" $cflags -Wall -Wextra -Werror "$src/tests/consumer/main.cpp" -o "$work/consumer-pc" $libs
"$work/consumer-pc"
if pkg-config --exists cachestore-s3 2>/dev/null; then
  pkg-config --cflags --libs cachestore-s3 >/dev/null
  echo "cachestore-s3.pc: ok"
  # The separately compiled driver: the define, libcachestore-s3.a, curl and libcrypto.
  "$cxx" $(pkg-config --cflags cachestore-s3-compiled) -Wall -Wextra -Werror "$src/tests/consumer/compiled.cpp" \
    -o "$work/consumer-compiled-pc" $(pkg-config --libs cachestore-s3-compiled)
  "$work/consumer-compiled-pc"
fi
echo "consumer tests passed"
