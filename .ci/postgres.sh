#!/usr/bin/env bash
# A throwaway PostgreSQL cluster under /tmp for tests and benchmarks.
#   .ci/postgres.sh start   # prints the DATABASE_URL to export
#   .ci/postgres.sh stop
set -euo pipefail

PGPORT=${PGPORT:-55432}
PGROOT=${PGROOT:-/tmp/baton-pg}
PGDATA="$PGROOT/data"
PGSOCK="$PGROOT/sock"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_pg() {
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      mkdir -p "$PGROOT"
      [ "$(id -u)" = 0 ] && chown postgres: "$PGROOT"
      as_pg "$bindir/initdb" -D "$PGDATA" -U baton --auth=trust -E UTF8 --no-locale >/dev/null
      as_pg mkdir -p "$PGSOCK"
      cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGSOCK'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
CONF
    fi
    # Already running (an earlier start): reuse it.
    if ! as_pg "$bindir/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      if ! as_pg "$bindir/pg_ctl" -D "$PGDATA" -l "$PGROOT/server.log" -w start >/dev/null; then
        # Say why (a port in use, shared memory, ...): the log goes with the cluster at stop.
        echo "pg_ctl could not start the server on port $PGPORT; the end of $PGROOT/server.log:" >&2
        tail -n 20 "$PGROOT/server.log" >&2 || true
        exit 1
      fi
    fi
    as_pg "$bindir/psql" -h 127.0.0.1 -p "$PGPORT" -U baton -d postgres -qtAc \
      "SELECT 1 FROM pg_database WHERE datname='baton'" | grep -q 1 \
      || as_pg "$bindir/createdb" -h 127.0.0.1 -p "$PGPORT" -U baton baton
    echo "postgres://baton@127.0.0.1:$PGPORT/baton"
    ;;
  stop)
    # A cluster left by a killed run may have a stale pid file: stopping it may fail.
    if [ -s "$PGDATA/postmaster.pid" ]; then
      as_pg "$bindir/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGROOT"
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2;;
esac
