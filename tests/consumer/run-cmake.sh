#!/usr/bin/env bash
# Installs this repository into a temporary prefix (meson install with
# DESTDIR), then configures, builds and runs tests/consumer/cmake against it
# with find_package(cachestore 0.2 REQUIRED) and cachestore::s3 (or, with
# --no-s3, cachestore::cachestore). Usage: run-cmake.sh SOURCE_ROOT [--no-s3]
# Environment: CONSUMER_CXX, the consumer's compiler (default c++; the suite
# also runs it with clang++-16).
set -euo pipefail
src=$(cd "$1" && pwd)
s3=ON
[ "${2:-}" = --no-s3 ] && s3=OFF
if ! command -v cmake >/dev/null; then
  echo "run-cmake.sh: cmake is not installed (scripts/install-deps.sh installs it)"
  # Under CI a missing tool is a failure, elsewhere a loud skip (77: meson's "skipped").
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi
cxx=${CONSUMER_CXX:-c++}
if ! command -v "$cxx" >/dev/null; then
  echo "$(basename "$0"): the compiler $cxx is not installed (scripts/install-deps.sh installs clang-16)"
  # Under CI a missing tool is a failure, elsewhere a loud skip (77: meson's "skipped").
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== meson install into a temporary prefix"
meson setup "$work/self" "$src" -Dtests=false -Dexamples=false --prefix=/usr >"$work/self.log" 2>&1 || { cat "$work/self.log"; exit 1; }
DESTDIR="$work/root" meson install -C "$work/self" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
config=$(find "$work/root" -name cachestoreConfig.cmake | head -n1)
[ -n "$config" ] || { echo "no cachestoreConfig.cmake installed"; cat "$work/install.log"; exit 1; }
[ -f "$(dirname "$config")/cachestoreConfigVersion.cmake" ] || { echo "no cachestoreConfigVersion.cmake beside $config"; exit 1; }
echo "installed: ${config#"$work/root"}"

echo "== CMake consumer (cachestore::$([ $s3 = ON ] && echo s3 || echo cachestore), $cxx)"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$src/tests/consumer/cmake" -B "$work/build" "${gen[@]}" -DCMAKE_CXX_COMPILER="$(command -v "$cxx")" -DCMAKE_PREFIX_PATH="$work/root/usr" \
  -DCONSUMER_S3=$s3 -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; exit 1; }
grep 'cachestore 0.2' "$work/cmake.log" || true
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
# The standard flag travelled with the target (cxx_std_23).
grep -Eq -- '-std=(c|gnu)\+\+(23|2b)' "$work/build/compile_commands.json" ||
  { echo "the consumer was not compiled as C++23:"; cat "$work/build/compile_commands.json"; exit 1; }
"$work/build/app"
if [ $s3 = ON ]; then "$work/build/app_compiled"; fi
echo "cmake consumer test passed"
