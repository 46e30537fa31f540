#!/usr/bin/env bash
# Browser tests of the operator console: Playwright driving Debian's chromium against a
# freshly started sessiond (SQLite in a temp dir). Installs chromium from Debian when
# /usr/bin/chromium is missing (Playwright's own browser download is not used), the npm
# packages from e2e/package-lock.json, builds sessiond (debug) unless SESSIOND_BIN names a
# binary, creates three operators (admin, operator, viewer), a tenant and two users, then
# runs `npx playwright test`. Screenshots land in docs/console/. Needs cargo, node/npm, curl,
# python3. Extra arguments go to `playwright test` (e.g. `-g viewer`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}

if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  sudo=
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

(cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)

if [ -n "${SESSIOND_BIN:-}" ]; then
  bin=$(realpath "$SESSIOND_BIN")
  unset SESSIOND_BIN # sessiond reads every SESSIOND_* variable as configuration
else
  cargo build --quiet -p sessiond --locked
  bin="$target/debug/sessiond"
fi

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin_token=e2e-admin-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export SESSIOND_URL=$base SESSIOND_ADMIN_TOKEN=$admin_token SESSIOND_DATA_DIR="$work/data"

SESSIOND_LISTEN=127.0.0.1:$port SESSIOND_LOG_FORMAT=text SESSIOND_LOG_LEVEL=warn \
  "$bin" serve >"$work/server.log" 2>&1 &
pid=$!
ready=
for _ in $(seq 300); do
  if curl -sf "$base/readyz" >/dev/null; then ready=1; break; fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "sessiond did not become ready on $base:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

# Operators, with the CLI (it reads SESSIOND_URL and SESSIOND_ADMIN_TOKEN).
export E2E_ADMIN_USER=e2e-admin E2E_OPERATOR_USER=e2e-operator E2E_VIEWER_USER=e2e-viewer
export E2E_ADMIN_PASSWORD="admin password $RANDOM$RANDOM"
export E2E_OPERATOR_PASSWORD="operator password $RANDOM$RANDOM"
export E2E_VIEWER_PASSWORD="viewer password $RANDOM$RANDOM"
operator() { # username role password
  if "$bin" operator --help >/dev/null 2>&1; then
    SESSIOND_OPERATOR_PASSWORD=$3 "$bin" operator create --username "$1" --role "$2" >/dev/null
  else # a binary without the CLI command: the admin API does the same
    curl -sf -X POST "$base/admin/v1/operators" -H "Authorization: Bearer $admin_token" \
      -H 'Content-Type: application/json' \
      -d "{\"username\": \"$1\", \"role\": \"$2\", \"password\": \"$3\"}" >/dev/null
  fi
}
operator "$E2E_ADMIN_USER" admin "$E2E_ADMIN_PASSWORD"
operator "$E2E_OPERATOR_USER" operator "$E2E_OPERATOR_PASSWORD"
operator "$E2E_VIEWER_USER" viewer "$E2E_VIEWER_PASSWORD"

# A tenant and its users, with the CLI too.
export E2E_TENANT=acme E2E_USER_PASSWORD="user password $RANDOM$RANDOM"
"$bin" tenant create --id "$E2E_TENANT" --profile integration >/dev/null
for u in alice bob carol; do
  SESSIOND_USER_PASSWORD=$E2E_USER_PASSWORD "$bin" user create --tenant "$E2E_TENANT" --username "$u" >/dev/null
done

export BASE_URL=$base
status=0
(cd e2e && npx playwright test "$@") || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- sessiond log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
