#!/usr/bin/env bash
# Installs what building and testing cachestore needs on Debian 12, as root.
# Quick and silent when everything is already there.
# Usage: install-deps.sh [--no-servers]   (--no-servers: not the local S3 servers' packages)
set -euo pipefail
servers=1
[ "${1:-}" = --no-servers ] && servers=0
pkgs=(build-essential meson ninja-build pkg-config python3 curl openssl cmake   # cmake: the CMake-consumer test
      libcurl4-openssl-dev libssl-dev nlohmann-json3-dev catch2
      libcpp-httplib-dev awscli   # the range_proxy example's HTTP server; the AWS CLI reads through it in its tests
      libasio-dev   # standalone Asio: the optional Asio adapter's test only (the library does not need it)
      libs3-dev valgrind   # libs3 and valgrind: benchmark baselines only
      clang-16 libclang-rt-16-dev clang-tidy-16)  # libFuzzer and clang-tidy (scripts/fuzz.sh, tidy.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# The local S3 servers (Ceph RGW, nginx) install themselves on first use.
if ((servers)); then bash "$(dirname "$0")/../tests/servers/install.sh"; fi
