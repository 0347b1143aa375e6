#!/usr/bin/env bash
# What `make run` runs: `flotilla dev` (server + one agent, SQLite) on http://127.0.0.1:8700
# against a Docker Engine, and a demo app deployed through the REST API on 127.0.0.1:8080.
#
# Engine: the one reachable at $DOCKER_HOST (else /var/run/docker.sock); if none answers, a
# private engine under .flotilla/docker (or, when the repository path is too long for unix
# sockets, under a short /tmp dir recorded in .flotilla/docker-dir), stopped again at exit.
# State: .flotilla/ (SQLite, admin.token, dev.log, dev.pid). `make clean-run` removes it.
# FLOTILLA_BIN overrides .venv/bin/flotilla (for testing this script).
# Ctrl-C stops flotilla dev, the demo's containers, and the private engine if started here.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/.flotilla"
api=http://127.0.0.1:8700
demo_url=http://127.0.0.1:8080/

say() { echo "==> $*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }

say "Debian packages"
scripts/ensure-deps.sh docker.io busybox-static curl iproute2
say "virtualenv"
make --no-print-directory venv
mkdir -p "$state"

if curl -fsS --max-time 2 "$api/readyz" >/dev/null 2>&1; then
    die "something already answers on $api (another make run?); stop it first"
fi

# ---- Docker Engine --------------------------------------------------------------------------
dkdir="$state/docker"
longest="$dkdir/exec/containerd/containerd.sock.ttrpc"
if [ "${#longest}" -gt 107 ]; then
    # The repository path is too long for unix sockets: use (and remember) a short /tmp dir.
    if [ -s "$state/docker-dir" ] && [ -d "$(cat "$state/docker-dir")" ]; then
        dkdir=$(cat "$state/docker-dir")
    else
        dkdir=$(mktemp -d /tmp/flt-run.XXXXXX)
        echo "$dkdir" >"$state/docker-dir"
    fi
fi

started_engine=0
dev_pid=""
tail_pid=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo >&2
    say "stopping"
    if [ -s "$state/dev.pid" ]; then
        local pid
        pid=$(cat "$state/dev.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "run.sh: flotilla dev (pid $pid) did not stop in 20s; SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        fi
        rm -f "$state/dev.pid"
    fi
    if [ -n "${DOCKER_HOST:-}" ]; then
        local ids
        ids=$(docker ps -q --filter label=flotilla.app=demo 2>/dev/null || true)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086 # one id per word
            docker stop $ids >/dev/null || true
        fi
    fi
    if [ "$started_engine" = 1 ]; then
        "$root/scripts/docker-engine.sh" stop "$dkdir" || true
    fi
    if [ -n "$tail_pid" ]; then
        kill "$tail_pid" 2>/dev/null || true
        wait "$tail_pid" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Docker Engine"
url=$(scripts/docker-engine.sh ensure "$dkdir") || die "no Docker Engine could be reached or started"
if [ "$url" = "unix://$dkdir/docker.sock" ]; then
    started_engine=1
    say "private Docker Engine at $url (log: $dkdir/dockerd.log)"
else
    say "using the Docker Engine at $url"
fi
export DOCKER_HOST=$url

say "demo images"
scripts/build-image.sh flotilla-demo:v1 --text "hello from flotilla-demo v1"
scripts/build-image.sh flotilla-demo:v2 --text "hello from flotilla-demo v2"

# ---- flotilla dev ---------------------------------------------------------------------------
say "flotilla dev (log: .flotilla/dev.log)"
: >>"$state/dev.log"
"${FLOTILLA_BIN:-.venv/bin/flotilla}" dev --data-dir "$state" >>"$state/dev.log" 2>&1 </dev/null &
dev_pid=$!
echo "$dev_pid" >"$state/dev.pid"
tail -n 0 -F "$state/dev.log" 2>/dev/null &
tail_pid=$!

for i in $(seq 1 240); do
    if curl -fsS --max-time 2 "$api/readyz" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$dev_pid" 2>/dev/null; then
        wait "$dev_pid" 2>/dev/null || true
        echo "run.sh: flotilla dev exited during start-up; last lines of .flotilla/dev.log:" >&2
        tail -n 30 "$state/dev.log" >&2
        exit 1
    fi
    if [ "$i" = 240 ]; then
        echo "run.sh: flotilla dev did not answer $api/readyz within 60s; last lines of .flotilla/dev.log:" >&2
        tail -n 30 "$state/dev.log" >&2
        exit 1
    fi
    sleep 0.25
done

for _ in $(seq 1 40); do
    [ -s "$state/admin.token" ] && break
    sleep 0.25
done
[ -s "$state/admin.token" ] || die "flotilla dev is up but wrote no .flotilla/admin.token"

# ---- demo -----------------------------------------------------------------------------------
say "deploying demo (flotilla-demo:v1 on 127.0.0.1:8080)"
deploy_body='{"image":"flotilla-demo:v1","ports":[{"container":80,"host":8080,"host_ip":"127.0.0.1"}],"message":"make run demo"}'
# The Idempotency-Key makes a second `make run` answer with the same release, not a new one.
if ! curl -fsS -X POST -H "Authorization: Bearer $(cat "$state/admin.token")" \
    -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-v1' \
    "$api/v1/apps/demo/deployments" -d "$deploy_body" >/dev/null; then
    die "the deploy request failed (see .flotilla/dev.log)"
fi

ok=0
for _ in $(seq 1 120); do
    if curl -fsS --max-time 2 "$demo_url" >/dev/null 2>&1; then
        ok=1
        break
    fi
    kill -0 "$dev_pid" 2>/dev/null || die "flotilla dev exited (see .flotilla/dev.log)"
    sleep 0.5
done
[ "$ok" = 1 ] || die "the demo did not answer on $demo_url within 60s (see .flotilla/dev.log)"

cat >&2 <<EOF

============================================================================================
 Flotilla is running: API $api, demo app on $demo_url

 Try it:
   curl $demo_url

 Deploy v2 (only the image changes; the port and the rest are kept):
   .venv/bin/flotilla deploy demo --image flotilla-demo:v2 --message v2 --wait
 or through the API:
   curl -fsS -X POST -H "Authorization: Bearer \$(cat .flotilla/admin.token)" \\
     -H 'Content-Type: application/json' $api/v1/apps/demo/deployments \\
     -d '{"base":"current","image":"flotilla-demo:v2","message":"v2"}'

 Admin token: .flotilla/admin.token
 Logs:        .flotilla/dev.log (shown below)$([ "$started_engine" = 1 ] && printf '\n Docker:      %s (log: %s/dockerd.log)' "$url" "$dkdir")
 Ctrl-C to stop.
============================================================================================

EOF

set +e
wait "$dev_pid"
rc=$?
set -e
echo "run.sh: flotilla dev exited with code $rc" >&2
exit "$rc"
