#!/usr/bin/env bash
# Benchmarks of the whole sync pipeline (Drive download streamed into S3),
# against the stack's servers, reported as numbers and ratios; a functional
# failure (an object not stored, a trigger in the DLQ) exits non-zero.
#
#   big   a 1 GiB file through the module, one worker, in three settings:
#         one PUT streamed from 4 8m buffers (as the baseline uploads it),
#         and multipart uploads of 4 8m and 4 16m parts; each against a
#         baseline run just before it on the same file: curl downloading it
#         from the emulator piped into curl uploading it to S3.  The module
#         hashes every byte (sha256; md5 too in parts, where S3 cannot check
#         Drive's); the baseline hashes nothing.  BENCH_BIG_SETTING
#         ("name:directives") runs one setting of your own instead.
#   many  5,000 files of 4 KiB end to end: one sync_folder trigger (the
#         module lists the folder and fans out one sync_file per file, all
#         on the integration's partition), then 5,000 sync_file triggers
#         spread over 8 integrations (so every worker gets partitions);
#         files/s and the nginx workers' CPU milliseconds per file.
#   python  the module against the Python design users would otherwise run
#         (the worker.py that BENCH_PYWORKER names), on the same
#         stack in the same run, as its README says is fair: one nginx
#         worker against the one Python process, sync_file triggers of
#         4 KiB files produced straight into each one's topic, a warm-up,
#         then 3 rounds of BENCH_PY_FILES (500); CPU of every thread from
#         /proc/PID/task/*/stat, medians. Prints CPU per file, files/s and
#         Google requests per file (the emulator's request log) of each,
#         and the ratio of CPU per file (target >= 10), and the module's
#         S3 HEADs per file (its gdrive_s3_requests_total).
#         BENCH_PY_FILES (500), BENCH_PY_INFLIGHT (64, the module's
#         gdrive_max_inflight) and BENCH_PY_OPTIONS (more directives for
#         the module) vary it; BENCH_TRACE, a command that takes
#         "-p PID -o FILE" ("perf record -g", "perf stat -e ...",
#         "strace -c -f"), runs on the module's worker through each
#         measured round, its output in BENCH_TRACE_OUT.r1, .r2, .r3.
#   memory  RSS growth of one worker per in-flight job: BENCH_MEM_JOBS
#         (100) sync_file triggers of 4 KiB files whose downloads the
#         emulator delays (a files.media fault with delay_ms), so that
#         they are all in flight at once; /proc/PID/status VmRSS before
#         and while they wait, divided by their number.
#
# many also syncs the folder of its sync_folder a second time, unchanged:
# files/s, Google requests and S3 HEADs per file of a re-sync.
#
# Usage: t/bench/pipeline.sh [big] [many] [python] [memory]   (all by default)
# BENCH_BIG_SIZE, BENCH_MANY_COUNT, BENCH_MANY_SIZE, BENCH_WORKERS (2),
# BENCH_INFLIGHT (64) and BENCH_MANY_OPTIONS (more directives) vary them;
# BENCH_LOG_LEVEL (warn) and BENCH_KEEP=1 (keep the directory, logs in it)
# help to see why; BENCH_MODULE names another build of the module to load
# (to compare two).
# Needs the stack (make stack), kcat, jq, curl.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
set -a
. "$REPO/build/stack.env"
set +a
BIG_SIZE=${BENCH_BIG_SIZE:-1073741824}
# the module's settings for the big file, "name:directives"
BIG_SETTINGS=(
    "one streamed PUT, buffers 4 8m:gdrive_stream_buffers 4 8m; gdrive_s3_multipart_threshold 5g;"
    "multipart, parts 4 8m:gdrive_stream_buffers 4 8m;"
    "multipart, parts 4 16m:gdrive_stream_buffers 4 16m;"
)
if [ -n "${BENCH_BIG_SETTING:-}" ]; then
    BIG_SETTINGS=("$BENCH_BIG_SETTING")
fi
MANY_COUNT=${BENCH_MANY_COUNT:-5000}
MANY_SIZE=${BENCH_MANY_SIZE:-4096}
MANY_WORKERS=${BENCH_WORKERS:-2}
MANY_INFLIGHT=${BENCH_INFLIGHT:-64}
RUN=bench-pipe-$$-$(date +%s)
HZ=$(getconf CLK_TCK)
ADMIN=$GOOGLE_EMULATOR_ADMIN_URL
WORK=$(mktemp -d /tmp/gdrive-bench-XXXXXX)
NGX_DIR=

