# shellcheck shell=bash
# Helpers shared by the cachestore test-server scripts (rgw.sh, moto.sh,
# nginx.sh, with-servers.sh). Sourced, never executed.
#
# Process bookkeeping: every server process we start is recorded in
# DIR/pids/NAME.pid as "PID STARTTIME", where STARTTIME is field 22 of
# /proc/PID/stat. `cs_stop_pidfile` only signals a PID whose start time still
# matches, so a recycled PID is never touched.

CS_PROG=${CS_PROG:-$(basename "$0")}

cs_log() { printf '%s: %s\n' "$CS_PROG" "$*" >&2; }
cs_die() { printf '%s: ERROR: %s\n' "$CS_PROG" "$*" >&2; exit 1; }

# Current time in seconds with millisecond precision.
cs_now() { date +%s.%3N; }
# cs_elapsed START -> "12.345" (seconds since START)
cs_elapsed() { awk -v a="$1" -v b="$(cs_now)" 'BEGIN { printf "%.3f", b - a }'; }

# Absolute path of $1 without requiring it to exist.
cs_abspath() { realpath -m -- "$1"; }

# Refuse obviously dangerous state directories: we delete our own
# sub-paths in them on start.
cs_check_dir() {
  local d=$1
  [[ -n $d ]] || cs_die "state directory argument is empty"
  case $d in
    / | /root | /home | /tmp | /var | /var/tmp | /usr | /etc | /opt | /srv | /bin | /lib | /run | "${HOME:-/root}")
      cs_die "refusing to use '$d' as a server state directory; give a dedicated directory" ;;
  esac
}

# ---- ports ---------------------------------------------------------------
# CACHESTORE_PORT_RANGE=LOW-HIGH (inclusive; unset or empty: no limit) keeps
# every port the servers bind inside LOW..HIGH: cs_free_port draws from it,
# and rgw.sh gives the Ceph OSD a block of it (ms bind port min/max).
# Unset, ports come from the kernel's ephemeral range (and the OSD from
# Ceph's default 6800-7300), as before the setting existed.

# Ports each start script binds inside the range. The OSD binds 4 (public,
# cluster, heartbeat front and back; msgr v1 only); its block has one spare,
# because a rebind after a (wrong) mark-down avoids the port in use.
CS_OSD_PORT_BLOCK=5
cs_ports_needed() {
  case $1 in
    rgw) echo $((3 + CS_OSD_PORT_BLOCK)) ;; # monitor, radosgw http + https, OSD block
    moto | nginx) echo 1 ;;
    *) echo 0 ;;
  esac
}

