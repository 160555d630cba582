#!/usr/bin/env bash
# The local stack of real services the integration tests run against, all on
# 127.0.0.1 and all started in the background:
#
#   kafka            Apache Kafka, one KRaft node (broker + controller)
#   s3proxy          S3Proxy on a filesystem backend, verifying SigV4
#   google-emulator  t/emulator/google-emulator.js (OAuth, Drive, control plane)
#
# usage: t/stack/stack.sh fetch|up|down|status|start NAME...|stop NAME...|renew kafka
#
#   fetch   download the jars with Maven into the cache (once; later runs need
#           no network)
#   up      fetch if needed, start what is not running yet, wait until every
#           service answers, write build/stack.env; exit 0 only if all answer
#   down    stop what `up` started (pid files), remove their data
#   status  print each service and whether it is up (exit 1 if any is not)
#   stop NAME...    stop single services, keeping their data
#   start NAME...   start single services on the data they had, and wait
#                   (NAME: kafka, s3proxy, google-emulator)
#   renew kafka     a new Kafka cluster at the same address (fresh data)
#
# environment:
#   GDRIVE_CACHE_DIR       jar cache (default: <repo>/.cache/stack)
#   STACK_KAFKA_PORT       broker port (default 19092)
#   STACK_KAFKA_CONTROLLER_PORT   controller port (default broker port + 1)
#   STACK_S3_PORT          S3Proxy port (default 19000)
#   STACK_GOOGLE_PORT      Google emulator port (default 19100)
#   STACK_NO_EMULATOR=1    neither start nor wait for the Google emulator
#   STACK_KAFKA_TIMEOUT    seconds to wait for Kafka (default 120)
#   STACK_KEEP_DATA=1      `down` keeps Kafka's and S3Proxy's data
#
# Runtime files live in build/stack/: <name>.pid, <name>.log, and a directory
# per service with its configuration and data. `up` starts a service from
# fresh data, so that every test run sees the same empty Kafka and bucket; a
# service that is still running is reused as it is.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE_DIR=${GDRIVE_CACHE_DIR:-$REPO/.cache/stack}
RUN_DIR=$REPO/build/stack
ENV_FILE=$REPO/build/stack.env
KAFKA_LIB=$CACHE_DIR/kafka-lib
S3PROXY_LIB=$CACHE_DIR/s3proxy-lib
EMULATOR_JS=$REPO/t/emulator/google-emulator.js

HOST=127.0.0.1
KAFKA_PORT=${STACK_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${STACK_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
S3_PORT=${STACK_S3_PORT:-19000}
GOOGLE_PORT=${STACK_GOOGLE_PORT:-19100}

KAFKA_TIMEOUT=${STACK_KAFKA_TIMEOUT:-120}
S3_TIMEOUT=60
GOOGLE_TIMEOUT=30

# topic:partitions, created while Kafka starts
KAFKA_TOPICS=(integration.trigger:4 integration.trigger.dlq:4 integration.result:4)

# fixed test credentials: the emulator's defaults and S3Proxy's only identity
S3_ACCESS_KEY=AKIAEMULATORKEY0001
S3_SECRET_KEY=EmuS3SecretKey0001q9XvT4mLz7RbW2nJ8cYp5F
S3_REGION=us-east-1
S3_BUCKET=gdrive-ingest
GOOGLE_CLIENT_ID=emulator-client-id.apps.googleusercontent.com
GOOGLE_CLIENT_SECRET=emulator-client-secret
GOOGLE_REFRESH_TOKEN=1//emulator-refresh-token

SERVICES=(kafka s3proxy google-emulator)

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --------------------------------------------------------------- processes

# A string that must appear in a service's command line. It tells our process
# from an unrelated one that got the same pid after ours died.
marker() {
    case $1 in
        kafka | s3proxy) printf -- '-Dgdrive.stack=%s' "$1" ;;
        google-emulator) printf '%s' "$EMULATOR_JS" ;;
    esac
}

# pid of the service if it is running, else nothing (and status 1)
service_pid() {
    local name=$1 pidfile=$RUN_DIR/$1.pid pid cmdline state
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$(marker "$name")"* ]] || return 1
    # a zombie has exited already
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]] || return 1
    printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# refuse to start on a port that something else holds: the tests would talk
