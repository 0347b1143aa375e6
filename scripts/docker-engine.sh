#!/usr/bin/env bash
# A private Docker Engine (Debian's docker.io dockerd, started by hand, no systemd).
#
# Usage:
#   scripts/docker-engine.sh start  DIR   start an engine whose state lives in DIR; prints the
#                                         DOCKER_HOST url (unix://DIR/docker.sock) on stdout
#   scripts/docker-engine.sh stop   DIR   stop it by its pidfile, remove the bridge it made
#   scripts/docker-engine.sh status DIR   exit 0 if it is running and answers
#   scripts/docker-engine.sh ensure DIR   if an engine is reachable already ($DOCKER_HOST, else
#                                         unix:///var/run/docker.sock) print its url and start
#                                         nothing; otherwise `start DIR`
#
# Layout of DIR: data/ (--data-root), exec/ (--exec-root), docker.sock, docker.pid,
# dockerd.log, daemon.json (empty config, so /etc/docker/daemon.json is not read),
# bridge (name and CIDR of the bridge this script made).
#
# Several engines can run side by side: each gets its own Linux bridge (name derived from
# DIR, an unused 10.213.N.0/24 subnet) passed as --bridge, and runs with --iptables=false
# --ip-masq=false so that no engine rewrites the iptables chains of another. Ports published
# on 127.0.0.1 still work through the userland docker-proxy. Containers get no outbound NAT
# (there is no internet here anyway). Because br_netfilter may be loaded with a FORWARD
# policy of DROP, the script adds one rule allowing traffic within its own bridge
# (container to container), and removes it on stop.
#
# Only stdout carries the url; every message goes to stderr.
set -euo pipefail

START_TIMEOUT=${FLOTILLA_DOCKER_START_TIMEOUT:-30}
STOP_TIMEOUT=20
LOCK=/tmp/.flotilla-docker-engine.lock

log() { echo "docker-engine: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    echo "usage: $0 start|stop|status|ensure DIR" >&2
    exit 2
}

[ "$#" -eq 2 ] || usage
cmd=$1
dir=$(realpath -m -- "$2")

sock="$dir/docker.sock"
url="unix://$sock"
pidfile="$dir/docker.pid"
bridgefile="$dir/bridge"

# The longest unix socket dockerd makes is containerd's ttrpc socket under the exec root.
# sun_path holds 108 bytes including the final NUL.
check_path_length() {
    local longest="$dir/exec/containerd/containerd.sock.ttrpc"
    if [ "${#longest}" -gt 107 ]; then
        die "DIR is too long for unix sockets (${#longest} > 107 chars: $longest); use a shorter DIR, e.g. under /tmp"
    fi
}

# pid from DIR's pidfile if that process is alive and is the dockerd of DIR; empty otherwise.
engine_pid() {
    local pid
    [ -s "$pidfile" ] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] || return 0
    [ -r "/proc/$pid/cmdline" ] || return 0
    # Guard against pid reuse: the process must be a dockerd started with our pidfile.
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pidfile"; then
        echo "$pid"
    fi
}

answers() { timeout 10 docker -H "$1" info >/dev/null 2>&1; }

# ---- bridge ---------------------------------------------------------------------------------

bridge_name() {
    # flt- + 8 hex chars of the DIR's hash: 12 chars (Linux allows 15).
    echo "flt-$(printf '%s' "$dir" | sha256sum | cut -c1-8)"
}

ip2int() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# All IPv4 networks in use on this machine (addresses and routes, every table), as a.b.c.d/len.
used_networks() {
    {
        ip -4 -o addr show | awk '{print $4}'
        ip -4 route show table all | awk '$1 ~ /^[0-9]/ {print $1}'
    } | sed -e '/\//!s/$/\/32/'
}

overlaps() { # CIDR_A CIDR_B
    local na la nb lb len mask
    na=${1%/*} la=${1#*/} nb=${2%/*} lb=${2#*/}
    len=$((la < lb ? la : lb))
    mask=$(((0xFFFFFFFF << (32 - len)) & 0xFFFFFFFF))
    [ $(($(ip2int "$na") & mask)) -eq $(($(ip2int "$nb") & mask)) ]
}

