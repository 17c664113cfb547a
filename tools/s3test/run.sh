#!/usr/bin/env bash
# Real S3 clients against `dare serve`: the pytest suite in this directory (boto3 with its
# default configuration, and the `aws` CLI) runs against two servers this script starts on
# loopback ports it lets the kernel choose (127.0.0.1:0) — one over plain HTTP, one over HTTPS
# with a certificate signed by a throwaway CA made here with openssl — each on its own
# temporary store. Both servers are stopped on exit; at the end each must shut down cleanly
# on SIGTERM (exit status 0).
#
# Usage: tools/s3test/run.sh DARE_BINARY [pytest arguments...]
# Needs: python3 with boto3, awscli and pytest (`python3 -m pip install boto3 awscli pytest`),
# openssl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 DARE_BINARY [pytest args...]" >&2; exit 2; }
dare=$(realpath "$1"); shift
[ -x "$dare" ] || { echo "s3test: $dare is not an executable" >&2; exit 2; }
missing=""
python3 -c 'import boto3' 2>/dev/null || missing="$missing boto3"
python3 -c 'import pytest' 2>/dev/null || missing="$missing pytest"
command -v aws >/dev/null 2>&1 || missing="$missing awscli"
if [ -n "$missing" ]; then
  echo "s3test: missing:$missing — install them with: python3 -m pip install boto3 awscli pytest" >&2
  exit 1
fi
command -v openssl >/dev/null || { echo "s3test: needs openssl (apt-get install openssl)" >&2; exit 1; }
for v in DARE_STORE DARE_METADATA_URL DARE_PASSPHRASE_FILE DARE_HSM_MODULE DARE_HSM_TOKEN \
         DARE_HSM_KEY DARE_HSM_PIN_FILE DARE_HSM_PIN AWS_PROFILE AWS_ACCESS_KEY_ID \
         AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_CA_BUNDLE; do
  unset "$v"
done

work=$(mktemp -d)
chmod 700 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Credentials: a random key pair, one ACCESS_KEY_ID:SECRET_ACCESS_KEY line, mode 0600.
access="S3T$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)"
secret="$(od -An -N30 -tx1 /dev/urandom | tr -d ' \n')"
(umask 077; printf '%s:%s\n' "$access" "$secret" > "$work/credentials")

# A CA and a server certificate for 127.0.0.1 (and localhost) signed by it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=dare s3test CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/ext" -out "$work/server.pem" 2>/dev/null
chmod 600 "$work/server.key"

# store NAME: a fresh store with what the suite needs made through the CLI beforehand: two
# customer master keys (one disabled) and a plaintext bucket (in a namespace with encryption off). Prints shell assignments.
store() {
  local s=$work/$1
  x() { "$dare" --store "$s" "$@"; }
  x init --chunk-size 65536 >/dev/null
  local kid kdis
  kid=$(x kms create --alias "s3test-$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
  kdis=$(x kms create --alias "s3test-$1-off" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
  x kms disable "$kdis" >/dev/null
  x ns create clear --encryption off >/dev/null
  x bucket create plain-bucket --namespace clear >/dev/null
  echo "$s|$kid|s3test-$1|$kdis"
}

# serve NAME STORE [flags...]: starts `dare serve` on 127.0.0.1:0 and prints its URL once
# it said `listening on URL`.
serve() {
  local name=$1 s=$2; shift 2
  "$dare" --store "$s" serve --listen 127.0.0.1:0 --credentials "$work/credentials" "$@" \
    > "$work/$name.out" 2> "$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  echo "$pid" > "$work/$name.pid"
  for _ in $(seq 1 300); do
    if url=$(sed -n 's/^listening on \(https\{0,1\}:\/\/[^ ]*\)$/\1/p' "$work/$name.out" | head -n1) && [ -n "$url" ]; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "s3test: dare serve ($name) exited before listening:" >&2
      cat "$work/$name.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "s3test: dare serve ($name) did not print 'listening on URL' within 30 s" >&2
  cat "$work/$name.err" >&2
  exit 1
}

store http > "$work/http.vars" || { echo "s3test: making the http store failed" >&2; exit 1; }
store https > "$work/https.vars" || { echo "s3test: making the https store failed" >&2; exit 1; }
IFS='|' read -r http_store http_kid http_alias http_kdis < "$work/http.vars"
IFS='|' read -r https_store https_kid https_alias https_kdis < "$work/https.vars"
[ -n "$http_kdis" ] && [ -n "$https_kdis" ] || { echo "s3test: store setup printed nothing" >&2; exit 1; }
url=""
serve http "$http_store"
http_url=$url
serve https "$https_store" --tls-cert "$work/server.pem" --tls-key "$work/server.key"
https_url=$url
case $http_url in http://*) ;; *) echo "s3test: plain server announced $http_url" >&2; exit 1 ;; esac
case $https_url in https://*) ;; *) echo "s3test: TLS server announced $https_url" >&2; exit 1 ;; esac
echo "s3test: dare serve on $http_url and $https_url"

export S3T_DARE=$dare S3T_ACCESS=$access S3T_SECRET=$secret S3T_CA=$work/ca.pem S3T_WORK=$work
export S3T_HTTP_URL=$http_url S3T_HTTP_STORE=$http_store S3T_HTTP_KMS_KEY=$http_kid
export S3T_HTTP_KMS_ALIAS=$http_alias S3T_HTTP_KMS_DISABLED=$http_kdis
export S3T_HTTPS_URL=$https_url S3T_HTTPS_STORE=$https_store S3T_HTTPS_KMS_KEY=$https_kid
export S3T_HTTPS_KMS_ALIAS=$https_alias S3T_HTTPS_KMS_DISABLED=$https_kdis
export PYTHONDONTWRITEBYTECODE=1
status=0
(cd "$here" && python3 -m pytest -p no:cacheprovider -q -rxXfE "$@" test_s3.py) || status=$?

# Graceful shutdown: SIGTERM, then exit status 0.
for name in http https; do
  pid=$(cat "$work/$name.pid")
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "s3test: FAILED: dare serve ($name) exited with status $rc on SIGTERM:" >&2
    tail -n 20 "$work/$name.err" >&2
    status=1
  fi
done
pids=() # reaped: nothing left for the exit trap to kill
if [ "$status" -ne 0 ]; then
  echo "s3test: FAILED (server logs above; http: $(tail -n 5 "$work/http.err" | tr '\n' ' '))" >&2
  exit "$status"
fi
echo "s3test: passed; both servers shut down cleanly on SIGTERM"
