#!/usr/bin/env bash
# Usage: scripts/ensure-deps.sh PKG...
#
# Installs the given Debian packages, but only those that are not installed yet
# (checked with dpkg-query). Runs `apt-get update` once, and only when the install
# fails because the package lists are missing or stale. Quiet on success; on failure
# it prints apt's output on stderr and exits non-zero.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 PKG..." >&2
    exit 2
fi

missing=()
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$pkg")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
fi

log=$(mktemp /tmp/ensure-deps.XXXXXX)
trap 'rm -f "$log"' EXIT

install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
        >"$log" 2>&1
}

if ! install; then
    # "Unable to locate package", "has no installation candidate" or a 404 on a stale
    # list all mean the same thing: the package lists need refreshing.
    if grep -qE 'Unable to locate package|has no installation candidate|404 +Not Found|Failed to fetch' "$log"; then
        if ! apt-get update >"$log" 2>&1; then
            echo "ensure-deps: apt-get update failed:" >&2
            cat "$log" >&2
            exit 1
        fi
        if ! install; then
            echo "ensure-deps: apt-get install ${missing[*]} failed:" >&2
            cat "$log" >&2
            exit 1
        fi
    else
        echo "ensure-deps: apt-get install ${missing[*]} failed:" >&2
        cat "$log" >&2
        exit 1
    fi
fi

# Verify: apt can "succeed" without installing a virtual package's provider we asked for.
for pkg in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        echo "ensure-deps: $pkg is still not installed after apt-get install" >&2
        exit 1
    fi
done
