#!/usr/bin/env bash
# What `make test` runs: lint, type check, then pytest against real parts: a private Docker
# Engine and a private PostgreSQL, both started here in a temporary directory and stopped on
# exit. Extra arguments go to pytest: scripts/test.sh -k foo  (make test ARGS="-k foo").
#
# Exports for the tests: DOCKER_HOST, FLOTILLA_TEST_POSTGRES_URL, FLOTILLA_TEST_DOCKER=1.
# If the engine or PostgreSQL does not start, it fails (it never skips those tests).
# Exit code: the first failing lint/type step's, else pytest's.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

say() { echo "==> $*" >&2; }
die() { echo "test.sh: $*" >&2; exit 1; }

say "Debian packages"
scripts/ensure-deps.sh docker.io busybox-static postgresql curl iproute2 prometheus docker-registry apache2-utils jq
say "virtualenv"
make --no-print-directory venv

tmp=$(mktemp -d /tmp/flt.XXXXXX)
# mktemp -d is 0700; PostgreSQL runs as the postgres user and must traverse it.
chmod 755 "$tmp"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$root/scripts/postgres.sh" stop "$tmp/pg" >/dev/null 2>&1 || true
    "$root/scripts/docker-engine.sh" stop "$tmp/dk" || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$root/.venv/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

say "private Docker Engine in $tmp/dk"
DOCKER_HOST=$(scripts/docker-engine.sh start "$tmp/dk") ||
    die "the private Docker Engine did not start (see messages above; log: $tmp/dk/dockerd.log)"
export DOCKER_HOST

say "private PostgreSQL in $tmp/pg"
FLOTILLA_TEST_POSTGRES_URL=$(scripts/postgres.sh start "$tmp/pg" "$(free_port)") ||
    die "the private PostgreSQL did not start (see messages above)"
export FLOTILLA_TEST_POSTGRES_URL
export FLOTILLA_TEST_DOCKER=1

lint_paths=(server agent tests migrations bench)
say "ruff check"
.venv/bin/ruff check "${lint_paths[@]}"
say "ruff format --check"
.venv/bin/ruff format --check "${lint_paths[@]}"
say "mypy"
.venv/bin/mypy server agent bench
say "lint-imports (the layers: pyproject.toml)"
.venv/bin/lint-imports

say "pytest (DOCKER_HOST=$DOCKER_HOST, FLOTILLA_TEST_POSTGRES_URL=$FLOTILLA_TEST_POSTGRES_URL)"
set +e
.venv/bin/pytest -q "$@"
rc=$?
set -e
exit "$rc"
