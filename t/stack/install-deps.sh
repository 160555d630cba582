#!/usr/bin/env bash
# Installs with apt what the build, the tests and the local stack
# (t/stack/stack.sh) need and the machine lacks: nginx and its source tree,
# the libraries the module links, compilers for the unit and fuzz tests,
# dpkg-dev (apt-get source: an nginx with poll and select for one test),
# a Java 17+ runtime, Maven, Node.js, curl, kcat, procps, promtool
# (prometheus), Chromium for the operator page tests, and wrk, jq and the
# Python baseline's packages for the benchmarks.
# For a fresh Debian bookworm, as root. Installs nothing that is already
# there, and runs `apt-get update` only when something is missing, so a
# second run is quick and needs no network.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

need=()

# Debian packages checked by name: the module's build and test tools
for pkg in nginx nginx-dev librdkafka-dev libcurl4-openssl-dev \
           libjansson-dev libssl-dev pkg-config gcc make perl clang \
           libclang-rt-14-dev dpkg-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
        need+=("$pkg")
done

# Java: Kafka 4 and S3Proxy 4 need 17 or newer
java_ok() {
    command -v java >/dev/null || return 1
    local v
    v=$(java -XshowSettings:properties -version 2>&1 |
        awk -F'= ' '/java.specification.version/ {print $2}')
    [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 17))
}
java_ok || need+=(openjdk-17-jre-headless)

command -v mvn >/dev/null || need+=(maven)
# the Google emulator runs on node; npm comes with it for anyone who wants
# to work on the emulator (it has no dependencies of its own)
command -v node >/dev/null || need+=(nodejs npm)
command -v curl >/dev/null || need+=(curl)
# t/54-control-plane-tls.t makes its own CA and certificates
command -v openssl >/dev/null || need+=(openssl)
command -v kcat >/dev/null || need+=(kcat)
command -v ps >/dev/null || need+=(procps)
command -v flock >/dev/null || need+=(util-linux)
# promtool validates the metrics output; headless Chromium loads the
# status page
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v setsid >/dev/null || need+=(util-linux)
# the benchmarks (make bench) load nginx with wrk and read results with jq
command -v wrk >/dev/null || need+=(wrk)
command -v jq >/dev/null || need+=(jq)
# deploy/kubernetes is linted in the suite (t/09-deploy.t)
command -v yamllint >/dev/null || need+=(yamllint)
# the Python design the benchmarks compare against (its README's list)
for pkg in python3-aiohttp python3-confluent-kafka python3-boto3 \
           python3-cachetools python3-prometheus-client python3-psutil; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
        need+=("$pkg")
done

# npm packages of the suite, from t/deploy/package-lock.json (after node)
npm_deps() {
    local dir
    dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../deploy" && pwd)
    [[ -d $dir/node_modules ]] && return 0
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

if ((${#need[@]} == 0)); then
    npm_deps
    log "nothing else to install"
    exit 0
fi

# util-linux may be listed twice
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

if ((EUID != 0)); then
    log "missing: ${need[*]}; run this as root (or: sudo $0)"
    exit 1
fi

log "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# the JRE may have been installed next to an older default: pick it
jre17=/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)/bin/java
if ! java_ok && [[ -x $jre17 ]]; then
    update-alternatives --set java "$jre17" >/dev/null
fi
java_ok || { log "still no Java 17 or newer on PATH"; exit 1; }
npm_deps
log "done"
