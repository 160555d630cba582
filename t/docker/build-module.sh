#!/usr/bin/env bash
# Builds the module against Debian's nginx and installs it into DESTDIR the
# way Debian's own module packages are laid out:
#
#   DESTDIR/usr/lib/nginx/modules/ngx_http_gdrive_worker_module.so
#   DESTDIR/usr/share/nginx/modules-available/mod-http-gdrive-worker.conf
#   DESTDIR/etc/nginx/modules-enabled/50-mod-http-gdrive-worker.conf  (link)
#
# The Dockerfile's build stage runs it, and so does t/04-docker-recipe.t,
# so the image recipe is tested without a container engine.
#
#   t/docker/build-module.sh DESTDIR
#
# NGX_SRC     nginx source tree (default /usr/share/nginx/src, nginx-dev)
# BUILD_DIR   where the tree is configured (default: a temporary directory)
#
# The source tree of nginx-dev is the one /usr/sbin/nginx was built from,
# and conf_flags are the flags Debian configured it with, so the module is
# binary compatible with the nginx of the same Debian release.  Build
# dependencies missing from the machine are installed with apt-get (as
# root); nothing is installed when all are there.
set -euo pipefail

log() { printf 'build-module: %s\n' "$*" >&2; }

if (($# != 1)) || [[ -z $1 ]]; then
    echo "usage: $0 DESTDIR" >&2
    exit 2
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DESTDIR=$(mkdir -p "$1" && cd "$1" && pwd)
NGX_SRC=${NGX_SRC:-/usr/share/nginx/src}
MODULE=ngx_http_gdrive_worker_module

# --- build dependencies ------------------------------------------------------

need=()
for pkg in nginx-dev librdkafka-dev libcurl4-openssl-dev libjansson-dev \
           libssl-dev libpcre2-dev zlib1g-dev pkg-config gcc make dpkg-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
        need+=("$pkg")
done

if ((${#need[@]})); then
    if ((EUID != 0)); then
        log "missing: ${need[*]}; install them (apt-get install) as root"
        exit 1
    fi
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[[ -x $NGX_SRC/configure && -f $NGX_SRC/conf_flags ]] || {
    log "$NGX_SRC is not Debian's nginx source tree (package nginx-dev)"
    exit 1
}

# --- configure a private copy of the tree ------------------------------------

if [[ -n ${BUILD_DIR:-} ]]; then
    mkdir -p "$BUILD_DIR"
    work=$(cd "$BUILD_DIR" && pwd)
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi

rm -rf "$work/nginx"
cp -r "$NGX_SRC" "$work/nginx"
cd "$work/nginx"

# shellcheck disable=SC1091
. ./conf_flags

# Debian's hardening flags (stack protector, fortified libc calls, full
# RELRO), as its nginx package is built with them; the optimisation level
# stays nginx's own -O, the one "make" and the test suite build with
flags() {
    DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get "$1" |
        sed -e 's/\(^\| \)-O[0-9s]*\( \|$\)/ /g' -e 's/-ffile-prefix-map=[^ ]*//g'
}
cc_opt="$(flags CFLAGS) $(flags CPPFLAGS)"
ld_opt="$(flags LDFLAGS)"

log "configuring nginx $(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
    src/core/nginx.h) with Debian's flags"
if ! ./configure "${NGX_CONF_FLAGS[@]}" \
        --with-cc-opt="$cc_opt -fPIC" --with-ld-opt="$ld_opt -fPIC" \
        --add-dynamic-module="$REPO" > "$work/configure.log" 2>&1; then
    tail -20 "$work/configure.log" >&2
    exit 1
fi

log "building $MODULE.so"
make -s -f objs/Makefile modules

# --- install -------------------------------------------------------------------

install -d "$DESTDIR/usr/lib/nginx/modules" \
           "$DESTDIR/usr/share/nginx/modules-available" \
           "$DESTDIR/etc/nginx/modules-enabled"
install -m 0644 "objs/$MODULE.so" "$DESTDIR/usr/lib/nginx/modules/$MODULE.so"

# "modules/" is relative to Debian's prefix, /usr/share/nginx, where
# nginx-common links it to /usr/lib/nginx/modules
printf 'load_module modules/%s.so;\n' "$MODULE" \
    > "$DESTDIR/usr/share/nginx/modules-available/mod-http-gdrive-worker.conf"
ln -sfn /usr/share/nginx/modules-available/mod-http-gdrive-worker.conf \
    "$DESTDIR/etc/nginx/modules-enabled/50-mod-http-gdrive-worker.conf"

log "installed into $DESTDIR"
