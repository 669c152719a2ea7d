#!/usr/bin/env bash
# Makes the TLS material the tests use, at test time, with the openssl tool:
#
#   tests/servers/tls.sh DIR
#
#   DIR/ca.pem, ca.key            a private CA (never trusted by the system)
#   DIR/server.pem, server.key    signed by it for DNS:localhost only, so that
#                                 https://localhost:PORT verifies and
#                                 https://127.0.0.1:PORT is a host-name mismatch
#   DIR/expired.pem, expired.key  signed by it for DNS:localhost, valid only
#                                 in January 2020
#
# Idempotent: does nothing when DIR/server.pem exists.
set -euo pipefail
(($# == 1)) || { echo "usage: tls.sh DIR" >&2; exit 2; }
dir=$1
[[ -f $dir/server.pem && -f $dir/expired.pem ]] && exit 0
command -v openssl >/dev/null || { echo "tls.sh: the openssl tool is missing (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
log=$dir/tls.log
: >"$log"
run() { "$@" >>"$log" 2>&1 || { echo "tls.sh: failed: $*" >&2; cat "$log" >&2; exit 1; }; }

run openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
  -subj "/CN=cachestore test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

mkdir -p ca/newcerts
: >ca/index.txt
echo 1000 >ca/serial
cat >ca.cnf <<EOF
[ca]
default_ca = test_ca
[test_ca]
dir = $dir/ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
EOF

# name START END: a key, a request for DNS:localhost, a certificate signed by the CA.
issue() {
  local name=$1 start=$2 end=$3
  run openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" -addext "extendedKeyUsage=serverAuth"
  run openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in "$name.csr" -out "$name.pem" \
    -startdate "$start" -enddate "$end" -notext
  rm -f "$name.csr"
}
issue server "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)" "$(date -u -d '+30 days' +%Y%m%d%H%M%SZ)"
issue expired 20200101000000Z 20200131000000Z
chmod 600 ./*.key
