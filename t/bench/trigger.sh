#!/usr/bin/env bash
# Benchmark of gdrive_trigger against a plain "return 202" location of the
# same nginx, in the same run: requests/s, p50/p99, and the CPU time the
# nginx workers (librdkafka's threads included: /proc counts every thread
# of a process) spend per request. Needs the stack (make stack) and wrk.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
set -a
. "$REPO/build/stack.env"
set +a
DUR=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-64}
PORT=${BENCH_PORT:-18470}
DIR=$(mktemp -d /tmp/gdrive-bench-XXXXXX)
TOPIC=${BENCH_TOPIC:-bench-trigger-$$}
PARTITIONS=${BENCH_PARTITIONS:-4}
HZ=$(getconf CLK_TCK)

command -v wrk >/dev/null || { echo "trigger bench: wrk missing (apt-get install wrk)" >&2; exit 1; }

# librdkafka sends one partition per produce request: the partition count
# shapes the numbers, so the topic is made with a known one
if [ -z "${BENCH_TOPIC:-}" ]; then
    "$REPO/t/stack/kafka-tool.sh" topics --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" \
        --create --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor 1 >/dev/null
fi

cat > "$DIR/nginx.conf" <<CONF
load_module ${BENCH_MODULE:-$REPO/build/ngx_http_gdrive_worker_module.so};
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/body;
    gdrive_zone gdrive 16m;
    gdrive_kafka_brokers $KAFKA_BOOTSTRAP_SERVERS;
    gdrive_kafka_topic $TOPIC;
    ${BENCH_KAFKA_OPTIONS:-}
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        keepalive_requests 1000000;
        location = /triggers { gdrive_trigger; }
        location = /plain { return 202 '{"accepted":true}'; }
    }
}
CONF

/usr/sbin/nginx -p "$DIR/" -c "$DIR/nginx.conf"
trap '/usr/sbin/nginx -p "$DIR/" -c "$DIR/nginx.conf" -s quit; sleep 1; rm -rf "$DIR"' EXIT
# stopped early (its output cut short, ^C): nginx is stopped all the same
trap 'exit 1' INT TERM PIPE
sleep 1

workers() { pgrep -P "$(cat "$DIR/nginx.pid")"; }
cpu_ticks() { local t=0; for p in $(workers); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }

# where the time goes: "main other kafka switches" - CPU ticks of the
# workers' nginx threads, of their other threads (librdkafka's), of the
# stack's Kafka broker, and the workers' context switches
KAFKA_PID=$(cat "$REPO/build/stack/kafka.pid" 2>/dev/null || true)
split_ticks() {
    local p t main=0 other=0 kafka=0 sw=0
    for p in $(workers); do
        for t in /proc/"$p"/task/*; do
            if [ "${t##*/}" = "$p" ]; then
                main=$((main + $(awk '{print $14 + $15}' "$t/stat")))
            else
                other=$((other + $(awk '{print $14 + $15}' "$t/stat")))
            fi
            sw=$((sw + $(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status")))
        done
    done
    if [ -n "$KAFKA_PID" ] && [ -r "/proc/$KAFKA_PID/stat" ]; then
        kafka=$(awk '{print $14 + $15}' "/proc/$KAFKA_PID/stat")
    fi
    echo "$main $other $kafka $sw"
}

# warm up: topic creation, connections to the broker
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d '{"integration_id":"warm","action":"sync_changes"}' "http://127.0.0.1:$PORT/triggers"
wrk -t2 -c"$CONNS" -d2s -s "$REPO/t/bench/post.lua" "http://127.0.0.1:$PORT/triggers" >/dev/null

run() {   # name path batch
    local before after out reqs rps p50 p99 non2xx s0 s1
    before=$(cpu_ticks)
    s0=$(split_ticks)
    out=$(BATCH=$3 wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$REPO/t/bench/post.lua" \
          "http://127.0.0.1:$PORT$2")
    s1=$(split_ticks)
    after=$(cpu_ticks)
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p')
    p99=$(echo "$out" | sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    cpu_us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" \
             'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    printf '%-10s batch=%-4s rps=%-10s triggers/s=%-10s p50=%-8sms p99=%-8sms cpu/request=%sus errors=%s\n' \
        "$1" "$3" "$rps" "$(awk -v r="$rps" -v b="$3" 'BEGIN{printf "%.0f", r*b}')" \
        "$p50" "$p99" "$cpu_us" "${non2xx:-0}"
    awk -v a="$s0" -v b="$s1" -v hz="$HZ" -v n="$reqs" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "           per request: nginx thread %.1fus, librdkafka threads %.1fus, Kafka broker %.1fus; %.2f context switches\n",
            (y[1] - x[1]) / hz * 1e6 / n, (y[2] - x[2]) / hz * 1e6 / n,
            (y[3] - x[3]) / hz * 1e6 / n, (y[4] - x[4]) / n }'
    eval "${1}_rps=$rps ${1}_cpu=$cpu_us ${1}_p99=$p99"
}

echo "topic $TOPIC: $(kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -t "$TOPIC" 2>/dev/null |
    awk '/partitions:/ {print $4; exit}') partitions; $CONNS connections, ${DUR}s a run"
run plain /plain 1
run trigger /triggers 1
run batch100 /triggers 100

echo
awk -v pr="$plain_rps" -v tr="$trigger_rps" -v pc="$plain_cpu" -v tc="$trigger_cpu" \
    -v tp99="$trigger_p99" -v br="$batch100_rps" 'BEGIN {
    printf "rate ratio   trigger/plain = %.2f  (target >= 0.5)\n", tr / pr
    printf "cpu ratio    trigger/plain = %.2f  (target <= 1.6)\n", tc / pc
    printf "p99 trigger              = %.2f ms (target <= 20)\n", tp99
    printf "batch of 100             = %.0f triggers/s (target >= 100000)\n", br * 100
}'
