#!/usr/bin/env bash
# Property-based API testing: Schemathesis (PyPI) generates requests from the OpenAPI document
# the server serves (/openapi.json) and fails on any 5xx, and on any response that does not
# match the document (status code, content type, body schema). Installs Schemathesis into a
# venv under the cargo target dir, builds and starts sessiond on loopback with a temp data
# dir, seeds a tenant, a user, a service client and a partner secret, runs, stops the server.
# Needs cargo, python3 (3.11+) and curl. Exits non-zero on any failure.
#
#   bash .ci/schemathesis.sh                     # default budget
#   SCHEMATHESIS_MAX_EXAMPLES=100 bash .ci/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
version=4.32.5
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-50}
seed=${SCHEMATHESIS_SEED:-}

venv="$target/venv-schemathesis"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version" \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"

cargo build --quiet -p sessiond
bin="$target/debug/sessiond"

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin=schemathesis-admin-token-0123456789
tenant=fuzz
# Rate limits off: a 429 is documented and fine, but it would keep requests from the code
# behind it.
SESSIOND_LISTEN=127.0.0.1:$port SESSIOND_DATA_DIR="$work/data" SESSIOND_ADMIN_TOKEN=$admin \
  SESSIOND_LIMITS_AUTH_PER_MINUTE=0 SESSIOND_LIMITS_PARTNER_PER_MINUTE=0 \
  SESSIOND_LOG_LEVEL=warn "$bin" serve >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

api() { curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$@"; }
field() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\\1/"; }
# A playground tenant (no X-Activity-ID required), so generated end-user requests get past the
# header checks to the handlers; a user with a live session, a service client, a partner secret.
api -X POST "$base/admin/v1/tenants" -d "{\"id\": \"$tenant\", \"profile\": \"playground\"}" >/dev/null
api -X POST "$base/admin/v1/tenants/$tenant/users" \
  -d '{"username": "alice", "password": "schemathesis password"}' >/dev/null
client_secret=$(api -X POST "$base/admin/v1/tenants/$tenant/clients" -d '{"clientId": "fuzz-client"}' \
  | field clientSecret)
partner_secret=$(api -X POST "$base/admin/v1/tenants/$tenant/partner-secrets" | field secret)
session() {
  curl -sf -X POST "$base/api/v2/auth/login" -H "X-Tenant-ID: $tenant" -H 'Content-Type: application/json' \
    -d '{"username": "alice", "password": "schemathesis password"}' | field userSessionToken
}

# Four runs, each with the credentials its operations take (a header given here replaces the
# generated one): the operator API with the admin token; the end-user and partner API with a
# live session token and the partner secret; logout and logout-all last, as they end the
# session; the service endpoints with the client's Basic credentials and a live session token.
# X-Tenant-ID names the seeded tenant throughout. The examples per operation bound the run to
# a few minutes. One worker: Hypothesis' example generation is not thread-safe (it flakes with
# `FlakyFailure ... KeyError` in the examples phase under --workers 2).
status=0
run() {
  echo "== schemathesis: $1"
  shift
  # From the temp dir: Schemathesis keeps a cache in ./.schemathesis.
  (cd "$work" && "$venv/bin/schemathesis" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$max_examples" \
    ${seed:+--seed "$seed"} \
    --workers 1 \
    --request-timeout 10 \
    --suppress-health-check all \
    --warnings off \
    -H "X-Tenant-ID: $tenant" \
    "$@") || status=1
}
run "operator API" -H "Authorization: Bearer $admin" --include-tag admin
run "end-user and partner API" -H "Authorization: Bearer $(session)" -H "X-PARTNER-SECRET: $partner_secret" \
  --include-tag end-user --include-tag partner --include-tag well-known --include-tag health \
  --exclude-operation-id logout --exclude-operation-id logoutAll
run "logout" -H "Authorization: Bearer $(session)" --include-operation-id logout --include-operation-id logoutAll
run "service endpoints" --auth "fuzz-client:$client_secret" -H "X-User-Session-Token: $(session)" \
  --include-tag internal --include-tag oauth2

if [ "$status" -ne 0 ]; then
  echo "schemathesis: failures; server log:" >&2
  grep -iE '"level":"(ERROR|WARN)"|panick' "$work/server.log" | tail -20 >&2 || true
fi
exit "$status"