cleanup() {
    stop_nginx
    stop_python
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM PIPE

fail() { echo "FAIL: $*" >&2; exit 1; }
now() { date +%s%N; }
mib_s() { awk -v b="$1" -v ns="$2" 'BEGIN { printf "%.1f", b / 1048576 / (ns / 1e9) }'; }

admin() {   # method path [json]
    curl -sS -f -X "$1" -H 'Content-Type: application/json' \
         ${3:+-d "$3"} "$ADMIN$2"
}

s3() {      # curl arguments; SigV4 over an unsigned payload
    curl -sS --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
         --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
         -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

s3_size() { # key -> Content-Length of the object, or nothing
    s3 -I "$S3_ENDPOINT/$S3_BUCKET_NAME/$1" 2>/dev/null \
        | tr -d '\r' | awk 'tolower($1) == "content-length:" { print $2 }'
}

s3_delete_keys() {  # file of keys, one a line: multi-object delete by 1000
    local batch body
    split -l 1000 "$1" "$WORK/del."
    for batch in "$WORK"/del.*; do
        body=$WORK/delete.xml
        { echo '<Delete><Quiet>true</Quiet>'
          sed 's/&/\&amp;/g; s/</\&lt;/g; s/.*/<Object><Key>&<\/Key><\/Object>/' "$batch"
          echo '</Delete>'; } > "$body"
        curl -sS -o /dev/null --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
             --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
             -H "x-amz-content-sha256: $(sha256sum "$body" | cut -d' ' -f1)" \
             -H "Content-MD5: $(openssl md5 -binary "$body" | base64)" \
             -H 'Content-Type: application/xml' \
             --data-binary @"$body" "$S3_ENDPOINT/$S3_BUCKET_NAME?delete=" || true
        rm -f "$batch"
    done
}

integration() {     # a fresh integration with its own refresh token
    admin POST /refresh_tokens \
        "{\"refresh_token\":\"1//rt-$1\",\"integration_id\":\"$1\"}" >/dev/null
}

produce() {         # topic < lines "key<TAB>value"
    kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$1" -K $'\t' \
         -X enable.idempotence=true -X acks=all
}

records() {         # topic -> every value, one a line (to the end)
    kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$1" -o beginning -e -q \
         -f '%s\n' 2>/dev/null || true
}

# every result of the instance's topic as "<produce time, ms> <json>" lines
# in $RESULTS, from a follower started with the instance
follow_results() {
    RESULTS=$NGX_DIR/results
    kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$TOPIC.result" -o beginning -u -q \
         -f '%T %s\n' > "$RESULTS" 2>/dev/null &
    FOLLOWER=$!
}

# waits until results matching the pattern cover $2 distinct files (a
# redelivered trigger reports twice), failing early when the DLQ gets a
# record or after $3 seconds; leaves those results in $WORK/matched and the
# time the last of them was produced in END_NS (Kafka's record timestamp:
# no polling delay in it)
wait_for() {
    local pattern=$1 want=$2 limit=$3 deadline n=0
    deadline=$(( $(date +%s) + limit ))
    while :; do
        grep -E "$pattern" "$RESULTS" > "$WORK/matched" || true
        if [ "$(wc -l < "$WORK/matched")" -ge "$want" ] \
           && [ "$(grep -o '"file":{"id":"[^"]*"' "$WORK/matched" | sort -u | wc -l)" -ge "$want" ]
        then
            break
        fi
        n=$((n + 1))
        if [ $((n % 10)) = 0 ] && [ -n "$(records "$TOPIC.dlq" | head -1)" ]; then
            fail "a trigger went to the DLQ: $(records "$TOPIC.dlq" | head -1 | cut -c1-300)"
        fi
        [ "$(date +%s)" -le "$deadline" ] \
            || fail "$want results matching $pattern did not come within ${limit}s"
        sleep 0.2
    done
    END_NS=$(( $(cut -d' ' -f1 "$WORK/matched" | sort -n | tail -1) * 1000000 ))
}

# starts an nginx consumer: name workers extra-http-directives
start_nginx() {
    local name=$1 workers=$2 extra=$3
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    NGX_DIR=$WORK/$name
    TOPIC=$RUN-$name
    mkdir -p "$NGX_DIR"
    cat > "$NGX_DIR/nginx.conf" <<CONF
load_module ${BENCH_MODULE:-$REPO/build/ngx_http_gdrive_worker_module.so};
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
worker_processes $workers;
pid $NGX_DIR/nginx.pid;
error_log $NGX_DIR/error.log ${BENCH_LOG_LEVEL:-warn};
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX_DIR/body;
    gdrive_zone gdrive 32m;
    gdrive_consumer on;
    gdrive_kafka_topic $TOPIC;
    gdrive_kafka_result_topic $TOPIC.result;
    gdrive_kafka_dlq_topic $TOPIC.dlq;
    gdrive_kafka_group group-$TOPIC;
    gdrive_kafka_session_timeout 6s;
    gdrive_rate_limit 10000r/s;
    gdrive_global_rate_limit 10000r/s;
    gdrive_s3_prefix $RUN/;
$extra
    server {
        listen 127.0.0.1:$PORT;
        location = /status { gdrive_status; }
        location = /metrics { gdrive_metrics; }
    }
}
CONF
    /usr/sbin/nginx -p "$NGX_DIR/" -c "$NGX_DIR/nginx.conf"
    # the group joined, the result topic made, the integration's token
    # fetched: a warm-up trigger and its result
    printf '%s\t{"trigger_id":"warm-%s","integration_id":"%s","action":"sync_changes"}\n' \
        "$INT" "$TOPIC" "$INT" | produce "$TOPIC"
    for _ in $(seq 300); do
        records "$TOPIC.result" | grep -q "warm-$TOPIC" && break
        sleep 0.2
    done
    records "$TOPIC.result" | grep -q "warm-$TOPIC" || fail "nginx did not warm up in 60s"
    follow_results
    # every worker holds partitions before anything is measured: a member
    # joining later would take partitions, and with them redeliveries,
    # in the middle of a measurement
    local parts
    parts=$(kcat -L -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$TOPIC" 2>/dev/null | grep -c 'partition [0-9]')
    for _ in $(seq 300); do
        [ "$(curl -sf "http://127.0.0.1:$PORT/status?format=json" | jq -r --argjson w "$workers" \
             '[.workers[] | .partitions | length]
              | if length == $w and all(. > 0) then add else 0 end')" \
          = "$parts" ] && return 0
        sleep 0.2
    done
    fail "the $workers workers did not share the $parts partitions within 60s:" \
         "$(curl -sf "http://127.0.0.1:$PORT/status?format=json" \
            | jq -c '[.workers[] | {pid, partitions: (.partitions | length)}]')"
}

stop_nginx() {
    local pid
    if [ -n "${FOLLOWER:-}" ]; then
        kill "$FOLLOWER" 2>/dev/null || true
        wait "$FOLLOWER" 2>/dev/null || true
    fi
    FOLLOWER=
    [ -n "$NGX_DIR" ] && [ -f "$NGX_DIR/nginx.pid" ] || return 0
    pid=$(cat "$NGX_DIR/nginx.pid")
    /usr/sbin/nginx -p "$NGX_DIR/" -c "$NGX_DIR/nginx.conf" -s quit 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if grep -q '\[alert\]\|\[emerg\]' "$NGX_DIR/error.log"; then
        echo "nginx logged:" >&2
        grep '\[alert\]\|\[emerg\]' "$NGX_DIR/error.log" | head -5 >&2
    fi
    NGX_DIR=
}

workers() { pgrep -P "$(cat "$NGX_DIR/nginx.pid")"; }
cpu_ticks() {       # utime + stime of the workers, every thread counted
    local t=0 p
    for p in $(workers); do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo $t
}

machine_ticks() {   # "busy total" jiffies of every CPU of the machine
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i
                   print t - $5 - $6, t }' /proc/stat
}

busy() {            # "busy total" before, after -> percent busy
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
        printf "%.0f", (y[1] - x[1]) * 100 / (y[2] - x[2]) }'
}

s3_heads() {        # the instance's S3 HEADs so far, every worker's
    curl -sf "http://127.0.0.1:$PORT/metrics" \
        | awk '/^gdrive_s3_requests_total\{op="head"/ { n += $NF } END { print n + 0 }'
}

google_requests() { # Google requests the emulator logged since it was cleared
    admin GET /requests | jq '[.counts[]] | add // 0'
}

# --- a 1 GiB file ------------------------------------------------------------

big_file() {        # -> id of a fresh file of BIG_SIZE, checksums computed
    local id
    id=$(admin POST /files "{\"name\":\"$RUN-big.bin\",\"size\":$BIG_SIZE}" | jq -r .id)
    # the emulator computes md5 on first request (seconds per GiB): now,
    # not inside the measurement
    admin GET "/files/$id?checksums=true" >/dev/null
    echo "$id"
}

# the baseline: curl | curl against the same servers, one streamed PUT with
# an unsigned payload; its length is given up front, as the stack's S3
# refuses a chunked PUT of unknown length above 64 MiB
# (v4-max-non-chunked-request-size); sets BASE_NS
baseline() {
    local id=$1 token key t0 t1 m0 m1 got
    token=$(curl -sS -f -X POST \
        --data-urlencode grant_type=refresh_token \
        --data-urlencode "refresh_token=$GOOGLE_REFRESH_TOKEN" \
        --data-urlencode "client_id=$GOOGLE_CLIENT_ID" \
        --data-urlencode "client_secret=$GOOGLE_CLIENT_SECRET" \
        "$GOOGLE_TOKEN_URL" | jq -r .access_token)
    key=$RUN/baseline/$id
    m0=$(machine_ticks)
    t0=$(now)
    curl -sS -f -H "Authorization: Bearer $token" \
         "$GOOGLE_API_URL/drive/v3/files/$id?alt=media" \
        | s3 -f -o /dev/null -H "Content-Length: $BIG_SIZE" -H 'Transfer-Encoding:' \
             -T - "$S3_ENDPOINT/$S3_BUCKET_NAME/$key" \
        || fail "the baseline transfer failed"
    t1=$(now)
    m1=$(machine_ticks)
    got=$(s3_size "$key")
    [ "$got" = "$BIG_SIZE" ] || fail "the baseline stored ${got:-no} bytes, not $BIG_SIZE"
    s3 -o /dev/null -X DELETE "$S3_ENDPOINT/$S3_BUCKET_NAME/$key"
    BASE_NS=$((t1 - t0))
    printf '%-22s %7s MiB/s (%.2f s); machine CPU %s%% busy\n' "curl | curl" \
        "$(mib_s "$BIG_SIZE" $BASE_NS)" "$(awk -v n=$BASE_NS 'BEGIN { print n / 1e9 }')" \
        "$(busy "$m0" "$m1")"
}

# each buffer setting: a fresh file, the baseline on it, then the module on
# it (another key) with nginx already warm, back to back so that the load
# others put on the machine hits both alike
bench_big() {
    local id t0 t1 c0 c1 m0 m1 got key ns dur status bytes setting name line
    INT=int-$RUN-big
    integration "$INT"
    echo "== a $((BIG_SIZE / 1048576)) MiB file, Drive -> S3 (MiB/s = 2^20 bytes/s)"

    for setting in "${BIG_SETTINGS[@]}"; do
        name=${setting%%:*}
        start_nginx "big-$(printf %s "$name" | tr -c 'A-Za-z0-9' -)" 1 "    ${setting#*:}"
        id=$(big_file)
        baseline "$id"
        c0=$(cpu_ticks)
        m0=$(machine_ticks)
        t0=$(now)
        printf '%s\t{"trigger_id":"big-%s","integration_id":"%s","action":"sync_file","file_id":"%s"}\n' \
            "$INT" "$id" "$INT" "$id" | produce "$TOPIC"
        wait_for "\"trigger_id\":\"big-$id\"" 1 300
        t1=$END_NS
        c1=$(cpu_ticks)
        m1=$(machine_ticks)
        line=$(tail -1 "$WORK/matched" | cut -d' ' -f2-)
        status=$(echo "$line" | jq -r .status)
        bytes=$(echo "$line" | jq -r .payload.bytes)
        dur=$(echo "$line" | jq -r .duration_ms)
        key=$(echo "$line" | jq -r .payload.key)
        [ "$status" = uploaded ] && [ "$bytes" = "$BIG_SIZE" ] \
            || fail "the module's result: $line"
        got=$(s3_size "$key")
        [ "$got" = "$BIG_SIZE" ] || fail "the module stored ${got:-no} bytes, not $BIG_SIZE"
        s3 -o /dev/null -X DELETE "$S3_ENDPOINT/$S3_BUCKET_NAME/$key"
        stop_nginx
        ns=$((t1 - t0))
        printf '%-22s %7s MiB/s by duration_ms (%.2f s), %s MiB/s wall (%.2f s); %s parts; worker CPU %.2f s; machine CPU %s%% busy\n' \
            "module, $name" \
            "$(mib_s "$BIG_SIZE" $((dur * 1000000)))" "$(awk -v d="$dur" 'BEGIN { print d / 1000 }')" \
            "$(mib_s "$BIG_SIZE" $ns)" "$(awk -v n=$ns 'BEGIN { print n / 1e9 }')" \
            "$(echo "$line" | jq -r .payload.parts)" \
            "$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { print t / hz }')" \
            "$(busy "$m0" "$m1")"
        awk -v b=$BASE_NS -v d="$dur" -v w=$ns -v name="$name" 'BEGIN {
            printf "  ratio module/baseline (%s) = %.2f by duration_ms, %.2f wall  (target >= 0.8)\n",
                name, b / (d * 1e6), b / w }'
    done
}

# --- 5,000 small files -------------------------------------------------------

# measures one batch: what, the file names' prefix, the number of files,
# the file of trigger lines
measure_many() {
    local name=$1 prefix=$2 files=$3 lines=$4 c0 c1 m0 m1 t0 t1 again
    c0=$(cpu_ticks)
    m0=$(machine_ticks)
    t0=$(now)
    produce "$TOPIC" < "$lines"
    wait_for "\"status\":\"(uploaded|unchanged)\".*\"name\":\"$prefix" "$files" 180
    c1=$(cpu_ticks)
    m1=$(machine_ticks)
    t1=$END_NS
    # "unchanged": a trigger delivered again after its object was stored
    # (a rebalance, a result not acknowledged in time); the file is there
    again=$(grep -c '"status":"unchanged"' "$WORK/matched" || true)
    grep -o '"key":"[^"]*"' "$WORK/matched" | cut -d'"' -f4 | sort -u > "$WORK/keys"
    [ "$(s3_size "$(head -1 "$WORK/keys")")" = "$MANY_SIZE" ] \
        || fail "$name: an object is not stored"
    # KEEP_KEYS: the objects stay for a re-sync, which deletes them
    [ -n "${KEEP_KEYS:-}" ] || s3_delete_keys "$WORK/keys"
    awk -v n="$files" -v ns=$((t1 - t0)) -v t=$((c1 - c0)) -v hz="$HZ" -v what="$name" \
        -v busy="$(busy "$m0" "$m1")" -v again="$again" -v w="${BUSY_WORKERS:-$MANY_WORKERS}" 'BEGIN {
        printf "%-34s %6.0f files/s (%.2f s), %.0f per busy worker (%d), worker CPU %.3f ms/file (%.2f s in all), machine CPU %s%% busy%s\n",
            what, n / (ns / 1e9), ns / 1e9, n / (ns / 1e9) / w, w, t / hz * 1000 / n, t / hz, busy,
            again ? sprintf("; %d delivered again (unchanged)", again) : "" }'
}