# cs_port_range [NEEDED [WHO]] -> validates CACHESTORE_PORT_RANGE and sets
# CS_PORT_LOW/CS_PORT_HIGH (both empty when unset). Dies on a malformed or
# reversed range, or one with fewer than NEEDED ports (WHO names the user).
cs_port_range() {
  local need=${1:-1} who=${2:-$CS_PROG} r=${CACHESTORE_PORT_RANGE:-} lo hi
  CS_PORT_LOW="" CS_PORT_HIGH=""
  [[ -n $r ]] || return 0
  [[ $r =~ ^([0-9]{1,5})-([0-9]{1,5})$ ]] ||
    cs_die "CACHESTORE_PORT_RANGE='$r' is not LOW-HIGH (two port numbers, both inclusive, e.g. 7400-7699)"
  lo=$((10#${BASH_REMATCH[1]}))
  hi=$((10#${BASH_REMATCH[2]}))
  ((lo >= 1 && hi <= 65535)) || cs_die "CACHESTORE_PORT_RANGE='$r': ports must be between 1 and 65535"
  ((lo <= hi)) || cs_die "CACHESTORE_PORT_RANGE='$r' is reversed: LOW ($lo) is above HIGH ($hi)"
  ((hi - lo + 1 >= need)) ||
    cs_die "CACHESTORE_PORT_RANGE='$r' has $((hi - lo + 1)) port(s), fewer than the $need needed by $who"
  CS_PORT_LOW=$lo
  CS_PORT_HIGH=$hi
}

# cs__excluded PORT EXCLUDE... -> true if PORT is one of the EXCLUDEs (ports
# or LOW-HIGH ranges).
cs__excluded() {
  local p=$1 e
  shift
  for e in "$@"; do
    [[ -n $e ]] || continue
    if [[ $e == *-* ]]; then
      ((p >= ${e%-*} && p <= ${e#*-})) && return 0
    else
      ((p == e)) && return 0
    fi
  done
  return 1
}

# A port the kernel picks (a throw-away bind to port 0).
cs__kernel_port() {
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" - <<'EOF' && return 0
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
    fi
  done
  # Fallback without python: random high port that nobody answers on.
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  cs_die "could not find a free TCP port on 127.0.0.1"
}

# cs_free_port [EXCLUDE...] -> prints a free TCP port on 127.0.0.1 that is
# not among the EXCLUDEs (ports or LOW-HIGH ranges, e.g. ports picked but not
# bound yet): from CACHESTORE_PORT_RANGE when it is set, else the kernel's.
# shellcheck disable=SC2120  # the EXCLUDEs are optional
cs_free_port() {
  cs_port_range
  if [[ -n $CS_PORT_LOW ]]; then
    cs_free_port_block 1 "$@"
    return
  fi
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$(cs__kernel_port) || return 1
    cs__excluded "$p" "$@" || { echo "$p"; return 0; }
  done
  cs_die "could not find a free TCP port on 127.0.0.1 outside $*"
}

# cs_free_port_block N [EXCLUDE...] -> prints the first of N consecutive free
# TCP ports on 127.0.0.1 inside CACHESTORE_PORT_RANGE (which must be set),
# none among the EXCLUDEs; the block starts at a random place in the range.
# "Free" = a bind with SO_REUSEADDR succeeds, as it does for the servers.
cs_free_port_block() {
  local n=$1 py rc
  shift
  cs_port_range "$n"
  [[ -n $CS_PORT_LOW ]] || cs_die "cs_free_port_block: CACHESTORE_PORT_RANGE is not set"
  for py in /usr/bin/python3 python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    rc=0
    "$py" - "$CS_PORT_LOW" "$CS_PORT_HIGH" "$n" "$@" <<'EOF' || rc=$?
import random, socket, sys
lo, hi, n = (int(a) for a in sys.argv[1:4])
excluded = set()
for e in sys.argv[4:]:
    if e:
        a, _, b = e.partition("-")
        excluded.update(range(int(a), int(b or a) + 1))
def free(p):
    if p in excluded:
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
starts = list(range(lo, hi - n + 2))
random.shuffle(starts)
for p in starts:
    if all(free(q) for q in range(p, p + n)):
        print(p)
        sys.exit(0)
sys.exit(3)
EOF
    ((rc == 0)) && return 0
    ((rc == 3)) && break
  done
  if ((rc != 3)); then
    # Without python: walk the range once from a random point; a port counts
    # as free when a connection to it is refused.
    local size=$((CS_PORT_HIGH - CS_PORT_LOW + 1)) off=$((RANDOM % (CS_PORT_HIGH - CS_PORT_LOW + 1))) i j p ok
    for ((i = 0; i < size; i++)); do
      p=$((CS_PORT_LOW + (off + i) % size))
      ((p + n - 1 <= CS_PORT_HIGH)) || continue
      ok=1
      for ((j = p; j < p + n; j++)); do
        if cs__excluded "$j" "$@" || (exec 3<>"/dev/tcp/127.0.0.1/$j") 2>/dev/null; then
          ok=0
          break
        fi
      done
      ((ok)) && { echo "$p"; return 0; }
    done
  fi
  if ((n == 1)); then
    cs_die "no free TCP port on 127.0.0.1 in CACHESTORE_PORT_RANGE=$CACHESTORE_PORT_RANGE${*:+ (besides $*)}: all in use; widen the range"
  fi
  cs_die "no $n consecutive free TCP ports on 127.0.0.1 in CACHESTORE_PORT_RANGE=$CACHESTORE_PORT_RANGE${*:+ (besides $*)}; widen the range"
}

# cs_check_listen_range PIDFILE... -> with CACHESTORE_PORT_RANGE set, logs the
# TCP ports each recorded process listens on and fails if one is outside the
# range (after cs_port_range). Needs ss (iproute2); skipped without it.
cs_check_listen_range() {
  [[ -n ${CS_PORT_LOW:-} ]] || return 0
  if ! command -v ss >/dev/null 2>&1; then
    cs_log "ss (iproute2) is missing: not checking the listening ports against CACHESTORE_PORT_RANGE"
    return 0
  fi
  local table f name pid port ports list bad=0
  table=$(ss -Hltnp 2>/dev/null) || return 0
  for f in "$@"; do
    name=$(basename "$f" .pid)
    read -r pid _ 2>/dev/null <"$f" || continue
    ports=$(awk -v k="pid=$pid," 'index($0, k) { n = split($4, a, ":"); print a[n] }' <<<"$table" | sort -un)
    list=${ports//$'\n'/ }
    cs_log "$name (pid $pid) listens on: ${list:-(none seen)}"
    for port in $ports; do
      if ((port < CS_PORT_LOW || port > CS_PORT_HIGH)); then
        cs_log "ERROR: $name (pid $pid) listens on port $port, outside CACHESTORE_PORT_RANGE=$CACHESTORE_PORT_RANGE"
        bad=1
      fi
    done
  done
  return $bad
}

# Start time (in clock ticks since boot) of a PID, or empty.
cs_pid_starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # Field 2 (comm) may contain spaces; strip through the last ')'.
  stat=${stat##*) }
  # Now field 3 (state) is the first word; starttime is field 22 overall.
  awk '{ print $20 }' <<<"$stat"
}

cs_pid_alive() {
  # Running and not a zombie.
  local st
  [[ -r /proc/$1/stat ]] || return 1
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st%% *} != Z ]]
}

# cs_spawn NAME LOGFILE CMD ARGS...  -> starts CMD detached (own session, stdin
# /dev/null, stdout+stderr to LOGFILE), records DIR/pids/NAME.pid, sets CS_PID.
# Needs CS_DIR.
cs_spawn() {
  local name=$1 logfile=$2
  shift 2
  mkdir -p "$CS_DIR/pids"
  # In a non-interactive shell a background job is not a process-group
  # leader, so setsid(1) calls setsid() and execs without forking: $! is the
  # server's own PID.
  setsid "$@" </dev/null >>"$logfile" 2>&1 &
  CS_PID=$!
  local st="" i
  for ((i = 0; i < 50; i++)); do
    st=$(cs_pid_starttime "$CS_PID")
    [[ -n $st ]] && break
    sleep 0.01
  done
  echo "$CS_PID $st" >"$CS_DIR/pids/$name.pid"
}

# True if the process recorded in pidfile $1 is still the one we started.
cs_pidfile_alive() {
  local f=$1 pid st
  [[ -f $f ]] || return 1
  read -r pid st <"$f" || return 1
  [[ -n $pid ]] || return 1
  cs_pid_alive "$pid" || return 1
  [[ -z $st || $(cs_pid_starttime "$pid") == "$st" ]]
}

# cs_stop_pidfile PIDFILE LABEL TIMEOUT_SECONDS
# TERM, wait up to TIMEOUT, then KILL and wait a little more. Removes the
# pidfile. Returns non-zero only if the process survived SIGKILL.
cs_stop_pidfile() {
  local f=$1 label=$2 timeout=${3:-10} pid st deadline
  [[ -f $f ]] || return 0
  read -r pid st <"$f" || true
  if ! cs_pidfile_alive "$f"; then
    rm -f "$f"
    return 0
  fi
  local t0
  t0=$(cs_now)
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(($(date +%s%N) + timeout * 1000000000))
  while cs_pid_alive "$pid" && (($(date +%s%N) < deadline)); do
    sleep 0.05
  done
  if cs_pid_alive "$pid"; then
    cs_log "$label (pid $pid) still running ${timeout}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$(($(date +%s%N) + 5 * 1000000000))
    while cs_pid_alive "$pid" && (($(date +%s%N) < deadline)); do
      sleep 0.05
    done
  fi
  if cs_pid_alive "$pid"; then
    cs_log "$label (pid $pid) survived SIGKILL"
    return 1
  fi
  cs_log "stopped $label (pid $pid) in $(cs_elapsed "$t0") s"
  rm -f "$f"
}

# Print the last lines of each given log file that exists.
cs_log_tail() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n "${CS_TAIL_LINES:-15}" "$f" >&2
  done
}

# Single-quote a value for a shell `export` line.
cs_shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# cs_write_env FILE NAME=VALUE... -> atomically writes export lines.
cs_write_env() {
  local file=$1 kv
  shift
  {
    echo "# written by $CS_PROG on $(date -u +%Y-%m-%dT%H:%M:%SZ); source this file"
    for kv in "$@"; do
      printf 'export %s=%s\n' "${kv%%=*}" "$(cs_shquote "${kv#*=}")"
    done
  } >"$file.tmp"
  mv -f "$file.tmp" "$file"
}

# cs_wait_http URL TIMEOUT [PIDFILE...] -> waits until URL answers with any
# HTTP status; fails early if a process from one of the PIDFILEs dies.
cs_wait_http() {
  local url=$1 timeout=$2 deadline code f
  shift 2
  deadline=$(($(date +%s%N) + timeout * 1000000000))
  while (($(date +%s%N) < deadline)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true)
    if [[ -n $code && $code != 000 ]]; then
      return 0
    fi
    for f in "$@"; do
      if ! cs_pidfile_alive "$f"; then
        cs_log "the process from $f exited before $url answered"
        return 1
      fi
    done
    sleep 0.1
  done
  cs_log "$url did not answer within ${timeout}s"
  return 1
}

# cs_ensure_packages CMD:PKG... -> runs install.sh for the packages whose
# command is missing (quick no-op when everything is present).
cs_ensure_packages() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  ((${#missing[@]} == 0)) && return 0
  cs_log "missing commands; installing Debian packages: ${missing[*]}"
  "$CS_HERE/install.sh" "${missing[@]}"
}

# Standard "usage" for the start/stop scripts.
cs_usage() {
  echo "usage: $CS_PROG start|stop|status DIR" >&2
  exit 2
}

# Start guard: after cs_guard_start, any exit before cs_start_done (an error,
# set -e, Ctrl-C, SIGTERM) calls the script's cs_start_failed function, which
# must print the log tails and stop whatever was started.
CS_START_OK=0
cs_guard_start() {
  CS_START_OK=0
  trap 'cs__start_exit $?' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
cs__start_exit() {
  local rc=$1
  trap - EXIT INT TERM
  # A closed stderr (e.g. `| head`) must not abort the cleanup.
  trap '' PIPE
  if ((rc != 0 && !CS_START_OK)); then
    cs_start_failed "$rc" || true
  fi
  exit "$rc"
}
cs_start_done() {
  CS_START_OK=1
  trap - EXIT INT TERM
}
