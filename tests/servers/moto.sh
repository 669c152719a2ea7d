#!/usr/bin/env bash
# moto_server as a second, AWS-like S3 server, with SigV4 enforcement ON.
#
#   tests/servers/moto.sh start DIR   # start on a free 127.0.0.1 port, write DIR/env
#   tests/servers/moto.sh stop DIR
#   tests/servers/moto.sh status DIR
#
# moto is pip-installed (PyPI is not reachable here, so this script cannot
# install it). If moto_server is missing, `start` says so and exits 3; callers
# decide whether that is fatal. Set CACHESTORE_MOTO_SERVER to the moto_server
# executable to override the lookup in PATH (pyenv shims are resolved).
#
# Start sequence: moto_server -H 127.0.0.1 -p PORT; wait for /moto-api/;
# through the IAM query API (accepted unauthenticated while enforcement is
# off) create user "cachestore" with an allow-all inline policy and an access
# key; POST /moto-api/reset-auth with body "0" (Content-Type text/plain) to
# turn enforcement on; create bucket cachestore-test signed with the new key;
# check that a wrong secret now gets 403.
#
# moto quirks (see /work/shared/TESTING.md): it closes the connection after
# every response; with auth on, keys containing + = % ! * ' ( ) ; , & $ @ :
# or non-ASCII fail with SignatureDoesNotMatch (moto bug); it does not check
# the payload hash, Content-MD5 or clock skew. The generated secret usually
# contains '+' and '/'.
#
# DIR/env exports CACHESTORE_MOTO_ENDPOINT, CACHESTORE_MOTO_ACCESS_KEY,
# CACHESTORE_MOTO_SECRET_KEY, CACHESTORE_MOTO_BUCKET, CACHESTORE_MOTO_REGION.
# Environment: CACHESTORE_MOTO_START_TIMEOUT (seconds, default 30),
# CACHESTORE_PORT_RANGE=LOW-HIGH (the port comes from it; README.md).
set -euo pipefail

CS_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CS_PROG=moto.sh
# shellcheck source=lib.sh
. "$CS_HERE/lib.sh"

BUCKET=cachestore-test
REGION=us-east-1
IAM_USER=cachestore
START_TIMEOUT=${CACHESTORE_MOTO_START_TIMEOUT:-30}
EXIT_NOT_INSTALLED=3

