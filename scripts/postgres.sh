#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests and benchmarks of cp.PostgresStore.
#
#   eval "$(scripts/postgres.sh start)"   # start it; exports COUNTERPOINT_TEST_POSTGRES
#   scripts/postgres.sh stop              # stop it and delete its data
#   scripts/postgres.sh env               # print the export line of a running server
#
# Needs PostgreSQL's server binaries (Debian/Ubuntu: apt-get install postgresql). The
# server keeps its data in $COUNTERPOINT_PG_DIR (default: $TMPDIR/counterpoint-postgres),
# listens on 127.0.0.1:$COUNTERPOINT_PG_PORT (default 54329) and on a unix socket in that
# directory, and has one superuser, postgres, with the password "counterpoint". Run as
# root, it runs the server as the `postgres` system user (initdb and pg_ctl refuse root).
# Only the export line goes to stdout; progress goes to stderr.
set -euo pipefail

DIR="${COUNTERPOINT_PG_DIR:-${TMPDIR:-/tmp}/counterpoint-postgres}"
PORT="${COUNTERPOINT_PG_PORT:-54329}"
PASSWORD=counterpoint
DATA="$DIR/data"

bindir() {
  local found
  if command -v pg_ctl >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [[ -z "$found" ]]; then
    echo "PostgreSQL's server binaries (initdb, pg_ctl) were not found; install them" \
      "(Debian/Ubuntu: apt-get install postgresql)" >&2
    exit 1
  fi
  echo "$found"
}

as_owner() {  # runs a command as the user who owns the server's files
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

export_line() {
  echo "export COUNTERPOINT_TEST_POSTGRES=postgresql://postgres:$PASSWORD@127.0.0.1:$PORT/postgres"
}

running() {
  [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

BIN=$(bindir)
case "${1:-}" in
  start)
    if ! running; then
      mkdir -p "$DIR"
      [[ $(id -u) -eq 0 ]] && { id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres; chown postgres "$DIR"; }
      if [[ ! -f "$DATA/PG_VERSION" ]]; then
        printf '%s\n' "$PASSWORD" > "$DIR/pwfile"
        [[ $(id -u) -eq 0 ]] && chown postgres "$DIR/pwfile"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$DIR/pwfile" \
          --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2
        rm -f "$DIR/pwfile"
      fi
      as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >&2
    fi
    export_line
    ;;
  stop)
    if running; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2; fi
    rm -rf "$DIR"
    ;;
  env)
    running || { echo "no server running in $DIR; run: scripts/postgres.sh start" >&2; exit 1; }
    export_line
    ;;
  *)
    sed -n '2,13p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
