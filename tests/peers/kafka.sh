#!/usr/bin/env bash
# Apache Kafka, the reference implementation, installed from Maven Central
# and run beside Kraftwerk by the peer tests.
#
#   tests/peers/kafka.sh install              resolve the jars (prints the libs folder)
#   tests/peers/kafka.sh start [--nodes N] [--base-port P] [--dir DIR]
#                                             format and start N combined nodes; prints the
#                                             bootstrap list (broker n on P+n-1, its
#                                             controller on P+50+n-1; default N=1, P=31050)
#   tests/peers/kafka.sh stop [--dir DIR]     stop the nodes started in DIR
#   tests/peers/kafka.sh tool NAME ARGS...    run a Kafka tool as users type it, e.g.
#                                             `tool kafka-topics.sh --list --bootstrap-server H:P`
#                                             (NAME is a script name or a main class)
#   tests/peers/kafka.sh classpath            the classpath (libs/*) for java -cp
#
# Jars are cached under tests/peers/.cache/ (ignored by git); KAFKA_PEER_CACHE
# moves it. Exit status 3 with a line "skipped: <reason>" means Java or Maven
# Central is not available here, so nothing was run.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
CACHE="${KAFKA_PEER_CACHE:-$HERE/.cache}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
DEFAULT_DIR="$CACHE/run"

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
skip() { echo "skipped: $*"; exit 3; }
die() { echo "kafka.sh: $*" >&2; exit 2; }

need_java() {
    command -v java >/dev/null 2>&1 || skip "java is not installed (Kafka $KAFKA_VERSION needs Java 17+)"
    local major
    major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    [ -n "$major" ] && [ "${major%%.*}" -ge 17 ] 2>/dev/null || skip "java $major is older than 17"
}

install() {
    need_java
    if [ -f "$LIBS/.complete" ]; then
        echo "$LIBS"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || skip "mvn is not installed"
    mkdir -p "$LIBS"
    local log="$CACHE/install.log"
    if ! mvn -B -q -f "$HERE/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$log" 2>&1; then
        rm -rf "$LIBS"
        skip "resolving Apache Kafka $KAFKA_VERSION from Maven Central failed (see $log): $(grep -m1 ERROR "$log" | cut -c1-300)"
    fi
    ls "$LIBS"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $LIBS"
    touch "$LIBS/.complete"
    echo "$LIBS"
}

# A Kafka tool's main class, from the script name users type.
main_class() {
    local name="${1%.sh}"
    case "$name" in
        kafka-topics) echo org.apache.kafka.tools.TopicCommand ;;
        kafka-consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
        kafka-configs)
            if unzip -l "$LIBS/kafka-tools-$KAFKA_VERSION.jar" 2>/dev/null | grep -q 'org/apache/kafka/tools/ConfigCommand.class'; then
                echo org.apache.kafka.tools.ConfigCommand
            else
                echo kafka.admin.ConfigCommand
            fi ;;
        kafka-console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
        kafka-console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        kafka-get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
        kafka-log-dirs) echo org.apache.kafka.tools.LogDirsCommand ;;
        kafka-metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
        kafka-broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
        kafka-delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand ;;
        kafka-leader-election) echo org.apache.kafka.tools.LeaderElectionCommand ;;
        kafka-reassign-partitions) echo org.apache.kafka.tools.reassign.ReassignPartitionsCommand ;;
        kafka-producer-perf-test) echo org.apache.kafka.tools.ProducerPerformance ;;
        kafka-consumer-perf-test) echo org.apache.kafka.tools.ConsumerPerformance ;;
        kafka-e2e-latency) echo org.apache.kafka.tools.EndToEndLatency ;;
        kafka-verifiable-producer) echo org.apache.kafka.tools.VerifiableProducer ;;
        kafka-verifiable-consumer) echo org.apache.kafka.tools.VerifiableConsumer ;;
        kafka-features) echo org.apache.kafka.tools.FeatureCommand ;;
        kafka-transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
        kafka-acls) echo org.apache.kafka.tools.AclCommand ;;
        kafka-streams-application-reset) echo org.apache.kafka.tools.StreamsResetter ;;
        kafka-storage) echo kafka.tools.StorageTool ;;
        *) echo "$1" ;;
    esac
}