(($# == 2)) || cs_usage
cmd=$1
CS_DIR=$(cs_abspath "$2")
cs_check_dir "$CS_DIR"
PIDFILE=$CS_DIR/pids/moto.pid
LOG=$CS_DIR/log/moto.log

do_stop() {
  if [[ ! -f $PIDFILE ]]; then
    [[ ${1:-} == quiet ]] || cs_log "moto: not running (no pidfile in $CS_DIR)"
    return 0
  fi
  cs_stop_pidfile "$PIDFILE" moto_server 10
}

# Resolve the real moto_server script (not a pyenv shim, so that the PID we
# record is the server's) or return 1.
find_moto() {
  local m=${CACHESTORE_MOTO_SERVER:-}
  if [[ -z $m ]]; then
    m=$(command -v moto_server 2>/dev/null) || return 1
  fi
  if [[ $m == */shims/* ]] && command -v pyenv >/dev/null 2>&1; then
    m=$(pyenv which moto_server 2>/dev/null) || return 1
  fi
  [[ -x $m ]] || return 1
  echo "$m"
}

fail() {
  cs_log "ERROR: $*"
  exit 1
}

cs_start_failed() {
  do_stop quiet || true
  cs_log_tail "$LOG"
  cs_log "ERROR: moto did not come up (exit $1; state in $CS_DIR)"
}

# iam_call OUTFILE FORMFIELDS...  (POST to the IAM query API, unsigned
# credentials: moto accepts anything with an IAM scope before enforcement)
iam_call() {
  local out=$1 code
  shift
  local args=() f
  for f in "$@"; do args+=(--data-urlencode "$f"); done
  code=$(curl -s -o "$out" -w '%{http_code}' --max-time 20 \
    --aws-sigv4 "aws:amz:$REGION:iam" --user "bootstrap:bootstrap" \
    "${args[@]}" --data-urlencode "Version=2010-05-08" "$ENDPOINT/") || code=000
  if [[ $code != 200 ]]; then
    cs_log "IAM call ($1) answered HTTP $code: $(head -c 600 "$out" 2>/dev/null)"
    return 1
  fi
}

# s3 METHOD PATH KEY SECRET [curl args...] -> prints HTTP status, body in $TMPF
s3() {
  local method=$1 path=$2 key=$3 secret=$4
  shift 4
  curl -s -o "$TMPF" -w '%{http_code}' --max-time 20 -X "$method" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$key:$secret" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@" "$ENDPOINT$path" || echo 000
}

xml_field() { sed -n "s:.*<$1>\\([^<]*\\)</$1>.*:\\1:p" "$2" | head -n1; }

do_start() {
  local t0 port moto
  t0=$(cs_now)
  cs_port_range "$(cs_ports_needed moto)"
  if ! moto=$(find_moto); then
    cs_log "moto_server is NOT installed (not in PATH; set CACHESTORE_MOTO_SERVER)."
    cs_log "It comes from PyPI (pip install 'moto[server]'), which this script does not reach."
    exit "$EXIT_NOT_INSTALLED"
  fi
  cs_ensure_packages curl:curl
  if cs_pidfile_alive "$PIDFILE"; then
    cs_log "moto: an instance is already running in $CS_DIR; stopping it first"
  fi
  do_stop quiet
  mkdir -p "$CS_DIR"
  rm -rf "$CS_DIR/log" "$CS_DIR/tmp" "$CS_DIR/env"
  mkdir -p "$CS_DIR/log" "$CS_DIR/tmp" "$CS_DIR/pids"
  TMPF=$CS_DIR/tmp/resp
  cs_guard_start

  port=$(cs_free_port)
  ENDPOINT=http://127.0.0.1:$port
  # No INITIAL_NO_AUTH_ACTION_COUNT from the caller: we switch auth on ourselves.
  cs_spawn moto "$LOG" env -u INITIAL_NO_AUTH_ACTION_COUNT -u MOTO_PORT \
    PYTHONUNBUFFERED=1 TMPDIR="$CS_DIR/tmp" "$moto" -H 127.0.0.1 -p "$port"
  cs_wait_http "$ENDPOINT/moto-api/" "$START_TIMEOUT" "$PIDFILE" ||
    fail "moto_server did not answer on $ENDPOINT within ${START_TIMEOUT}s"

  # 1. user + allow-all policy + access key, while auth is still off.
  iam_call "$TMPF" Action=CreateUser "UserName=$IAM_USER" || fail "IAM CreateUser failed"
  iam_call "$TMPF" Action=PutUserPolicy "UserName=$IAM_USER" PolicyName=allow-all \
    'PolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}' ||
    fail "IAM PutUserPolicy failed"
  iam_call "$TMPF" Action=CreateAccessKey "UserName=$IAM_USER" || fail "IAM CreateAccessKey failed"
  local key secret
  key=$(xml_field AccessKeyId "$TMPF")
  secret=$(xml_field SecretAccessKey "$TMPF")
  [[ -n $key && -n $secret ]] || fail "could not parse the access key from: $(head -c 600 "$TMPF")"

  # 2. enforcement on (a form content type makes moto answer 500).
  local code
  code=$(curl -s -o "$TMPF" -w '%{http_code}' --max-time 20 -X POST \
    -H 'Content-Type: text/plain' --data-binary 0 "$ENDPOINT/moto-api/reset-auth") || code=000
  [[ $code == 200 ]] || fail "POST /moto-api/reset-auth answered HTTP $code: $(head -c 300 "$TMPF")"

  # 3. bucket, signed with the new key.
  code=$(s3 PUT "/$BUCKET" "$key" "$secret")
  [[ $code == 200 ]] || fail "PUT /$BUCKET answered HTTP $code: $(head -c 600 "$TMPF")"
  code=$(s3 PUT "/$BUCKET/cachestore-selftest" "$key" "$secret" \
    -H "Content-Type: application/octet-stream" --data-binary hello)
  [[ $code == 200 ]] || fail "PUT object answered HTTP $code: $(head -c 600 "$TMPF")"
  code=$(s3 GET "/$BUCKET/cachestore-selftest" "$key" "$secret")
  [[ $code == 200 && $(cat "$TMPF") == hello ]] || fail "GET object answered HTTP $code: $(head -c 600 "$TMPF")"
  code=$(s3 DELETE "/$BUCKET/cachestore-selftest" "$key" "$secret")
  [[ $code == 204 ]] || fail "DELETE object answered HTTP $code: $(head -c 600 "$TMPF")"

  # 4. enforcement really on: wrong secret and unknown key are refused.
  code=$(s3 GET "/$BUCKET?list-type=2" "$key" "wrong$secret")
  [[ $code == 403 ]] || fail "a wrong secret got HTTP $code, not 403: signature enforcement is OFF"
  grep -q SignatureDoesNotMatch "$TMPF" || fail "wrong secret: 403 without SignatureDoesNotMatch: $(head -c 600 "$TMPF")"
  code=$(s3 GET "/$BUCKET?list-type=2" AKIAUNKNOWNKEY000000 "$secret")
  [[ $code == 403 ]] || fail "an unknown access key got HTTP $code, not 403"
  cs_check_listen_range "$PIDFILE" || fail "moto_server listens outside CACHESTORE_PORT_RANGE"

  cs_write_env "$CS_DIR/env" \
    "CACHESTORE_MOTO_ENDPOINT=$ENDPOINT" \
    "CACHESTORE_MOTO_ACCESS_KEY=$key" \
    "CACHESTORE_MOTO_SECRET_KEY=$secret" \
    "CACHESTORE_MOTO_BUCKET=$BUCKET" \
    "CACHESTORE_MOTO_REGION=$REGION"
  rm -f "$TMPF"
  cs_start_done
  cs_log "moto: up at $ENDPOINT (pid $CS_PID, signature enforcement on); started in $(cs_elapsed "$t0") s; env in $CS_DIR/env"
}

do_status() {
  if cs_pidfile_alive "$PIDFILE"; then
    read -r pid _ <"$PIDFILE"
    echo "moto: running (pid $pid)"
    [[ -f $CS_DIR/env ]] && cat "$CS_DIR/env"
    return 0
  fi
  echo "moto: not running"
  return 1
}

case $cmd in
  start) do_start ;;
  stop)
    t0=$(cs_now)
    do_stop
    rm -f "$CS_DIR/env"
    cs_log "moto: stopped in $(cs_elapsed "$t0") s"
    ;;
  status) do_status ;;
  *) cs_usage ;;
esac
