#!/bin/bash
# HEALTHCHECK of the container image: the liveness answer of the health
# location (the worker's event loop runs).  The slim image has no HTTP
# client, so this speaks HTTP/1.0 over bash's /dev/tcp.
#
#   healthcheck.sh [port [path]]     default 8080 and /health?live

port=${1:-8080}
path=${2:-/health?live}

{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3

IFS=' ' read -r -t 5 proto status _ <&3 || exit 1
exec 3<&-

[[ $proto == HTTP/1.* && $status == 200 ]]
