#!/usr/bin/env bash
# Builds the kraftwerk:local image (deploy/build-image.sh, no registry
# needed) and starts the three-node cluster of deploy/docker-compose.yml,
# then waits until every node reports healthy.
#
#   deploy/up.sh                      # three combined nodes
#   deploy/up.sh --dedicated          # three controllers + three brokers
#   deploy/up.sh --secure             # SASL_SSL, mutual TLS between nodes, ACLs
#                                     # (needs KRAFTWERK_ADMIN_PASSWORD)
#   deploy/up.sh --binary target/debug/kraftwerk   # image from a built binary
#   deploy/up.sh --no-build           # reuse the existing image
#
# Compose project name: kraftwerk (COMPOSE_PROJECT_NAME overrides it).
# Stop with:  docker-compose -p kraftwerk -f deploy/docker-compose.yml down
# (add -v to delete the data volumes too).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
compose_file="$root/deploy/docker-compose.yml"
build=1
build_args=()
wait_s=180

while [ $# -gt 0 ]; do
    case "$1" in
        --dedicated) compose_file="$root/deploy/docker-compose.dedicated.yml"; shift ;;
        --secure) compose_file="$root/deploy/docker-compose.secure.yml"; shift ;;
        --binary) build_args+=(--binary "${2:?--binary needs a path}"); shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

if command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    echo "error: neither docker-compose nor 'docker compose' is installed" >&2
    exit 1
fi
project="${COMPOSE_PROJECT_NAME:-kraftwerk}"
compose+=(-p "$project" -f "$compose_file")

if [ "$build" = 1 ]; then
    "$root/deploy/build-image.sh" ${build_args[@]+"${build_args[@]}"}
fi

for port in 19092 19093 19094; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        if ! "${compose[@]}" ps -q 2>/dev/null | grep -q .; then
            echo "error: port $port on this host is taken by something else; the cluster publishes 19092-19094" >&2
            exit 1
        fi
    fi
done

"${compose[@]}" up -d

echo "waiting for every node to report healthy (at most ${wait_s}s)..."
deadline=$((SECONDS + wait_s))
while :; do
    ids="$("${compose[@]}" ps -q)"
    unhealthy=0
    total=0
    for id in $ids; do
        total=$((total + 1))
        # A one-shot service (the secure file's certs) counts once it exited 0.
        status="$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}:{{.State.ExitCode}}{{end}}' "$id")"
        case "$status" in healthy|running:*|exited:0) ;; *) unhealthy=$((unhealthy + 1)) ;; esac
    done
    if [ "$total" -gt 0 ] && [ "$unhealthy" = 0 ]; then
        break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        "${compose[@]}" ps
        echo "error: not every node became healthy within ${wait_s}s; see: ${compose[*]} logs" >&2
        exit 1
    fi
    sleep 2
done

"${compose[@]}" ps
cat <<EOF

Kraftwerk is up. Bootstrap servers:
  from the host:            localhost:19092,localhost:19093,localhost:19094
  from containers on $project's network: kafka-1:9092,kafka-2:9092,kafka-3:9092
Logs:   ${compose[*]} logs -f kafka-1
Stop:   ${compose[*]} down        (add -v to delete the data)
EOF
