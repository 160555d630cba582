#!/bin/sh
# Entrypoint of the container image: nginx in the foreground as PID 1
# (it reaps its own worker processes and handles SIGQUIT, the image's stop
# signal, as a graceful shutdown).  Arguments go to nginx: "-t" tests the
# configuration, "-c file" names another one.
#
# worker_processes: NGINX_WORKER_PROCESSES when set, else the CPU limit of
# the container (cgroup v2 cpu.max, rounded up), else nginx's "auto".
# "auto" alone counts the host's CPUs, not the container's share of them,
# and every worker process is a Kafka group member with its own buffers.
set -eu

NGINX=${NGINX:-/usr/sbin/nginx}
workers=${NGINX_WORKER_PROCESSES:-}

if [ -z "$workers" ] && [ -r /sys/fs/cgroup/cpu.max ]; then
    read -r quota period < /sys/fs/cgroup/cpu.max || true
    if [ "${quota:-max}" != max ] && [ "${period:-0}" -gt 0 ]; then
        workers=$(( (quota + period - 1) / period ))
    fi
fi

case $workers in
    ''|0) workers=auto ;;
    auto) ;;
    *[!0-9]*)
        echo "entrypoint: NGINX_WORKER_PROCESSES must be a number or auto," \
             "not \"$workers\"" >&2
        exit 2 ;;
esac

exec "$NGINX" -g "worker_processes $workers;" "$@"