# to the wrong server
require_free_port() {
    if port_open "$2"; then
        die "$1: port $2 on $HOST is already in use by another process"
    fi
}

# start a detached process (own session, so that the terminal's ^C or hangup
# does not reach it) with output to build/stack/<name>.log; records its pid
spawn() {
    local name=$1
    shift
    : >"$RUN_DIR/$name.log"
    # fds 8 and 9 hold our flock locks: a service that inherited them would
    # keep every later up or down waiting for as long as it runs
    setsid "$@" </dev/null >>"$RUN_DIR/$name.log" 2>&1 8>&- 9>&- &
    # without job control the child is not a group leader, so setsid execs in
    # place and $! is the service's own pid
    printf '%s\n' "$!" >"$RUN_DIR/$name.pid"
}

log_tail() {
    local f=$RUN_DIR/$1.log
    [[ -f $f ]] || return 0
    log "last lines of $f:"
    tail -n "${2:-40}" "$f" | sed 's/^/    /' >&2
}

# fail now, with its log, if a service we wait for has died
check_alive() {
    if ! service_pid "$1" >/dev/null; then
        log "$1 exited during start-up"
        log_tail "$1"
        exit 1
    fi
}

# --------------------------------------------------------------- fetch

require_java() {
    command -v java >/dev/null || die "java not found (run t/stack/install-deps.sh)"
    local v
    v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
    [[ ${v%%.*} -ge 17 ]] || die "java $v found, Kafka 4 and S3Proxy need 17 or newer"
}

