#!/usr/bin/env bash
# Run a command with local S3 servers up, and always stop them afterwards.
#
#   tests/servers/with-servers.sh [--rgw] [--moto] [--nginx] [--all] -- CMD ARGS...
#
# Starts the requested servers in a fresh temp dir (one sub-directory per
# server), exports the variables from their env files
# (CACHESTORE_RGW_*, CACHESTORE_MOTO_*, CACHESTORE_NGINX_*), plus
# CACHESTORE_SERVERS_DIR, runs CMD, stops the servers (also on Ctrl-C, SIGTERM
# or SIGHUP) and exits with CMD's exit status.
#
# If a requested server fails to start:
#   - CI=true (or 1/yes): print the reason, stop the others, do NOT run CMD,
#     and exit with the failing start script's status (non-zero; moto.sh uses
#     3 for "moto_server not installed");
#   - otherwise: print a loud warning and still run CMD without that server's
#     variables (the tests then fail or skip on their own).
#
# The temp dir is removed afterwards, except when a server failed to start
# and left logs, or CACHESTORE_KEEP_SERVER_DIR=1.
#
# CACHESTORE_PORT_RANGE=LOW-HIGH keeps every port the servers bind inside it;
# a malformed value or one too small for the requested servers is an error
# before anything starts (see README.md).
set -euo pipefail

CS_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CS_PROG=with-servers.sh
# shellcheck source=lib.sh
. "$CS_HERE/lib.sh"

usage() {
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

want=()
add() {
  local s=$1 w
  for w in "${want[@]}"; do [[ $w == "$s" ]] && return 0; done
  want+=("$s")
}
while (($#)); do
  case $1 in
    --rgw) add rgw ;;
    --moto) add moto ;;
    --nginx) add nginx ;;
    --all) add rgw; add moto; add nginx ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) echo "$CS_PROG: unknown option '$1' (server flags go before --, the command after it)" >&2; usage ;;
  esac
  shift
done
(($#)) || { echo "$CS_PROG: no command given after --" >&2; usage; }

# A bad CACHESTORE_PORT_RANGE is fatal here, CI or not: every start would fail.
need=0
for s in "${want[@]}"; do need=$((need + $(cs_ports_needed "$s"))); done
flags=${want[*]/#/--}
cs_port_range "$need" "${flags:-with-servers.sh}"
[[ -z $CS_PORT_LOW ]] ||
  cs_log "ports from CACHESTORE_PORT_RANGE=$CS_PORT_LOW-$CS_PORT_HIGH ($need needed${flags:+ by $flags})"

is_ci() {
  case ${CI:-} in
    true | TRUE | True | 1 | yes | YES) return 0 ;;
  esac
  return 1
}

BASE=$(mktemp -d "${TMPDIR:-/tmp}/cachestore-servers.XXXXXX")
export CACHESTORE_SERVERS_DIR=$BASE
started=()
failed=()
child=""
keep=${CACHESTORE_KEEP_SERVER_DIR:-0}

# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  local rc=$? i s
  trap '' INT TERM HUP PIPE
  # The command first, if a signal cut us short while it was running.
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    s=${started[i]}
    "$CS_HERE/$s.sh" stop "$BASE/$s" || cs_log "WARNING: stopping $s failed (state in $BASE/$s)"
  done
  # A failed start cleans up after itself; this is only a safety net.
  for s in "${failed[@]}"; do
    "$CS_HERE/$s.sh" stop "$BASE/$s" >/dev/null 2>&1 || true
    [[ -d $BASE/$s/log ]] && keep=1
  done
  if [[ $keep == 1 ]]; then
    cs_log "server state and logs kept in $BASE"
  else
    rm -rf "$BASE"
  fi
  exit "$rc"
}
trap cleanup EXIT
# A signal makes `wait` below return; pass it on to the command.
# shellcheck disable=SC2317  # runs from signal traps
on_signal() {
  local sig=$1 code=$2
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    kill "-$sig" "$child" 2>/dev/null || true
    GOT_SIGNAL=$code
  else
    exit "$code"
  fi
}
GOT_SIGNAL=""
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

summary=()
for s in "${want[@]}"; do
  cs_log "starting $s in $BASE/$s ..."
  t=$(cs_now)
  rc=0
  "$CS_HERE/$s.sh" start "$BASE/$s" || rc=$?
  if ((rc == 0)) && [[ -f $BASE/$s/env ]]; then
    started+=("$s")
    # shellcheck disable=SC1090
    . "$BASE/$s/env"
    el=$(cs_elapsed "$t")
    summary+=("$s ${el}s")
    cs_log "$s started in $el s"
    continue
  fi
  ((rc != 0)) || rc=1
  failed+=("$s")
  if ((rc == 3)) && [[ $s == moto ]]; then
    reason="moto_server is not installed"
  else
    reason="$s.sh start exited with status $rc (see the log tail above)"
  fi
  if is_ci; then
    cs_log "ERROR: could not start $s: $reason. CI=$CI, so not running: $*"
    exit "$rc"
  fi
  {
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! WARNING: could not start $s: $reason"
    echo "!!! Running the command WITHOUT it; tests that need it will fail or skip."
    echo "!!! (Set CI=true to make this fatal.)"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo
  } >&2
done

if ((${#summary[@]})); then
  cs_log "servers up: ${summary[*]}"
fi
((${#failed[@]} == 0)) || cs_log "servers NOT up: ${failed[*]}"
cs_log "running: $*"

# Run the command as a child we can wait for while still handling signals.
# An asynchronous command would ignore SIGINT/SIGQUIT; restore them, and keep
# our stdin (it would otherwise be /dev/null).
(
  trap - INT QUIT TERM HUP
  exec "$@"
) <&0 &
child=$!
rc=0
while :; do
  rc=0
  wait "$child" || rc=$?
  # `wait` also returns when a trapped signal arrives; loop until the
  # command itself has exited.
  kill -0 "$child" 2>/dev/null || break
done
child=""
if [[ -n $GOT_SIGNAL ]] && ((rc == 0)); then
  rc=$GOT_SIGNAL
fi
exit "$rc"