# the folder's sync_folder again, every file unchanged: folder, the file
# names' prefix, the number of files; then its objects are deleted
resync_many() {
    local folder=$1 prefix=$2 files=$3 n0 c0 c1 t0 t1 h0 h1 g got deadline
    n0=$(wc -l < "$RESULTS")
    h0=$(s3_heads)
    admin DELETE /requests > /dev/null
    c0=$(cpu_ticks)
    t0=$(now)
    printf '%s\t{"trigger_id":"folder2-%s","integration_id":"%s","action":"sync_folder","folder_id":"%s"}\n' \
        "$INT" "$RUN" "$INT" "$folder" | produce "$TOPIC"
    deadline=$(( $(date +%s) + 180 ))
    while :; do
        tail -n +$((n0 + 1)) "$RESULTS" \
            | grep -E "\"status\":\"unchanged\".*\"name\":\"$prefix" > "$WORK/matched" || true
        got=$(grep -o '"file":{"id":"[^"]*"' "$WORK/matched" | sort -u | wc -l || true)
        [ "$got" -ge "$files" ] && break
        [ "$(date +%s)" -le "$deadline" ] \
            || fail "the re-sync: $got of $files files unchanged within 180s"
        sleep 0.2
    done
    c1=$(cpu_ticks)
    t1=$(( $(cut -d' ' -f1 "$WORK/matched" | sort -n | tail -1) * 1000000 ))
    h1=$(s3_heads)
    g=$(admin GET "/requests?integration=$INT" | jq '[.counts[]] | add // 0')
    s3_delete_keys "$WORK/keys"
    awk -v n="$files" -v ns=$((t1 - t0)) -v t=$((c1 - c0)) -v hz="$HZ" \
        -v heads=$((h1 - h0)) -v g="$g" 'BEGIN {
        printf "%-34s %6.0f files/s (%.2f s), worker CPU %.3f ms/file; %.3f Google requests and %.3f S3 HEADs per file\n",
            "the same sync_folder, unchanged", n / (ns / 1e9), ns / 1e9,
            t / hz * 1000 / n, g / n, heads / n }'
}

