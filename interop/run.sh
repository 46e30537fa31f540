#!/usr/bin/env bash
# Interop: clients nobody here wrote verify sessiond's tokens. Installs jose (npm) and PyJWT +
# Authlib (PyPI) locally, starts sessiond on loopback, and for EdDSA and ES256: a Node.js and
# a Python resource server verify a fresh session token from the JWKS and refuse a tampered
# one; Authlib introspects and revokes it. Needs cargo, node/npm, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}

(cd interop && npm install --no-audit --no-fund --silent)
venv="$target/venv-interop"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -r interop/requirements.txt
cargo build --quiet -p sessiond
bin="$target/debug/sessiond"

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for alg in EdDSA ES256; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  issuer="http://127.0.0.1:$port"
  admin=interop-admin-token-0123456789
  SESSIOND_LISTEN=127.0.0.1:$port SESSIOND_DATA_DIR="$work/$alg" SESSIOND_ADMIN_TOKEN=$admin \
    SESSIOND_SIGNING_ALGORITHM=$alg SESSIOND_LOG_LEVEL=warn "$bin" serve >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "$issuer/healthz" >/dev/null && break; sleep 0.1; done
  api() { curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$@"; }
  api -X POST "$issuer/admin/v1/tenants" -d '{"id": "interop", "profile": "integration"}' >/dev/null
  api -X POST "$issuer/admin/v1/tenants/interop/users" -d '{"username": "alice", "password": "interop password"}' >/dev/null
  client=$(api -X POST "$issuer/admin/v1/tenants/interop/clients" -d '{"clientId": "resource-server"}')
  secret=$(echo "$client" | sed -E 's/.*"clientSecret":"([^"]+)".*/\1/')
  token=$(curl -sf -X POST "$issuer/api/v2/auth/login" -H 'X-Tenant-ID: interop' \
    -H "X-Activity-ID: $(python3 -c 'import uuid; print(uuid.uuid4())')" -H 'Content-Type: application/json' \
    -d '{"username": "alice", "password": "interop password"}' | sed -E 's/.*"userSessionToken":"([^"]+)".*/\1/')
  echo "== $alg"
  node interop/verify.mjs "$issuer" "$token"
  "$venv/bin/python" interop/verify.py "$issuer" "$token" resource-server "$secret"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo "interop: 2 passed, 0 failed"