# copy one pom profile's runtime dependencies into <cache>/<profile>-lib.
# The stamp holds the pom's hash: a complete directory for the same pom is
# kept, so that a second fetch needs neither Maven nor the network.
fetch_profile() {
    local profile=$1 lib=$CACHE_DIR/$1-lib want tmp
    want="$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1) $profile"
    if [[ -f $lib/.stamp && $(<"$lib/.stamp") == "$want" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (run t/stack/install-deps.sh)"
    log "fetching $profile jars into $lib"
    tmp=$lib.tmp.$$
    rm -rf "$tmp"
    # Maven's output goes to a log, shown only when it fails
    if ! mvn -B -Dstyle.color=never -f "$HERE/pom.xml" -P "$profile" \
            dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$tmp" >"$CACHE_DIR/$profile-fetch.log" 2>&1; then
        tail -n 40 "$CACHE_DIR/$profile-fetch.log" >&2
        rm -rf "$tmp"
        die "mvn could not fetch the $profile jars (log: $CACHE_DIR/$profile-fetch.log)"
    fi
    printf '%s\n' "$want" >"$tmp/.stamp"
    rm -rf "$lib"
    mv "$tmp" "$lib"
}

cmd_fetch() {
    mkdir -p "$CACHE_DIR"
    # two test runs fetching at once would write the same directories
    exec 8>"$CACHE_DIR/.fetch.lock"
    flock 8
    fetch_profile kafka
    fetch_profile s3proxy
    exec 8>&-
}

# --------------------------------------------------------------- kafka

kafka_tool() { bash "$HERE/kafka-tool.sh" "$@"; }

# a KRaft cluster id: 16 random bytes, base64url without padding, as Kafka's
# own random-uuid prints (spares a JVM start). One starting with '-' would be
# read as an option on the command line, so draw again.
kafka_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        [[ $id != -* ]] && break
    done
    printf '%s\n' "$id"
}

# start_kafka [keep]: from fresh data, or with "keep" on the data of the
# last run if there is a formatted one
start_kafka() {
    local pid dir=$RUN_DIR/kafka
    if pid=$(service_pid kafka); then
        log "kafka already running (pid $pid), reused"
        return 0
    fi
    require_free_port kafka "$KAFKA_PORT"
    require_free_port kafka "$KAFKA_CONTROLLER_PORT"
    if [[ ${1:-} == keep && -f $dir/data/meta.properties && -f $dir/server.properties ]]; then
        spawn_kafka
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir/data"

    # Combined broker + controller with a static one-voter quorum. Every
    # internal topic has one replica and few partitions so that the first
    # group coordinator lookup and transaction are quick.
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
EOF

    local cluster_id
    cluster_id=$(kafka_cluster_id)
    if ! kafka_tool storage format --cluster-id "$cluster_id" \
            --config "$dir/server.properties" >"$dir/format.log" 2>&1; then
        cat "$dir/format.log" >&2
        die "kafka: formatting the storage failed"
    fi
    spawn_kafka
    # the admin client retries until the broker listens, so the tools' JVMs
    # start up while Kafka does
    start_topic_creation
    KAFKA_WARMUP=1
}

spawn_kafka() {
    local dir=$RUN_DIR/kafka
    spawn kafka java -Dgdrive.stack=kafka \
        -Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/log4j2-kafka.xml" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties"
    log "kafka starting (pid $(<"$RUN_DIR/kafka.pid"), $HOST:$KAFKA_PORT)"
}

# background jobs creating the topics, one short JVM each
TOPIC_JOBS=()
# set when Kafka was started on fresh data, see kafka_warmup
KAFKA_WARMUP=0
start_topic_creation() {
    local spec topic
    for spec in "${KAFKA_TOPICS[@]}"; do
        topic=${spec%%:*}
        kafka_tool topics --bootstrap-server "$HOST:$KAFKA_PORT" \
            --create --if-not-exists --topic "$topic" \
            --partitions "${spec##*:}" --replication-factor 1 \
            >"$RUN_DIR/kafka/create-$topic.log" 2>&1 &
        TOPIC_JOBS+=("$!")
    done
}

# Kafka creates __transaction_state and __consumer_offsets on first use,
# which makes the first idempotent producer and the first consumer group
# wait ("Coordinator load in progress") during a test. One idempotent record
# and one group consuming it (both named stack.warmup) create them now.
kafka_warmup() {
    local b=$HOST:$KAFKA_PORT
    echo warmup | kcat -P -b "$b" -t stack.warmup \
        -X enable.idempotence=true -X acks=all -X message.timeout.ms=30000 2>/dev/null &&
        timeout 30 kcat -b "$b" -G stack.warmup -X auto.offset.reset=earliest \
            -c 1 -q stack.warmup >/dev/null 2>&1
}

# on a failed up: no stray topic creation left behind
stop_topic_creation() {
    local p
    for p in "${TOPIC_JOBS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
}

# kcat's metadata, or nothing if the broker does not answer
kafka_metadata() {
    kcat -b "$HOST:$KAFKA_PORT" -L -m 3 2>/dev/null || true
}

# true when every topic exists with its partitions and every partition of
# them has a leader
kafka_topics_ready() {
    local md spec topic parts
    md=$(kafka_metadata)
    for spec in "${KAFKA_TOPICS[@]}"; do
        topic=${spec%%:*}
        parts=${spec##*:}
        [[ $md == *"topic \"$topic\" with $parts partitions:"* ]] || return 1
    done
    # a partition without a leader shows as "leader -1"; errors as "Broker:"
    [[ $md != *"leader -1"* && $md != *"Broker:"* ]]
}

wait_kafka() {
    local deadline=$((SECONDS + KAFKA_TIMEOUT)) md failed=0 p
    # first the broker itself
    while :; do
        check_alive kafka
        # kcat would wait its whole -m timeout for a broker that is not
        # listening yet: ask only once the port is open
        if port_open "$KAFKA_PORT"; then
            md=$(kafka_metadata)
            [[ $md == *"1 brokers:"* ]] && break
        fi
        if ((SECONDS >= deadline)); then
            log "kafka did not answer within ${KAFKA_TIMEOUT}s"
            log_tail kafka
            exit 1
        fi
        sleep 0.5
    done
    if ((KAFKA_WARMUP)); then
        kafka_warmup &
        TOPIC_JOBS+=("$!")
    fi
    # then the topics: being created if Kafka was just started; a reused
    # Kafka should have them, but gets them again if it has not
    if ((${#TOPIC_JOBS[@]} == 0)) && ! kafka_topics_ready; then
        start_topic_creation
    fi
    for p in "${TOPIC_JOBS[@]}"; do
        while kill -0 "$p" 2>/dev/null; do
            check_alive kafka
            if ((SECONDS >= deadline)); then
                log "kafka: topics not created within ${KAFKA_TIMEOUT}s"
                log_tail kafka
                exit 1
            fi
            sleep 0.2
        done
        wait "$p" || failed=1
    done
    TOPIC_JOBS=()
    if ((failed != 0)); then
        log "kafka: creating a topic or the warm-up failed (checking metadata anyway):"
        cat "$RUN_DIR"/kafka/create-*.log >&2 || true
    fi
    until kafka_topics_ready; do
        check_alive kafka
        if ((SECONDS >= deadline)); then
            log "kafka topics not ready within ${KAFKA_TIMEOUT}s; metadata:"
            kafka_metadata >&2
            log_tail kafka
            exit 1
        fi
        sleep 0.5
    done
    log "kafka ready on $HOST:$KAFKA_PORT"
}

# --------------------------------------------------------------- s3proxy

# start_s3proxy [keep]: with an empty store, or with "keep" on the last one
start_s3proxy() {
    local pid dir=$RUN_DIR/s3proxy
    if pid=$(service_pid s3proxy); then
        log "s3proxy already running (pid $pid), reused"
        return 0
    fi
    require_free_port s3proxy "$S3_PORT"
    if [[ ${1:-} != keep ]]; then
        rm -rf "$dir"
    fi
    mkdir -p "$dir/data"

    # aws-v4: SigV4 only, as AWS does (V2 and unsigned requests get 403).
    # The filesystem backend streams objects to disk, so multi-GiB uploads do
    # not live in the heap. A SigV4 request whose payload hash is given
    # (not UNSIGNED-PAYLOAD, not aws-chunked) is buffered to be checked, up to
    # v4-max-non-chunked-request-size: 64 MiB covers the usual part sizes.
    cat >"$dir/s3proxy.properties" <<EOF
s3proxy.endpoint=http://$HOST:$S3_PORT
s3proxy.authorization=aws-v4
s3proxy.identity=$S3_ACCESS_KEY
s3proxy.credential=$S3_SECRET_KEY
s3proxy.v4-max-non-chunked-request-size=67108864
jclouds.provider=filesystem
jclouds.filesystem.basedir=$dir/data
jclouds.region=$S3_REGION
EOF

    spawn s3proxy java -Dgdrive.stack=s3proxy \
        -Xmx512m -Xms64m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlogback.configurationFile="$HERE/logback-s3proxy.xml" \
        -cp "$S3PROXY_LIB/*" org.gaul.s3proxy.Main \
        --properties "$dir/s3proxy.properties"
    log "s3proxy starting (pid $(<"$RUN_DIR/s3proxy.pid"), $HOST:$S3_PORT)"
}

# a SigV4-signed request to S3Proxy; prints the HTTP status.
# curl 7.88's --aws-sigv4 does not send x-amz-content-sha256, which S3 (and
# S3Proxy) require with SigV4, so it is added (and signed) here.
s3_signed() {
    local method=$1 path=$2
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
        --aws-sigv4 "aws:amz:$S3_REGION:s3" \
        --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        "http://$HOST:$S3_PORT$path" || true
}

wait_s3proxy() {
    local deadline=$((SECONDS + S3_TIMEOUT)) code
    until port_open "$S3_PORT"; do
        check_alive s3proxy
        if ((SECONDS >= deadline)); then
            log "s3proxy did not answer within ${S3_TIMEOUT}s"
            log_tail s3proxy
            exit 1
        fi
        sleep 0.2
    done
    # the bucket: HEAD answers 200 once it exists (a reused S3Proxy)
    code=$(s3_signed HEAD "/$S3_BUCKET")
    if [[ $code != 200 ]]; then
        code=$(s3_signed PUT "/$S3_BUCKET")
        [[ $code == 200 ]] || { log_tail s3proxy; die "s3proxy: creating bucket $S3_BUCKET answered $code"; }
        code=$(s3_signed HEAD "/$S3_BUCKET")
        [[ $code == 200 ]] || { log_tail s3proxy; die "s3proxy: bucket $S3_BUCKET answers $code after creation"; }
    fi
    log "s3proxy ready on $HOST:$S3_PORT, bucket $S3_BUCKET"
}

# --------------------------------------------------------------- emulator

start_google() {
    local pid
    if pid=$(service_pid google-emulator); then
        log "google-emulator already running (pid $pid), reused"
        return 0
    fi
    require_free_port google-emulator "$GOOGLE_PORT"
    spawn google-emulator node "$EMULATOR_JS" --host "$HOST" --port "$GOOGLE_PORT"
    log "google-emulator starting (pid $(<"$RUN_DIR/google-emulator.pid"), $HOST:$GOOGLE_PORT)"
}

wait_google() {
    local deadline=$((SECONDS + GOOGLE_TIMEOUT))
    until curl -fs -o /dev/null --max-time 5 "http://$HOST:$GOOGLE_PORT/__admin/health"; do
        check_alive google-emulator
        if ((SECONDS >= deadline)); then
            log "google-emulator did not answer within ${GOOGLE_TIMEOUT}s"
            log_tail google-emulator
            exit 1
        fi
        sleep 0.2
    done
    log "google-emulator ready on $HOST:$GOOGLE_PORT"
}

# --------------------------------------------------------------- up / down

# NAME='value' lines, sourceable by sh and read by t/lib/GDrive/Test.pm
write_env() {
    local tmp=$ENV_FILE.tmp.$$ g=http://$HOST:$GOOGLE_PORT
    q() { printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }
    {
        printf '# written by t/stack/stack.sh up; removed by down\n'
        q KAFKA_BOOTSTRAP_SERVERS "$HOST:$KAFKA_PORT"
        q GOOGLE_TOKEN_URL "$g/token"
        q GOOGLE_API_URL "$g"
        q GOOGLE_CLIENT_ID "$GOOGLE_CLIENT_ID"
        q GOOGLE_CLIENT_SECRET "$GOOGLE_CLIENT_SECRET"
        q GOOGLE_REFRESH_TOKEN "$GOOGLE_REFRESH_TOKEN"
        q CONTROL_PLANE_URL "$g/cp"
        q GOOGLE_EMULATOR_ADMIN_URL "$g/__admin"
        q S3_ENDPOINT "http://$HOST:$S3_PORT"
        q AWS_REGION "$S3_REGION"
        q S3_BUCKET_NAME "$S3_BUCKET"
        q AWS_ACCESS_KEY_ID "$S3_ACCESS_KEY"
        q AWS_SECRET_ACCESS_KEY "$S3_SECRET_KEY"
        q STACK_KAFKA_LIB "$KAFKA_LIB"
    } >"$tmp"
    mv "$tmp" "$ENV_FILE"
}

with_emulator() { [[ ${STACK_NO_EMULATOR:-0} != 1 ]]; }

# everything up needs, checked before anything starts
preflight() {
    require_java
    command -v kcat >/dev/null || die "kcat not found (run t/stack/install-deps.sh)"
    command -v curl >/dev/null || die "curl not found (run t/stack/install-deps.sh)"
    if with_emulator; then
        [[ -f $EMULATOR_JS ]] || die "google-emulator: $EMULATOR_JS not found (STACK_NO_EMULATOR=1 skips it)"
        command -v node >/dev/null || die "node not found (run t/stack/install-deps.sh)"
    fi
}

cmd_up() {
    local t0=$SECONDS
    preflight
    cmd_fetch
    mkdir -p "$RUN_DIR"
    # one up or down at a time
    exec 9>"$RUN_DIR/.lock"
    flock 9
    trap stop_topic_creation EXIT

    # the quick ones first; Kafka, the slow one, starts while they come up
    start_s3proxy
    if with_emulator; then start_google; fi
    start_kafka

    wait_s3proxy
    if with_emulator; then wait_google; fi
    wait_kafka

    write_env
    log "up in $((SECONDS - t0))s; environment in $ENV_FILE"
}

# TERM, then KILL after a timeout; returns once the process is gone
stop_service() {
    local name=$1 timeout=$2 pid deadline
    if ! pid=$(service_pid "$name"); then
        rm -f "$RUN_DIR/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while service_pid "$name" >/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) still running after ${timeout}s, killing it"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while service_pid "$name" >/dev/null; do
                ((SECONDS < deadline)) || die "$name (pid $pid) survives SIGKILL"
                sleep 0.1
            done
            break
        fi
        sleep 0.1
    done
    rm -f "$RUN_DIR/$name.pid"
    log "$name stopped"
}

cmd_down() {
    local name pids=() p failed=0
    [[ -d $RUN_DIR ]] || { rm -f "$ENV_FILE"; return 0; }
    exec 9>"$RUN_DIR/.lock"
    flock 9
    rm -f "$ENV_FILE"
    # in parallel: Kafka's controlled shutdown takes the longest
    for name in "${SERVICES[@]}"; do
        stop_service "$name" 30 &
        pids+=("$!")
    done
    for p in "${pids[@]}"; do
        wait "$p" || failed=1
    done
    ((failed == 0)) || die "could not stop everything"
    if [[ ${STACK_KEEP_DATA:-0} != 1 ]]; then
        rm -rf "$RUN_DIR/kafka/data" "$RUN_DIR/s3proxy/data"
    fi
}

# start or stop single services, keeping their data: for tests that take a
# service away and bring it back (google-emulator keeps its state in memory,
# so a restart loses it)
check_names() {
    local name
    (($# > 0)) || die "name a service: ${SERVICES[*]}"
    for name in "$@"; do
        [[ " ${SERVICES[*]} " == *" $name "* ]] || die "unknown service '$name' (${SERVICES[*]})"
    done
}

cmd_stop() {
    local name
    check_names "$@"
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    flock 9
    for name in "$@"; do
        stop_service "$name" 30
    done
}

# Kafka 4.x may die while restarting on kept data (a start-up race of its
# KRaft server: "raftManager is null"); another start goes through
start_kafka_kept() {
    local try i
    for try in 1 2 3; do
        start_kafka keep
        for ((i = 0; i < 240; i++)); do
            service_pid kafka >/dev/null || break
            if port_open "$KAFKA_PORT"; then
                sleep 3
                break
            fi
            sleep 0.5
        done
        service_pid kafka >/dev/null && return 0
        log "kafka exited during start-up (attempt $try)"
        log_tail kafka 5
    done
}

cmd_start() {
    local name
    check_names "$@"
    preflight
    cmd_fetch
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    flock 9
    trap stop_topic_creation EXIT
    for name in "$@"; do
        case $name in
            kafka) start_kafka_kept ;;
            s3proxy) start_s3proxy keep ;;
            google-emulator) start_google ;;
        esac
    done
    for name in "$@"; do
        case $name in
            kafka) wait_kafka ;;
            s3proxy) wait_s3proxy ;;
            google-emulator) wait_google ;;
        esac
    done
}

# a new Kafka cluster at the same address (fresh data, a new cluster id):
# for tests of what clients do when the cluster behind an address changes
cmd_renew() {
    [[ ${1:-} == kafka ]] || die "only kafka can be renewed"
    cmd_stop kafka
    rm -rf "$RUN_DIR/kafka/data"
    cmd_start kafka
}

cmd_status() {
    local name pid port all=0
    for name in "${SERVICES[@]}"; do
        case $name in
            kafka) port=$KAFKA_PORT ;;
            s3proxy) port=$S3_PORT ;;
            google-emulator) port=$GOOGLE_PORT ;;
        esac
        if pid=$(service_pid "$name"); then
            if port_open "$port"; then
                printf '%-16s up        pid %-8s %s:%s\n' "$name" "$pid" "$HOST" "$port"
            else
                printf '%-16s starting  pid %-8s %s:%s not answering\n' "$name" "$pid" "$HOST" "$port"
                all=1
            fi
        else
            printf '%-16s down\n' "$name"
            all=1
        fi
    done
    return "$all"
}

case ${1:-} in
    fetch) require_java; cmd_fetch ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    renew) shift; cmd_renew "$@" ;;
    *)
        echo "usage: $0 fetch|up|down|status|start NAME...|stop NAME...|renew kafka" >&2
        exit 2
        ;;
esac