tool() {
    [ $# -ge 1 ] || die "tool needs a tool name"
    install >/dev/null || exit $?
    local class
    class="$(main_class "$1")"
    shift
    exec java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$HERE/tools-log4j2.yaml" \
        -cp "$LIBS/*" "$class" "$@"
}

wait_for_port() {
    local port="$1" pid="$2" deadline=$((SECONDS + 90))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.3
    done
    return 1
}

start() {
    local nodes=1 base=31050 dir="$DEFAULT_DIR"
    while [ $# -gt 0 ]; do
        case "$1" in
            --nodes) nodes="$2"; shift 2 ;;
            --base-port) base="$2"; shift 2 ;;
            --dir) dir="$2"; shift 2 ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    install >/dev/null || exit $?
    [ -e "$dir/pids" ] && stop --dir "$dir" >/dev/null
    rm -rf "$dir"
    mkdir -p "$dir"
    local voters="" bootstrap="" n
    for n in $(seq 1 "$nodes"); do
        voters="${voters:+$voters,}$n@127.0.0.1:$((base + 50 + n - 1))"
        bootstrap="${bootstrap:+$bootstrap,}127.0.0.1:$((base + n - 1))"
    done
    local rf=$((nodes < 3 ? nodes : 3))
    local min_isr=$((rf > 1 ? 2 : 1))
    local cluster_id
    cluster_id="$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    [ -n "$cluster_id" ] || die "StorageTool random-uuid gave nothing"
    for n in $(seq 1 "$nodes"); do
        local node="$dir/node-$n"
        mkdir -p "$node/logs"
        sed -e "s|@NODE_ID@|$n|g" \
            -e "s|@BROKER_PORT@|$((base + n - 1))|g" \
            -e "s|@CONTROLLER_PORT@|$((base + 50 + n - 1))|g" \
            -e "s|@QUORUM_VOTERS@|$voters|g" \
            -e "s|@LOG_DIRS@|$node/data|g" \
            -e "s|@INTERNAL_RF@|$rf|g" \
            -e "s|@INTERNAL_MIN_ISR@|$min_isr|g" \
            "$HERE/server.properties.template" >"$node/server.properties"
        java -cp "$LIBS/*" -Dlog4j2.configurationFile="$HERE/tools-log4j2.yaml" \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$node/server.properties" \
            >"$node/logs/format.log" 2>&1 || die "formatting node $n failed: $(tail -3 "$node/logs/format.log")"
    done
    for n in $(seq 1 "$nodes"); do
        local node="$dir/node-$n"
        setsid java -Xms512m -Xmx512m -XX:+UseG1GC \
            -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -Dkafka.logs.dir="$node/logs" \
            -cp "$LIBS/*" kafka.Kafka "$node/server.properties" \
            >"$node/logs/stdout.log" 2>&1 </dev/null &
        echo "$!" >>"$dir/pids"
    done
    n=1
    for pid in $(cat "$dir/pids"); do
        if ! wait_for_port $((base + n - 1)) "$pid"; then
            echo "kafka.sh: node $n did not listen on $((base + n - 1)); last lines of its log:" >&2
            tail -20 "$dir/node-$n/logs/server.log" "$dir/node-$n/logs/stdout.log" >&2 2>/dev/null
            stop --dir "$dir" >/dev/null
            exit 2
        fi
        n=$((n + 1))
    done
    echo "$bootstrap" >"$dir/bootstrap"
    echo "$bootstrap"
}

stop() {
    local dir="$DEFAULT_DIR"
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) dir="$2"; shift 2 ;;
            *) die "stop: unknown argument $1" ;;
        esac
    done
    [ -f "$dir/pids" ] || { echo "nothing running in $dir"; return 0; }
    local pid
    for pid in $(cat "$dir/pids"); do kill "$pid" 2>/dev/null; done
    for pid in $(cat "$dir/pids"); do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null
    done
    rm -f "$dir/pids"
    echo "stopped"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    install) install ;;
    start) start "$@" ;;
    stop) stop "$@" ;;
    tool) tool "$@" ;;
    classpath) install >/dev/null || exit $?; echo "$LIBS/*" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
