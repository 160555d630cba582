#!/usr/bin/env bash
# Builds an nginx with the poll and select event methods for
# t/22-trigger-poll.t: Debian's nginx has only epoll, and nginx-dev ships
# headers only.  The source is Debian's nginx source package (upstream's
# tarball in it), fetched with apt into a state of its own, so the
# machine's apt sources stay as they are; it is kept in the cache.
#
# Only the binary is built, with the modules a test configuration uses: it
# is configured --with-compat and with the features that enter the module
# signature as Debian's nginx has them (threads, PCRE), and TLS, whose
# functions the module calls, so it loads the
# module that make built (build/ngx_http_gdrive_worker_module.so), the one
# the other tests run.  The binary does not depend on the module's source:
# it is built again only when the nginx source or these flags change.
# Prints the build directory: objs/nginx is in it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${GDRIVE_CACHE_DIR:-$REPO/.cache/stack}/nginx-source
OUT=$REPO/build/poll-nginx

log() { printf 'build-poll-nginx: %s\n' "$*" >&2; }

fetch() {
    local tmp src
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" \
             "$tmp/parts" "$tmp/dl"

    # the machine's Debian sources, as source indexes
    : > "$tmp/sources.list"
    if [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > "$tmp/sources.list"
    fi
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed 's/^Types:.*/Types: deb-src/' "$f" > "$tmp/parts/${f##*/}"
    done

    local apt=(apt-get -q -o "Dir::Etc::SourceList=$tmp/sources.list"
               -o "Dir::Etc::SourceParts=$tmp/parts"
               -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
               -o "APT::Sandbox::User=root")
    "${apt[@]}" update >/dev/null
    # the release's own source first: a mirror may lack the newest
    # security update's, and only upstream's tarball is used
    (cd "$tmp/dl" && { "${apt[@]}" source --download-only nginx/bookworm \
                       || "${apt[@]}" source --download-only nginx; } >/dev/null)

    src=$(ls "$tmp"/dl/nginx_*.orig.tar.gz 2>/dev/null | head -1)
    [ -n "$src" ] || { log "no nginx source package"; return 1; }
    rm -rf "$CACHE" && mkdir -p "$CACHE"
    tar -xzf "$src" -C "$CACHE" --strip-components=1
}

if [ ! -x "$CACHE/configure" ]; then
    log "fetching nginx's source package"
    fetch
fi

FLAGS=(--with-compat --with-threads --with-http_ssl_module
       --with-poll_module --with-select_module
       --without-http_charset_module --without-http_gzip_module
       --without-http_ssi_module --without-http_userid_module
       --without-http_access_module --without-http_auth_basic_module
       --without-http_mirror_module --without-http_autoindex_module
       --without-http_geo_module --without-http_map_module
       --without-http_split_clients_module --without-http_referer_module
       --without-http_grpc_module --without-http_memcached_module
       --without-http_limit_conn_module --without-http_limit_req_module
       --without-http_empty_gif_module --without-http_browser_module
       --without-http_upstream_hash_module
       --without-http_upstream_ip_hash_module
       --without-http_upstream_least_conn_module
       --without-http_upstream_random_module
       --without-http_upstream_keepalive_module
       --without-http_upstream_zone_module)
# nginx's own flags less the optimizer and debug information: a third less
# compile time, and this nginx serves a handful of requests
CFLAGS_POLL="-pipe -O0 -W -Wall -Wpointer-arith -Wno-unused-parameter"
STAMP="$(grep -h 'define NGINX_VERSION ' "$CACHE/src/core/nginx.h") $CFLAGS_POLL ${FLAGS[*]}"

if [ -x "$OUT/objs/nginx" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
    echo "$OUT"
    exit 0
fi

rm -rf "$OUT" && mkdir -p "$(dirname "$OUT")" && cp -r "$CACHE" "$OUT"
cd "$OUT"
CFLAGS=$CFLAGS_POLL ./configure "${FLAGS[@]}" > configure.log 2>&1 ||
    { tail -20 configure.log >&2; exit 1; }
make -s -j2 -f objs/Makefile binary > make.log 2>&1 ||
    { tail -20 make.log >&2; exit 1; }
printf '%s\n' "$STAMP" > .stamp
echo "$OUT"
