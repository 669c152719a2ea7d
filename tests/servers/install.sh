#!/usr/bin/env bash
# Install the Debian packages the cachestore test servers need.
#
#   tests/servers/install.sh            # everything (RGW, nginx, curl, ...)
#   tests/servers/install.sh nginx curl # only these
#
# Quick no-op when everything is installed. Otherwise runs `apt-get update`
# once and installs the missing packages with --no-install-recommends, with a
# policy-rc.d that forbids package scripts from starting system services
# (Debian's nginx would otherwise listen on 0.0.0.0:80). If a service was
# started anyway (systemd ignoring policy-rc.d, or a pre-existing permissive
# policy), a service from a package installed by this run is stopped and
# disabled afterwards.
#
# moto is not a Debian package: it is pip-installed on the image (PyPI is not
# reachable from here); moto.sh reports when it is missing.
set -euo pipefail

CS_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CS_PROG=install.sh
# shellcheck source=lib.sh
. "$CS_HERE/lib.sh"

DEFAULT_PACKAGES=(radosgw ceph-mon ceph-osd ceph-common nginx curl ca-certificates python3 util-linux procps iproute2)

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

packages=("$@")
((${#packages[@]})) || packages=("${DEFAULT_PACKAGES[@]}")

is_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

missing=()
for p in "${packages[@]}"; do
  is_installed "$p" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  cs_log "all packages present: ${packages[*]}"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || cs_die "apt-get not found; install by hand: ${missing[*]}"

SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || cs_die "not root and no sudo; install by hand: ${missing[*]}"
  SUDO=(sudo -n)
fi

t0=$(cs_now)
cs_log "installing: ${missing[*]}"

# Forbid service starts during the install unless a policy already exists
# (Docker images ship one that says 101 = "action forbidden").
POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  if ((created_policy)); then
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
trap cleanup EXIT
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\n# temporary, from cachestore tests/servers/install.sh\nexit 101\n' |
    "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q --no-install-recommends
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

if ! "${SUDO[@]}" apt-get update -q; then
  cs_die "apt-get update failed"
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}"; then
  cs_die "apt-get install failed for: ${missing[*]}"
fi

for p in "${missing[@]}"; do
  is_installed "$p" || cs_die "package $p is still not installed after apt-get install"
done

# Make sure nothing we just installed left a system service running.
stop_service() {
  local svc=$1 disable=${2:-}
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet "$svc" 2>/dev/null; then
      cs_log "stopping system service $svc started by its package"
      "${SUDO[@]}" systemctl stop "$svc" || true
    fi
    if [[ $disable == disable ]] && systemctl is-enabled --quiet "$svc" 2>/dev/null; then
      cs_log "disabling system service $svc (the tests run their own instance)"
      "${SUDO[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
  fi
}
for p in "${missing[@]}"; do
  case $p in
    nginx | nginx-*)
      stop_service nginx disable
      # Without systemd: a daemon started by the init script.
      if [[ -s /run/nginx.pid ]]; then
        pid=$(cat /run/nginx.pid)
        if cs_pid_alive "$pid" && [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == */nginx ]]; then
          cs_log "stopping system nginx (pid $pid) started by its package"
          "${SUDO[@]}" kill -QUIT "$pid" || true
        fi
      fi
      ;;
    ceph-mon) stop_service ceph-mon.target ;;
    ceph-osd) stop_service ceph-osd.target ;;
    radosgw) stop_service ceph-radosgw.target ;;
  esac
done
cs_log "installed ${missing[*]} in $(cs_elapsed "$t0") s"
