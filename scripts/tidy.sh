#!/usr/bin/env bash
# Runs clang-tidy 16 (checks in .clang-tidy) over one translation unit per
# public header and over the test sources, and exits non-zero on any finding.
#
# Usage: bash scripts/tidy.sh [FILE...]     (default: every header TU and test source)
# Environment: TIDY_JOBS (parallel clang-tidy processes, default: the number of cores)
#
# clang 16 cannot see std::expected in libstdc++ 12 (it defines __cpp_concepts
# < 202002L); redefining the macro, as below, is enough for this code base.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

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

# Test sources NOT checked yet, each listed with its reason: files owned by
# others whose findings were reported to the lead (issue 6) with fixes, or
# that are still being written. tidy.sh prints this list on every run; delete
# a line once its file is clean ("bash scripts/tidy.sh FILE" checks one file).
excluded=(
  tests/chunk_key_test.cpp           # 1 finding reported (performance-unnecessary-value-param)
  tests/conformance/local_test.cpp   # 2 findings + conformance.hpp's 3, reported
  tests/posix_store_test.cpp         # 5 findings reported
  tests/s3/config_test.cpp           # 1 finding reported
  tests/s3/conformance_s3_test.cpp   # conformance.hpp's 3 findings, reported
  tests/s3/rgw_specific_test.cpp     # 6 findings + s3_fixture.hpp's 1, reported
  tests/s3/sigv4_test.cpp            # 2 findings reported
  tests/soak/soak.cpp                # 11 findings reported (new file, being written)
  tests/fault/fault_test.cpp         # being written (issue 6); not checked yet
  tests/bench/bench.cpp              # being written (issue 6); not checked yet
)

files=("$@")
if ((${#files[@]} == 0)); then
  # One TU per public header: the headers are checked where they are used alone.
  while IFS= read -r h; do
    rel=${h#include/}
    tu=$work/header_$(echo "$rel" | tr '/.' '__').cpp
    printf '#include "%s"\n' "$rel" >"$tu"
    files+=("$tu")
  done < <(find include/cachestore -name '*.hpp' | sort)
  # Every test source but the listed exclusions.
  while IFS= read -r f; do
    skip=0
    for x in "${excluded[@]}"; do [ "$f" = "$x" ] && skip=1; done
    ((skip)) || files+=("$f")
  done < <(find tests -name '*.cpp' | sort)
  echo "tidy.sh: NOT checked (listed in scripts/tidy.sh with reasons): ${excluded[*]}"
fi

# Extra flags some translation units need (as tests/meson.build passes them).
extra_flags() {
  case $1 in
    */conformance_s3_test.cpp) echo "-DS3_SERVER=rgw" ;;
  esac
}

jobs=${TIDY_JOBS:-$(nproc)}
echo "== tidy.sh: clang-tidy-16 on ${#files[@]} translation units, $jobs at a time"
i=0
for f in "${files[@]}"; do
  i=$((i + 1))
  log=$work/$i.log
  # shellcheck disable=SC2046
  ( clang-tidy-16 --quiet --config-file="$root/.clang-tidy" "$f" -- "${flags[@]}" $(extra_flags "$f") \
      >"$log" 2>&1; echo $? >"$log.rc" ) &
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n; done
done
wait

# Findings, each once (a header's finding shows up in every TU that includes it).
cat "$work"/*.log | grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' | sed "s|$root/||" | sort -u >"$work/findings"
failed_tus=0
for rc in "$work"/*.rc; do [ "$(cat "$rc")" = 0 ] || failed_tus=$((failed_tus + 1)); done
n=$(wc -l <"$work/findings")
if ((n > 0 || failed_tus > 0)); then
  cat "$work/findings"
  if ((n == 0)); then
    echo "tidy.sh: clang-tidy failed without a finding; its output:"
    for rc in "$work"/*.rc; do [ "$(cat "$rc")" = 0 ] || cat "${rc%.rc}"; done | head -100
  fi
  echo "tidy.sh: $n findings in ${failed_tus} translation units"
  exit 1
fi
echo "tidy.sh: clean (${#files[@]} translation units)"
