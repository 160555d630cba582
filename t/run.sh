#!/usr/bin/env bash
# make run: the local stack (unless the environment names real services),
# then nginx with the module in the foreground on 127.0.0.1:${PORT:-8080}.
# Ctrl-C stops nginx and whatever this script started.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PORT:-8080}
RUN=$REPO/build/run
started_stack=

cleanup() {
    [ -f "$RUN/nginx.pid" ] && kill -QUIT "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
    if [ -n "$started_stack" ]; then
        echo "stopping the local stack"
        bash "$REPO/t/stack/stack.sh" down || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# values already in the environment win over the stack's
declare -A preset
for v in $(compgen -e); do preset[$v]=1; done

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || [ -z "${GOOGLE_REFRESH_TOKEN:-}" ] \
   || [ -z "${S3_BUCKET_NAME:-}" ]; then
    if ! bash "$REPO/t/stack/stack.sh" status >/dev/null 2>&1; then
        started_stack=1
    fi
    bash "$REPO/t/stack/stack.sh" up
    while IFS='=' read -r name value; do
        case $name in ''|'#'*) continue ;; esac
        [ -n "${preset[$name]:-}" ] && continue
        value=${value#\'}; value=${value%\'}
        export "$name=$value"
    done < "$REPO/build/stack.env"
fi

# a file to sync at once, when Google is the local emulator
if [ -n "${GOOGLE_EMULATOR_ADMIN_URL:-}" ]; then
    curl -sf -X POST "$GOOGLE_EMULATOR_ADMIN_URL/files" \
         -H 'Content-Type: application/json' \
         -d '{"id":"hello-file","name":"hello.txt","mimeType":"text/plain","size":1024}' \
         >/dev/null || echo "the emulator did not take the demo file"
fi

mkdir -p "$RUN"
sed -e "s|@MODULE@|$REPO/build/ngx_http_gdrive_worker_module.so|" \
    -e "s|@RUN@|$RUN|g" -e "s|@PORT@|$PORT|" \
    "$REPO/t/dev/nginx.conf.in" > "$RUN/nginx.conf"

NGINX=${NGINX:-/usr/sbin/nginx}
"$NGINX" -t -q -p "$RUN/" -c "$RUN/nginx.conf"

cat <<MSG

nginx-gdrive-worker on http://127.0.0.1:$PORT (Ctrl-C stops it)

  post a first trigger:
    curl -i -X POST http://127.0.0.1:$PORT/triggers \\
         -H 'Content-Type: application/json' \\
         -d '{"integration_id":"default","action":"sync_file","file_id":"hello-file"}'

  watch the results:
    kcat -C -b $KAFKA_BOOTSTRAP_SERVERS -t integration.result -o end

  status:  curl http://127.0.0.1:$PORT/status
  health:  curl http://127.0.0.1:$PORT/health
  DLQ:     curl http://127.0.0.1:$PORT/dlq

MSG

"$NGINX" -p "$RUN/" -c "$RUN/nginx.conf" &
wait $!