bench_many() {
    local folder i h ints=8
    INT=int-$RUN-many
    integration "$INT"
    echo "== $MANY_COUNT files of $MANY_SIZE bytes end to end" \
         "(worker_processes $MANY_WORKERS, gdrive_max_inflight $MANY_INFLIGHT," \
         "gdrive_rate_limit and gdrive_global_rate_limit 10000r/s${BENCH_MANY_OPTIONS:+, $BENCH_MANY_OPTIONS})"
    start_nginx many "$MANY_WORKERS" "    gdrive_max_inflight $MANY_INFLIGHT;
    ${BENCH_MANY_OPTIONS:-}"

    # one sync_folder trigger: the listing, the fan-out and every file
    folder=$(admin POST /files "{\"name\":\"$RUN-folder\",\"mimeType\":\"application/vnd.google-apps.folder\"}" | jq -r .id)
    admin POST "/folders/$folder/populate" \
        "{\"count\":$MANY_COUNT,\"size\":$MANY_SIZE,\"prefix\":\"$RUN-a-\"}" > /dev/null
    printf '%s\t{"trigger_id":"folder-%s","integration_id":"%s","action":"sync_folder","folder_id":"%s"}\n' \
        "$INT" "$RUN" "$INT" "$folder" > "$WORK/lines"
    admin DELETE /requests > /dev/null
    h=$(s3_heads)
    KEEP_KEYS=1 BUSY_WORKERS=1 \
        measure_many "one sync_folder, 1 integration" "$RUN-a-" "$MANY_COUNT" "$WORK/lines"
    awk -v n="$MANY_COUNT" -v heads=$(( $(s3_heads) - h )) \
        -v g="$(admin GET "/requests?integration=$INT" | jq '[.counts[]] | add // 0')" 'BEGIN {
        printf "  %.3f Google requests and %.3f S3 HEADs per file\n", g / n, heads / n }'
    resync_many "$folder" "$RUN-a-" "$MANY_COUNT"

    # sync_file triggers produced in one kcat call, over several
    # integrations, hence partitions, hence workers
    for i in $(seq $ints); do integration "$INT-$i"; done
    folder=$(admin POST /files "{\"name\":\"$RUN-folder-b\",\"mimeType\":\"application/vnd.google-apps.folder\"}" | jq -r .id)
    admin POST "/folders/$folder/populate" \
        "{\"count\":$MANY_COUNT,\"size\":$MANY_SIZE,\"prefix\":\"$RUN-b-\"}" \
        | jq -r '.ids[]' > "$WORK/ids"
    awk -v ig="$INT" -v n=$ints -v run="$RUN" '{
            i = NR % n + 1
            printf "%s-%d\t{\"trigger_id\":\"files-%s-%d\",\"integration_id\":\"%s-%d\",\"action\":\"sync_file\",\"file_id\":\"%s\"}\n",
                ig, i, run, NR, ig, i, $1 }' "$WORK/ids" > "$WORK/lines"
    measure_many "$MANY_COUNT sync_file, $ints integrations" "$RUN-b-" "$MANY_COUNT" "$WORK/lines"
    stop_nginx
}

