#!/usr/bin/env bash
# A private Prometheus (Debian's prometheus package: scripts/ensure-deps.sh prometheus).
#
# Usage:
#   scripts/prometheus.sh start DIR PORT CONFIG   run it on 127.0.0.1:PORT with its data in
#                                                 DIR/data, pidfile DIR/prometheus.pid, log
#                                                 DIR/prometheus.log; wait for /-/ready; print
#                                                 http://127.0.0.1:PORT
#   scripts/prometheus.sh stop DIR                stop the one DIR/prometheus.pid names
#   scripts/prometheus.sh status DIR              exit 0 if it runs
#
# --web.enable-lifecycle is on: POST /-/reload re-reads CONFIG.
# It is stopped by its pidfile only, never by name: other Prometheus servers are left alone.
# Debian's package starts its own service on install (on :9090, where policy-rc.d allows it);
# `start` stops that one, through its init script and pidfile, so that one instance runs.
# Only stdout carries the url.
set -euo pipefail

log() { echo "prometheus: $*" >&2; }
die() { log "$*"; exit 1; }
usage() {
    echo "usage: $0 start DIR PORT CONFIG | stop DIR | status DIR" >&2
    exit 2
}

[ "$#" -ge 2 ] || usage
cmd=$1
dir=$(realpath -m -- "$2")
pidfile="$dir/prometheus.pid"
bin=/usr/bin/prometheus
service_pidfile=/run/prometheus/prometheus.pid

# The pid in FILE if that process is alive and is a prometheus binary (a stale pidfile whose
# pid was reused by something else does not count).
live_pid() {
    local file=$1 pid exe
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null || true)
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [ "${exe%% (deleted)}" = "$bin" ] || return 1
    echo "$pid"
}

stop_packaged_service() {
    if live_pid "$service_pidfile" >/dev/null && [ -x /etc/init.d/prometheus ]; then
        log "stopping the prometheus service that Debian's package started (pidfile $service_pidfile)"
        /etc/init.d/prometheus stop >/dev/null 2>&1 || log "could not stop it; it keeps :9090"
    fi
}

case "$cmd" in
start)
    [ "$#" -eq 4 ] || usage
    port=$3
    config=$(realpath -- "$4") || die "no config file: $4"
    case "$port" in '' | *[!0-9]*) die "PORT must be a number: $port" ;; esac
    [ -x "$bin" ] || die "$bin not found (Debian package prometheus: scripts/ensure-deps.sh prometheus)"
    [ -f "$config" ] || die "no config file: $config"
    command -v curl >/dev/null || die "curl not found (Debian package curl)"
    stop_packaged_service
    mkdir -p "$dir/data"
    url="http://127.0.0.1:$port"
    if pid=$(live_pid "$pidfile"); then
        die "already running in $dir (pid $pid); stop it first"
    fi
    # setsid: its own session, so a Ctrl-C meant for the caller does not reach it half-way.
    setsid "$bin" \
        --storage.tsdb.path "$dir/data" \
        --web.listen-address "127.0.0.1:$port" \
        --config.file "$config" \
        --web.enable-lifecycle \
        >>"$dir/prometheus.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            log "exited during start; last lines of $dir/prometheus.log:"
            tail -n 20 "$dir/prometheus.log" >&2 || true
            exit 1
        fi
        if curl -fsS -o /dev/null --max-time 2 "$url/-/ready" 2>/dev/null; then
            echo "$url"
            exit 0
        fi
        sleep 0.1
    done
    log "not ready within 30 s; stopping it. Last lines of $dir/prometheus.log:"
    tail -n 20 "$dir/prometheus.log" >&2 || true
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    exit 1
    ;;
stop)
    [ "$#" -eq 2 ] || usage
    if ! pid=$(live_pid "$pidfile"); then
        rm -f "$pidfile"
        exit 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; exit 0; }
        sleep 0.1
    done
    log "pid $pid did not stop within 15 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    ;;
status)
    [ "$#" -eq 2 ] || usage
    live_pid "$pidfile" >/dev/null
    ;;
*)
    usage
    ;;
esac
