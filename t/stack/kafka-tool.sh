#!/usr/bin/env bash
# Runs a Kafka command-line tool from the jars that t/stack/stack.sh fetched,
# in place of Kafka's bin/*.sh scripts (which are not in the jars).
#
# usage: t/stack/kafka-tool.sh ALIAS|CLASS [args...]
#
#   topics            org.apache.kafka.tools.TopicCommand
#   consumer-groups   org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
#   console-consumer  org.apache.kafka.tools.consumer.ConsoleConsumer
#   console-producer  org.apache.kafka.tools.ConsoleProducer
#   storage           kafka.tools.StorageTool
#   a.fully.Qualified.Class   any other class on the classpath
#
# example:
#   t/stack/kafka-tool.sh topics --bootstrap-server 127.0.0.1:19092 --list
#
# Logging is log4j2 at WARN on stderr, so stdout carries only the tool's
# output. The jar directory is $STACK_KAFKA_LIB (as in build/stack.env), else
# the cache's kafka-lib, fetched first if missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE_DIR=${GDRIVE_CACHE_DIR:-$REPO/.cache/stack}
LIB=${STACK_KAFKA_LIB:-$CACHE_DIR/kafka-lib}

if (($# < 1)); then
    # the comment block at the top of this file
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
        "${BASH_SOURCE[0]}" >&2
    exit 2
fi

alias=$1
shift
case $alias in
    topics) class=org.apache.kafka.tools.TopicCommand ;;
    consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
    storage) class=kafka.tools.StorageTool ;;
    *.*) class=$alias ;;
    *)
        echo "kafka-tool: unknown tool '$alias' (topics, consumer-groups," \
            "console-consumer, console-producer, storage or a class name)" >&2
        exit 2
        ;;
esac

if [[ ! -f $LIB/.stamp ]]; then
    bash "$HERE/stack.sh" fetch >&2
fi

# Short-lived JVM: C1 only and the serial collector start fastest, and a
# small heap is plenty for an admin command.
exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HERE/log4j2-tools.xml" \
    -cp "$LIB/*" "$class" "$@"