# --- against the Python design ----------------------------------------------

PY_FILES=${BENCH_PY_FILES:-500}
PY_ROUNDS=3
PYWORKER=${BENCH_PYWORKER:-$REPO/../shared/baseline/pyworker/worker.py}
PY_PID=

task_ticks() {      # pid -> utime + stime of every thread of the process
    cat /proc/"$1"/task/*/stat 2>/dev/null \
        | awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

# the files of one round: name prefix, count -> ids in $WORK/ids
py_files() {
    local folder
    folder=$(admin POST /files "{\"name\":\"$1\",\"mimeType\":\"application/vnd.google-apps.folder\"}" | jq -r .id)
    admin POST "/folders/$folder/populate" \
        "{\"count\":$2,\"size\":4096,\"prefix\":\"$1-\"}" | jq -r '.ids[]' > "$WORK/ids"
}

# one round: who (module, python), pid, topic, round name, count; prints
# "ticks ns google_requests" after every trigger has its result
py_round() {
    local who=$1 pid=$2 topic=$3 name=$4 n=$5 c0 c1 t0 deadline got
    py_files "$RUN-$who-$name" "$n"
    awk -v ig="$INT" -v name="$who-$name" '{
            printf "%s\t{\"trigger_id\":\"%s-%d\",\"integration_id\":\"%s\",\"action\":\"sync_file\",\"file_id\":\"%s\"}\n",
                ig, name, NR, ig, $1 }' "$WORK/ids" > "$WORK/lines"
    admin DELETE /requests > /dev/null
    c0=$(task_ticks "$pid")
    t0=$(now)
    if [ -n "${BENCH_TRACE:-}" ] && [ "$who" = module ] && [ "$name" != warm ]; then
        # shellcheck disable=SC2086
        $BENCH_TRACE -p "$pid" -o "${BENCH_TRACE_OUT:-$WORK/trace}.$name" 2> /dev/null &
        TRACE_PID=$!
    fi
    produce "$topic" < "$WORK/lines"
    deadline=$(( $(date +%s) + 300 ))
    while :; do
        got=$(grep -o "\"$who-$name-[0-9]*\"" "$WORK/results-$who" | sort -u | wc -l)
        [ "$got" -ge "$n" ] && break
        [ "$(date +%s)" -le "$deadline" ] \
            || fail "$who: $got of $n results of round $name in 300 s"
        if [ -n "$(records "$topic.dlq" | head -1)" ]; then
            fail "$who: a trigger went to the DLQ: $(records "$topic.dlq" | head -1 | cut -c1-300)"
        fi
        sleep 0.1
    done
    c1=$(task_ticks "$pid")
    if [ -n "${TRACE_PID:-}" ]; then
        kill -INT "$TRACE_PID"; wait "$TRACE_PID" || true; TRACE_PID=
    fi
    echo "$((c1 - c0)) $(( $(now) - t0 )) $(admin GET /requests | jq '[.counts[]] | add // 0')"
}

# rounds: who pid topic -> "ms/file files/s requests/file" medians
py_rounds() {
    local who=$1 pid=$2 topic=$3 r out
    py_round "$who" "$pid" "$topic" warm 100 > /dev/null
    for r in $(seq $PY_ROUNDS); do
        out=$(py_round "$who" "$pid" "$topic" "r$r" "$PY_FILES")
        echo "$out" | awk -v n="$PY_FILES" -v hz="$HZ" \
            '{ printf "%.4f %.1f %.2f\n", $1 / hz * 1000 / n, n / ($2 / 1e9), $3 / n }'
    done | sort -n -k1 > "$WORK/rounds-$who"
    awk -v who="$who" '{ cpu[NR] = $1; fps[NR] = $2; req[NR] = $3 }
        END { printf "%-8s CPU %.3f ms/file (rounds %.3f %.3f %.3f), %s files/s, %s Google requests/file\n",
                  who, cpu[2], cpu[1], cpu[2], cpu[3], fps[2], req[2] }' "$WORK/rounds-$who" >&2
    sed -n 2p "$WORK/rounds-$who"
}

stop_python() {
    [ -n "$PY_PID" ] || return 0
    kill "$PY_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PY_PID" 2>/dev/null || true
    PY_PID=
}

bench_python() {
    local mod py topic
    [ -f "$PYWORKER" ] || fail "no Python baseline at $PYWORKER (BENCH_PYWORKER)"
    # Debian's Python, whose packages make deps installs (not another one
    # that PATH may find first)
    /usr/bin/python3 -c 'import aiohttp, confluent_kafka, boto3, cachetools, prometheus_client, psutil' \
        2>/dev/null || fail "the Python baseline's packages are missing: make deps installs them"
    INT=int-$RUN-py
    integration "$INT"
    echo "== against the Python design: one worker each, $PY_ROUNDS rounds of $PY_FILES files of 4 KiB, medians"

    start_nginx pymod 1 "    gdrive_google_refresh_token 1//rt-$INT;
    gdrive_max_inflight ${BENCH_PY_INFLIGHT:-64};
    ${BENCH_PY_OPTIONS:-}"
    kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$TOPIC.result" -o beginning -u -q \
         -f '%s\n' > "$WORK/results-module" 2>/dev/null &
    local follower=$! h0
    h0=$(s3_heads)
    mod=$(py_rounds module "$(workers)" "$TOPIC")
    awk -v h=$(( $(s3_heads) - h0 )) -v n=$((100 + PY_ROUNDS * PY_FILES)) 'BEGIN {
        printf "module   %.2f S3 HEADs per file (new files: the object is looked for once)\n", h / n }' >&2
    kill $follower 2>/dev/null || true
    stop_nginx

    topic=$RUN-python
    # the follower needs the result topic to exist: a first record makes it
    printf 'bench\t{}\n' | produce "$topic.result"
    kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic.result" -o beginning -u -q \
         -f '%s\n' > "$WORK/results-python" 2>/dev/null &
    follower=$!
    KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS \
    GOOGLE_REFRESH_TOKEN=1//rt-$INT GDRIVE_API_RATE_LIMIT=100000 \
    TRIGGER_TOPIC=$topic RESULT_TOPIC=$topic.result DLQ_TOPIC=$topic.dlq \
    GROUP_ID=group-$topic KAFKA_SESSION_TIMEOUT_MS=6000 LOG_LEVEL=WARNING \
    HEALTH_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') \
    S3_PREFIX=$RUN/python/ \
        /usr/bin/python3 "$PYWORKER" > "$WORK/python.log" 2>&1 &
    PY_PID=$!
    py=$(py_rounds python "$PY_PID" "$topic")
    kill $follower 2>/dev/null || true
    stop_python

    awk -v m="$mod" -v p="$py" 'BEGIN { split(m, a, " "); split(p, b, " ")
        printf "  ratio of CPU per file, python/module = %.1f  (target >= 10); files/s module/python = %.2f; Google requests per file %s vs %s\n",
            b[1] / a[1], a[2] / b[2], a[3], b[3] }'
}

# --- memory per in-flight job -----------------------------------------------

MEM_JOBS=${BENCH_MEM_JOBS:-100}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

bench_memory() {
    local w r0 r1 n h0 deadline
    INT=int-$RUN-mem
    integration "$INT"
    echo "== memory: $MEM_JOBS sync_file jobs of 4 KiB files in flight at once in one worker"
    start_nginx mem 1 "    gdrive_google_refresh_token 1//rt-$INT;
    gdrive_max_inflight $((MEM_JOBS * 2));"
    w=$(workers)
    # the same shape of job once, so that the worker's lazily made parts
    # (a curl handle, the connections, the S3 signer) are not counted
    py_files "$RUN-mem-warm" 20
    awk -v ig="$INT" '{ printf "%s\t{\"trigger_id\":\"mem-warm-%d\",\"integration_id\":\"%s\",\"action\":\"sync_file\",\"file_id\":\"%s\"}\n", ig, NR, ig, $1 }' \
        "$WORK/ids" | produce "$TOPIC"
    wait_for '"trigger_id":"mem-warm-' 20 120
    py_files "$RUN-mem" "$MEM_JOBS"
    awk -v ig="$INT" '{ printf "%s\t{\"trigger_id\":\"mem-%d\",\"integration_id\":\"%s\",\"action\":\"sync_file\",\"file_id\":\"%s\"}\n", ig, NR, ig, $1 }' \
        "$WORK/ids" > "$WORK/lines"
    # every download waits 20 s before its answer
    admin POST /faults "{\"endpoint\":\"files.media\",\"integration\":\"$INT\",\"delay_ms\":20000,\"times\":$MEM_JOBS}" > /dev/null
    sleep 1
    h0=$(s3_heads)
    r0=$(rss_kib "$w")
    produce "$TOPIC" < "$WORK/lines"
    # every job taken, and the downloads waiting (a job's HEAD comes
    # before its download; past gdrive_max_connections a job waits for a
    # connection, in flight all the same)
    deadline=$(( $(date +%s) + 15 ))
    while :; do
        n=$(curl -sf "http://127.0.0.1:$PORT/status?format=json" | jq '[.workers[].inflight] | add')
        [ "$n" -ge "$MEM_JOBS" ] && [ $(( $(s3_heads) - h0 )) -ge $((MEM_JOBS / 2)) ] && break
        [ "$(date +%s)" -le "$deadline" ] \
            || fail "only $n of $MEM_JOBS jobs in flight within 15 s"
        sleep 0.2
    done
    sleep 2
    n=$(( $(s3_heads) - h0 ))
    r1=$(rss_kib "$w")
    admin DELETE /faults > /dev/null
    awk -v a="$r0" -v b="$r1" -v n="$MEM_JOBS" -v d="$n" 'BEGIN {
        printf "RSS %.1f MiB idle, %.1f MiB with %d jobs in flight (%d past their HEAD): %.1f KiB per in-flight job\n",
            a / 1024, b / 1024, n, d, (b - a) / n }'
    wait_for '"trigger_id":"mem-[0-9]' "$MEM_JOBS" 120
    stop_nginx
}

[ $# -gt 0 ] || set -- big many python memory
for b in "$@"; do
    case $b in
        big)    bench_big ;;
        many)   bench_many ;;
        python) bench_python ;;
        memory) bench_memory ;;
        *)      fail "unknown benchmark $b (big, many, python, memory)" ;;
    esac
done
