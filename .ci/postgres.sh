#!/usr/bin/env bash
# Start a throw-away PostgreSQL (Debian's packages) on 127.0.0.1 for the test suite and
# print the URL the tests read from DAEDALUS_TEST_POSTGRES_URL. Safe to run twice.
#   eval "$(bash .ci/postgres.sh)"    # exports DAEDALUS_TEST_POSTGRES_URL
set -euo pipefail

PORT="${DAEDALUS_PG_PORT:-55432}"
DATA="${DAEDALUS_PG_DATA:-/tmp/daedalus-pg/data}"
USER_NAME=daedalus
PASSWORD=daedalus
DB=daedalus

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"

# PostgreSQL refuses to run as root: the cluster belongs to the postgres user Debian creates.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$(dirname "$DATA")"
[ "$(id -u)" = 0 ] && chown postgres: "$(dirname "$DATA")"
if [ ! -s "$DATA/PG_VERSION" ]; then
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
fi
if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  # Loopback only (password auth), the admin socket inside the data dir (postgres only), fsync off: a test database, never a real one.
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
fi
psql_admin() { as_pg "$BIN/psql" -h "$DATA" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$USER_NAME'")" ]; then
  psql_admin -c "CREATE ROLE $USER_NAME LOGIN CREATEDB PASSWORD '$PASSWORD'" >/dev/null
fi
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
  psql_admin -c "CREATE DATABASE $DB OWNER $USER_NAME" >/dev/null
fi
echo "export DAEDALUS_TEST_POSTGRES_URL=postgresql+psycopg://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DB"
