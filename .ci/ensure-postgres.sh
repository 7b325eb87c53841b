#!/usr/bin/env bash
# Makes PostgreSQL available for the store and restart tests: a server on 127.0.0.1:5432 with
# trust authentication for local connections and a database `test` (tests connect as `postgres`,
# see DATABASE_URL in tests/store_suite.rs). When nothing listens on 127.0.0.1:5432 it installs
# Debian's `postgresql` package if needed and starts its cluster. Idempotent and quiet; run as
# root (or with sudo available).
set -euo pipefail

PORT=5432
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

psql_postgres() { psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAtX "$@"; }

ensure_test_database() {
  command -v psql >/dev/null 2>&1 || return 0
  local found
  if ! found="$(psql_postgres -c "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>&1)"; then
    echo "ensure-postgres: cannot connect as postgres without a password: $found" >&2
    return 0
  fi
  if [ "$found" != "1" ]; then
    psql_postgres -c "CREATE DATABASE test" >/dev/null
  fi
}

if listening; then
  ensure_test_database
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "ensure-postgres: installing Debian's postgresql package" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

# The newest installed major version, and its `main` cluster (created if missing).
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if [ ! -d "/etc/postgresql/$VERSION/main" ]; then
  $SUDO pg_createcluster --port "$PORT" "$VERSION" main >/dev/null
fi
CONF="/etc/postgresql/$VERSION/main"

# Trust for local connections only (a throw-away test server), listening on loopback.
$SUDO tee "$CONF/pg_hba.conf" >/dev/null <<'HBA'
local all all trust
host  all all 127.0.0.1/32 trust
host  all all ::1/128 trust
HBA
$SUDO pg_conftool "$VERSION" main set port "$PORT"
$SUDO pg_conftool "$VERSION" main set listen_addresses localhost

if pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" { print $4 }' | grep -q online; then
  # Online but not on 127.0.0.1:$PORT: port and listen address need a restart.
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" main restart
else
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start
fi

for _ in $(seq 1 60); do
  if listening; then
    ensure_test_database
    exit 0
  fi
  sleep 0.5
done
echo "ensure-postgres: PostgreSQL $VERSION did not start on 127.0.0.1:$PORT" >&2
exit 1
