#!/usr/bin/env bash
# A private PostgreSQL cluster (Debian's postgresql; the newest /usr/lib/postgresql/*/bin).
#
# Usage:
#   scripts/postgres.sh start DIR PORT   initdb DIR/data if needed, start it on 127.0.0.1:PORT
#                                        (unix socket in DIR), wait until ready, print
#                                        postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop DIR         pg_ctl stop -m fast
#   scripts/postgres.sh status DIR       exit 0 if running
#
# PostgreSQL refuses to run as root: DIR is chowned to postgres and initdb/pg_ctl run through
# `runuser -u postgres --`. Every parent of DIR must be traversable by postgres (a mktemp -d
# is 0700: chmod 755 it). Auth is trust, superuser postgres, fsync off: tests only.
# Log: DIR/postgres.log. Only stdout carries the url.
set -euo pipefail

log() { echo "postgres: $*" >&2; }
die() { log "$*"; exit 1; }
usage() {
    echo "usage: $0 start DIR PORT | stop DIR | status DIR" >&2
    exit 2
}

[ "$#" -ge 2 ] || usage
cmd=$1
dir=$(realpath -m -- "$2")
data="$dir/data"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$bindir" ] && [ -x "$bindir/pg_ctl" ] || die "PostgreSQL not found in /usr/lib/postgresql/*/bin (Debian package postgresql)"

as_postgres() { runuser -u postgres -- "$@"; }

is_running() {
    [ -f "$data/postmaster.pid" ] && as_postgres "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1
}

case "$cmd" in
start)
    [ "$#" -eq 3 ] || usage
    port=$3
    case "$port" in '' | *[!0-9]*) die "PORT must be a number: $port" ;; esac
    [ "$(id -u)" -eq 0 ] || die "must run as root (it runs PostgreSQL as the postgres user)"
    id postgres >/dev/null 2>&1 || die "no postgres user (Debian package postgresql)"
    # sun_path limit for DIR/.s.PGSQL.PORT
    sockpath="$dir/.s.PGSQL.$port.lock"
    [ "${#sockpath}" -le 107 ] || die "DIR is too long for a unix socket: $sockpath"

    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    # Every parent must be traversable (x) by postgres.
    p=$(dirname "$dir")
    while [ "$p" != / ]; do
        if ! as_postgres test -x "$p"; then
            die "$p is not traversable by the postgres user (chmod 755 it, or pick another DIR)"
        fi
        p=$(dirname "$p")
    done

    if is_running; then
        log "already running in $data"
    else
        if [ ! -s "$data/PG_VERSION" ]; then
            if ! as_postgres "$bindir/initdb" -D "$data" --auth=trust -U postgres \
                -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
                cat "$dir/initdb.log" >&2
                die "initdb failed"
            fi
        fi
        if ! as_postgres "$bindir/pg_ctl" start -D "$data" -l "$dir/postgres.log" -w -t 30 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
            >/dev/null 2>&1; then
            log "pg_ctl start failed; last lines of $dir/postgres.log:"
            tail -n 20 "$dir/postgres.log" >&2 || true
            exit 1
        fi
    fi
    ready=0
    for _ in $(seq 1 120); do
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            ready=1
            break
        fi
        sleep 0.25
    done
    if [ "$ready" != 1 ]; then
        log "not ready on 127.0.0.1:$port after 30s; last lines of $dir/postgres.log:"
        tail -n 20 "$dir/postgres.log" >&2 || true
        exit 1
    fi
    echo "postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    [ "$#" -eq 2 ] || usage
    if is_running; then
        as_postgres "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 30 >/dev/null
    fi
    ;;
status)
    [ "$#" -eq 2 ] || usage
    is_running
    ;;
*)
    usage
    ;;
esac
