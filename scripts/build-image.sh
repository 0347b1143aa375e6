#!/usr/bin/env bash
# Builds a tiny test/demo image without any registry: `docker import` of a busybox-static root
# file system (Debian package busybox-static).
#
# Usage: scripts/build-image.sh TAG [--text TEXT] [--crash] [--no-health] [--no-check]
#
#   TAG          image reference to create, e.g. web:v1
#   --text TEXT  content of /www/index.html (default: TAG)
#   --crash      CMD ["/bin/sh","-c","echo crashing; exit 3"] (exits at once, code 3)
#   --no-health  no /www/health, so GET /health answers 404
#   --no-check   skip the check run (see below)
#
# Otherwise CMD ["/bin/httpd","-f","-p","80","-h","/www"], EXPOSE 80, and GET /health answers
# "ok". Uses DOCKER_HOST from the environment. Idempotent: the image carries a label with a
# hash of its inputs; when TAG already has that hash nothing is imported again.
# Unless --crash or --no-check, it then checks that `docker run -d -p 127.0.0.1::80 TAG`
# serves TEXT on the published port, and removes that container by its id.
set -euo pipefail

die() { echo "build-image: $*" >&2; exit 1; }
usage() {
    echo "usage: $0 TAG [--text TEXT] [--crash] [--no-health] [--no-check]" >&2
    exit 2
}

[ "$#" -ge 1 ] || usage
tag=$1
shift
case "$tag" in -*) usage ;; esac
text=$tag
crash=0
health=1
check=1
while [ "$#" -gt 0 ]; do
    case "$1" in
    --text)
        [ "$#" -ge 2 ] || usage
        text=$2
        shift 2
        ;;
    --crash) crash=1; shift ;;
    --no-health) health=0; shift ;;
    --no-check) check=0; shift ;;
    *) usage ;;
    esac
done

busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ]; then busybox=$b; break; fi
done
[ -n "$busybox" ] || die "busybox not found (Debian package busybox-static)"
# The image has no libc: busybox must be the static build.
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked; install the Debian package busybox-static"
fi

if [ "$crash" = 1 ]; then
    cmd='["/bin/sh","-c","echo crashing; exit 3"]'
else
    cmd='["/bin/httpd","-f","-p","80","-h","/www"]'
fi

build_hash=$(
    {
        sha256sum "$busybox" | cut -d' ' -f1
        printf '%s\n' "$text" "$crash" "$health" "$cmd" "format-1"
    } | sha256sum | cut -c1-16
)

existing=$(docker image inspect -f '{{index .Config.Labels "busybox-image.build-hash"}}' "$tag" 2>/dev/null || true)
if [ "$existing" != "$build_hash" ]; then
    root=$(mktemp -d /tmp/flt-image.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    for applet in sh httpd echo cat sleep wget nc true false ls; do
        ln -s busybox "$root/bin/$applet"
    done
    printf '%s\n' "$text" >"$root/www/index.html"
    if [ "$health" = 1 ]; then
        printf 'ok\n' >"$root/www/health"
    fi
    echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"

    tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
        docker import \
            --change "CMD $cmd" \
            --change 'EXPOSE 80' \
            --change "LABEL busybox-image.build-hash=$build_hash" \
            --message "flotilla test image $tag" \
            - "$tag" >/dev/null ||
        die "docker import of $tag failed"
fi

if [ "$crash" = 1 ] || [ "$check" = 0 ]; then
    exit 0
fi

# Check run: publish on an ephemeral port of 127.0.0.1 and fetch the index.
cid=$(docker run -d -p 127.0.0.1::80 "$tag") || die "docker run $tag failed"
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "${root:-/nonexistent}"' EXIT
hostport=$(docker port "$cid" 80/tcp | grep -m1 '^127\.0\.0\.1:' || true)
[ -n "$hostport" ] || die "container $cid of $tag has no port published on 127.0.0.1"
body=""
for _ in $(seq 1 50); do
    if body=$(curl -fsS --max-time 2 "http://$hostport/" 2>/dev/null) && [ -n "$body" ]; then
        break
    fi
    sleep 0.2
done
[ "$body" = "$text" ] || die "check of $tag failed: GET http://$hostport/ answered '$body', expected '$text'"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$hostport/health" || true)
if [ "$health" = 1 ] && [ "$code" != 200 ]; then
    die "check of $tag failed: GET /health answered $code, expected 200"
fi
if [ "$health" = 0 ] && [ "$code" != 404 ]; then
    die "check of $tag failed: GET /health answered $code, expected 404"
fi
docker rm -f "$cid" >/dev/null
