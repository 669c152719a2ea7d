#!/usr/bin/env bash
# examples/async_reads against Ceph RGW (CACHESTORE_RGW_*, exported by
# tests/servers/with-servers.sh --rgw): 128 reads in flight on one thread for
# 1 s, every byte checked by the program; the process has one thread while it
# reads. Without the server: a failure under CI=true, a loud skip elsewhere.
#   async_reads_test.sh ASYNC_READS_BINARY
set -euo pipefail
bin=$1
if [ -z "${CACHESTORE_RGW_ENDPOINT:-}" ]; then
  echo "async_reads_test: no RGW (CACHESTORE_RGW_ENDPOINT unset): run under tests/servers/with-servers.sh --rgw" >&2
  [ "${CI:-}" != true ]
  exit
fi
export AWS_ACCESS_KEY_ID=$CACHESTORE_RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$CACHESTORE_RGW_SECRET_KEY
export AWS_REGION=$CACHESTORE_RGW_REGION
enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$CACHESTORE_RGW_ENDPOINT")
out=$("$bin" --store "s3://$CACHESTORE_RGW_BUCKET/async-reads-test/?endpoint=$enc" --in-flight 128 --seconds 1 \
  --size 4K --max-connections 8)
echo "$out"
grep -q '^  threads     1 in the process' <<<"$out" || { echo "async_reads_test: more than one thread" >&2; exit 1; }
grep -q '^  errors      0 failed, 0 wrong bytes' <<<"$out" || { echo "async_reads_test: errors" >&2; exit 1; }
# Usage errors exit 2 and say why.
rc=0; "$bin" --store mem: >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || { echo "async_reads_test: a mem: store gave $rc, not 2" >&2; exit 1; }
echo "async_reads_test: ok"