pick_subnet() { # prints N such that 10.213.N.0/24 overlaps nothing in use
    local start i n cand used net ok
    used=$(used_networks)
    start=$((16#$(printf '%s' "$dir" | sha256sum | cut -c9-10)))
    for ((i = 0; i < 256; i++)); do
        n=$(((start + i) % 256))
        cand="10.213.$n.0/24"
        ok=1
        for net in $used; do
            if overlaps "$cand" "$net"; then ok=0; break; fi
        done
        if [ "$ok" = 1 ]; then
            echo "$n"
            return 0
        fi
    done
    return 1
}

forward_rule() { # -I|-D|-C BRIDGE
    command -v iptables >/dev/null 2>&1 || return 1
    iptables -w 5 "$1" FORWARD -i "$2" -o "$2" -m comment --comment "flotilla $2" -j ACCEPT \
        >/dev/null 2>&1
}

create_bridge() {
    local br n
    br=$(bridge_name)
    exec 9>"$LOCK"
    flock -w 30 9 || die "could not take $LOCK"
    if ip link show dev "$br" >/dev/null 2>&1; then
        # Left over from an engine of the same DIR that died without `stop`: start afresh.
        ip link del dev "$br"
    fi
    n=$(pick_subnet) || die "no free 10.213.N.0/24 subnet for the bridge"
    ip link add name "$br" type bridge
    ip addr add "10.213.$n.1/24" dev "$br"
    ip link set dev "$br" up
    printf '%s 10.213.%s.1/24\n' "$br" "$n" >"$bridgefile"
    if [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)" = 1 ]; then
        forward_rule -C "$br" || forward_rule -I "$br" || log "warning: could not add an iptables FORWARD rule for $br (container-to-container traffic may be dropped)"
    fi
    flock -u 9
    exec 9>&-
    echo "$br"
}

remove_bridge() {
    local br cidr
    [ -s "$bridgefile" ] || return 0
    read -r br cidr <"$bridgefile" || true
    [ -n "$br" ] || return 0
    while forward_rule -C "$br"; do forward_rule -D "$br" || break; done
    if ip link show dev "$br" >/dev/null 2>&1; then
        ip link del dev "$br" || log "warning: could not delete bridge $br"
    fi
    rm -f "$bridgefile"
}

# ---- stop -----------------------------------------------------------------------------------

wait_gone() { # PID SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

terminate() { # PID: SIGTERM, wait, SIGKILL
    kill -TERM "$1" 2>/dev/null || return 0
    if ! wait_gone "$1" "$STOP_TIMEOUT"; then
        log "pid $1 did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$1" 2>/dev/null || true
        wait_gone "$1" 5 || log "warning: pid $1 still alive after SIGKILL"
    fi
}

# Mounts left under DIR by an engine that was killed (overlay, shm, netns): unmount them so
# that DIR can be removed. Deepest first.
unmount_leftovers() {
    local m
    { awk '{print $5}' /proc/self/mountinfo | grep -F -- "$dir/" || true; } | sort -r |
        while read -r m; do
            umount -l -- "$m" 2>/dev/null || true
        done
}

# After a SIGKILLed dockerd, containerd shims of DIR (and the containers under them) survive.
# They are found by their exact containerd address inside DIR, never by name: kill each
# container's init (its pid namespace goes with it), then the shim.
kill_leftover_shims() {
    local f pid child
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        if tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "-address $dir/exec/containerd/containerd.sock "; then
            log "killing leftover containerd shim $pid of $dir and its container"
            for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
                kill -KILL "$child" 2>/dev/null || true
            done
            terminate "$pid"
        fi
    done
}

do_stop() {
    local pid cpid cpidfile="$dir/exec/containerd/containerd.pid"
    pid=$(engine_pid)
    if [ -n "$pid" ]; then
        terminate "$pid"
    fi
    # dockerd normally takes its containerd down with it; if it was SIGKILLed it may not.
    if [ -s "$cpidfile" ]; then
        cpid=$(tr -dc '0-9' <"$cpidfile")
        if [ -n "$cpid" ] && [ -r "/proc/$cpid/cmdline" ] \
            && tr '\0' ' ' <"/proc/$cpid/cmdline" | grep -qF -- "$dir/exec/containerd"; then
            terminate "$cpid"
        fi
    fi
    kill_leftover_shims
    remove_bridge
    unmount_leftovers
    # A stale containerd pidfile makes the next dockerd wait for a containerd that is gone.
    rm -f "$pidfile" "$cpidfile"
}

# ---- start ----------------------------------------------------------------------------------

do_start() {
    local pid br i
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found (Debian package docker.io)"
    check_path_length
    mkdir -p "$dir/data" "$dir/exec"

    pid=$(engine_pid)
    if [ -n "$pid" ]; then
        if answers "$url"; then
            log "engine in $dir is already running (pid $pid)"
            echo "$url"
            return 0
        fi
        die "a dockerd for $dir is running (pid $pid) but does not answer on $url; run: $0 stop $dir"
    fi
    # A dead engine's leftovers (shims, socket, pidfiles, bridge) would make dockerd refuse to
    # start, or wait for a containerd that is gone.
    do_stop
    rm -f "$sock"

    echo '{}' >"$dir/daemon.json"
    br=$(create_bridge)

    # setsid: the engine gets its own session, so a Ctrl-C in the caller's terminal does not
    # reach it; it is stopped with `stop DIR`, in order.
    setsid dockerd \
        --config-file "$dir/daemon.json" \
        --data-root "$dir/data" \
        --exec-root "$dir/exec" \
        --pidfile "$pidfile" \
        -H "$url" \
        --bridge "$br" \
        --iptables=false \
        --ip-masq=false \
        --userland-proxy=true \
        >>"$dir/dockerd.log" 2>&1 </dev/null &
    local launched=$!

    for ((i = 0; i < START_TIMEOUT * 4; i++)); do
        if answers "$url"; then
            echo "$url"
            return 0
        fi
        if ! kill -0 "$launched" 2>/dev/null; then
            log "dockerd exited during start-up; last lines of $dir/dockerd.log:"
            tail -n 20 "$dir/dockerd.log" >&2 || true
            remove_bridge
            exit 1
        fi
        sleep 0.25
    done
    log "dockerd did not answer on $url within ${START_TIMEOUT}s; last lines of $dir/dockerd.log:"
    tail -n 20 "$dir/dockerd.log" >&2 || true
    do_stop
    exit 1
}

case "$cmd" in
start)
    do_start
    ;;
stop)
    do_stop
    ;;
status)
    pid=$(engine_pid)
    [ -n "$pid" ] && answers "$url"
    ;;
ensure)
    existing=${DOCKER_HOST:-unix:///var/run/docker.sock}
    if answers "$existing"; then
        echo "$existing"
    else
        do_start
    fi
    ;;
*)
    usage
    ;;
esac
