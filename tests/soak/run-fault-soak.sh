#!/usr/bin/env bash
# Runs the soak behind tests/fault/fault_server.py in proxy mode, in front of
# the RGW that tests/servers/with-servers.sh --rgw started.
#
#   tests/soak/run-fault-soak.sh [--python PY] [--fault-server PATH]
#       [--fault-rate R] [--seed N] [--faults k1,k2] -- SOAK [SOAK ARGS...]
#
# Needs CACHESTORE_RGW_ENDPOINT/_ACCESS_KEY/_SECRET_KEY/_BUCKET/_REGION. Starts
# the proxy (--upstream $CACHESTORE_RGW_ENDPOINT), exports CACHESTORE_FAULT_*
# (the RGW credentials, the proxy's endpoint), runs
# `SOAK --server FAULT --verify-server RGW SOAK ARGS...`, always stops the
# proxy, and exits with the soak's status. Without RGW: exit 2 under CI=true,
# otherwise a loud warning and 77 (Meson's "skipped"): never a silent skip.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=python3
server=$here/../fault/fault_server.py
rate=0.03
seed=1
faults=""
while (($#)); do
  case $1 in
    --python) py=$2; shift ;;
    --fault-server) server=$2; shift ;;
    --fault-rate) rate=$2; shift ;;
    --seed) seed=$2; shift ;;
    --faults) faults=$2; shift ;;
    --) shift; break ;;
    *) echo "run-fault-soak.sh: unknown option '$1'" >&2; sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
  shift
done
(($#)) || { echo "run-fault-soak.sh: no soak command after --" >&2; exit 2; }

if [[ -z ${CACHESTORE_RGW_ENDPOINT:-} ]]; then
  case ${CI:-} in
    true | TRUE | True | 1 | yes | YES)
      echo "run-fault-soak.sh: CACHESTORE_RGW_ENDPOINT is not set (run through tests/servers/with-servers.sh --rgw)" >&2
      exit 2 ;;
  esac
  echo "run-fault-soak.sh: WARNING, NOT TESTED: CACHESTORE_RGW_ENDPOINT is not set (run through tests/servers/with-servers.sh --rgw)" >&2
  exit 77
fi

args=(--upstream "$CACHESTORE_RGW_ENDPOINT" --fault-rate "$rate" --seed "$seed" --watch-stdin)
[[ -n $faults ]] && args+=(--faults "$faults")
# The coprocess's stdin is our lifeline: if this script dies, the proxy sees
# end of file and exits.
coproc PROXY { exec "$py" "$server" "${args[@]}"; }
# shellcheck disable=SC2153  # PROXY_PID is set by coproc
proxy_pid=$PROXY_PID
proxy_in=${PROXY[1]}
# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  exec {proxy_in}>&- 2>/dev/null || true
  if kill -0 "$proxy_pid" 2>/dev/null; then
    kill -TERM "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

line=""
read -r -t 15 -u "${PROXY[0]}" line || true
port=${line#PORT }
if [[ $line != PORT* || -z $port ]]; then
  echo "run-fault-soak.sh: the fault proxy did not start (got '$line')" >&2
  exit 2
fi
echo "run-fault-soak.sh: fault proxy on 127.0.0.1:$port -> $CACHESTORE_RGW_ENDPOINT, fault rate $rate, seed $seed" >&2

export CACHESTORE_FAULT_ENDPOINT=http://127.0.0.1:$port
export CACHESTORE_FAULT_ACCESS_KEY=${CACHESTORE_RGW_ACCESS_KEY:-}
export CACHESTORE_FAULT_SECRET_KEY=${CACHESTORE_RGW_SECRET_KEY:-}
export CACHESTORE_FAULT_BUCKET=${CACHESTORE_RGW_BUCKET:-}
export CACHESTORE_FAULT_REGION=${CACHESTORE_RGW_REGION:-}
rc=0
"$@" --server FAULT --verify-server RGW || rc=$?
exit "$rc"
