#!/usr/bin/env bash
# Builds an nginx with the poll and select event methods, and the module
# with it, for t/22-trigger-poll.t: Debian's nginx has only epoll, and
# nginx-dev ships headers only.  The source is Debian's nginx source
# package (upstream's tarball in it), fetched with apt into a state of its
# own, so the machine's apt sources stay as they are; it is kept in the
# cache.  Prints the build directory: objs/nginx and
# objs/ngx_http_gdrive_worker_module.so are in it.
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

rm -rf "$OUT" && mkdir -p "$(dirname "$OUT")" && cp -r "$CACHE" "$OUT"
cd "$OUT"
./configure --with-compat --with-poll_module --with-select_module \
    --without-http_rewrite_module --without-http_gzip_module \
    --add-dynamic-module="$REPO" > configure.log 2>&1 ||
    { tail -20 configure.log >&2; exit 1; }
make -s -j2 -f objs/Makefile > make.log 2>&1 || { tail -20 make.log >&2; exit 1; }
echo "$OUT"
