#!/usr/bin/env bash
# Issue 16's benchmark gate: an interleaved A/B (bench/ab.py) of the four benchmarks that
# must not regress, A = the commit before the redesign, B = the redesign, both in the same
# run, on a private Docker Engine started here (in a temporary directory, stopped on exit
# by its own dir). Sized for a 2-core machine: about 45 minutes in all.
#
# Usage: scripts/bench-ab.sh [A [B]]        (default A=4fd1e55, B=HEAD; make bench-ab)
#   AB_ONLY="fanout deploy"   run only these of: fanout deploy rollback footprint
#   AB_NO_RECORD=1            do not write bench/results/ab_*.json nor rebuild RESULTS.md
#   AB_QUICK=1                a smoke test of the runner (~4 min): 1 round, tiny sizes, no
#                             recording; its figures mean nothing
#
# Output: bench/results/ab/STAMP/<bench>/ (ab.md, ab.json, every run's result and log);
# with recording (the default) also bench/results/ab_<bench>.json and bench/RESULTS.md.
# Exit code: non-zero if any run failed. The gate's verdicts are in each ab.md; they are
# read by a person, never asserted here.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
a=${1:-4fd1e55}
b=${2:-HEAD}
only=${AB_ONLY:-fanout deploy rollback footprint}
record=(--record)
[ -n "${AB_NO_RECORD:-}${AB_QUICK:-}" ] && record=()

say() { echo "==> $*" >&2; }
die() { echo "bench-ab.sh: $*" >&2; exit 1; }

say "Debian packages"
scripts/ensure-deps.sh docker.io busybox-static curl iproute2
say "virtualenv"
make --no-print-directory venv

tmp=$(mktemp -d /tmp/flt-ab-sh.XXXXXX)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$root/scripts/docker-engine.sh" stop "$tmp/dk" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "private Docker Engine in $tmp/dk"
DOCKER_HOST=$(scripts/docker-engine.sh start "$tmp/dk") ||
    die "the private Docker Engine did not start (log: $tmp/dk/dockerd.log)"
export DOCKER_HOST

out="bench/results/ab/$(date +%Y%m%d-%H%M%S)"
failed=()

# ab NAME SHORT ROUNDS -- BENCH ARGS...
ab() {
    local bench=$1 short=$2 rounds=$3
    shift 4
    case " $only " in *" $short "*) ;; *) return 0 ;; esac
    say "A/B $bench: A=$a B=$b, $rounds rounds ($(date +%H:%M:%S))"
    if ! .venv/bin/python -m bench ab --bench "$bench" --a "$a" --b "$b" --rounds "$rounds" \
        --out "$out/$bench" "${record[@]}" -- "$@"; then
        failed+=("$bench")
    fi
}

# Time of each on 2 cores, both sides together (a run's time x 2 sides x rounds; measured
# on a machine that was also running test suites, a quiet one is faster): fanout ~25-35 min
# (one run of 100,1000,10000 hosts ~3-4.5 min), deploy ~4 min, rollback ~7 min, footprint
# ~5 min. Fan-out gets 4 rounds (A,B,B,A,A,B,B,A) of 4 deploys per size; the others 3 or 2
# rounds. With 2, the 10,000-host B/A of the same two commits was 1.201, 0.899, 1.073 and
# 1.166 in four gate runs (and 0.981 in one more A/B of it alone): one run's median there
# moved by a quarter between rounds (1118 to 1571 ms for one commit), wider than the gate's
# 10 %.
# The fan-out's floor is pushed 15 times a run: with 4, its median at 100 hosts moved by 2x
# between runs of the same code (10.0 to 23.9 ms; single pushes 7 to 22 ms), and the gate's
# ratio with it; with 15 it held at 14-15 ms over three runs (a few seconds more per run).
if [ -n "${AB_QUICK:-}" ]; then
    ab fanout fanout 1 -- --sims lean --hosts 100 --runs 2 --floor-runs 2 --idle-seconds 1
    ab deploy-latency deploy 1 -- --runs 2
    ab rollback-latency rollback 1 -- --runs 2 --auto-runs 1
    ab agent-footprint footprint 1 -- --passes 50 --idle-windows 1 --idle-seconds 2
else
    ab fanout fanout 4 -- --sims lean --hosts 100,1000,10000 --runs 4 --floor-runs 15 \
        --idle-seconds 5
    ab deploy-latency deploy 3 -- --runs 10
    ab rollback-latency rollback 3 -- --runs 10 --auto-runs 3
    ab agent-footprint footprint 2 -- --passes 1000 --idle-windows 2 --idle-seconds 10
fi

say "done ($(date +%H:%M:%S)): $out/*/ab.md"
[ "${#failed[@]}" -eq 0 ] || die "failed runs in: ${failed[*]} (see $out/<bench>/runs/*.log)"
