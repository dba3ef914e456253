#!/usr/bin/env bash
# The whole test suite, as README and CI run it: installs missing build
# dependencies, starts the local Kafka broker and schema registry if none is
# reachable (and stops them again afterwards if it started them), then runs
# every test.
#   KAFKA_BOOTSTRAP=host:port   use another cluster instead of the local one
#   SCHEMA_REGISTRY_URL=url     use another Confluent-compatible registry
#   OTLP_GRPC_ENDPOINT, OTLP_HTTP_ENDPOINT, OTEL_TRACES_FILE
#                               use another collector (all three) instead of
#                               scripts/otel.sh's, which is started only when
#                               no test filter is given or it names spans
#   extra arguments go to cargo test (e.g. scripts/test.sh ingest)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/deps.sh

bootstrap=${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}
host=${bootstrap%%,*}; port=${host##*:}; host=${host%:*}
started_kafka=0
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "test: using the broker at $bootstrap"
else
  bash scripts/kafka.sh start
  started_kafka=1
fi
started_registry=0
registry=${SCHEMA_REGISTRY_URL:-http://127.0.0.1:${REGISTRY_PORT:-8081}/apis/ccompat/v7}
if curl -fsS -o /dev/null "$registry/subjects" 2>/dev/null; then
  echo "test: using the schema registry at $registry"
else
  bash scripts/registry.sh start
  started_registry=1
fi
started_otel=0
cleanup() {
  if [ "$started_otel" = 1 ]; then bash scripts/otel.sh stop; fi
  if [ "$started_registry" = 1 ]; then bash scripts/registry.sh stop; fi
  if [ "$started_kafka" = 1 ]; then bash scripts/kafka.sh stop; fi
}
trap cleanup EXIT
if [ -n "${OTLP_GRPC_ENDPOINT:-}" ]; then
  echo "test: using the OTLP collector at $OTLP_GRPC_ENDPOINT"
elif [ $# -eq 0 ] || [[ "$*" == *spans* ]]; then
  if ! bash scripts/otel.sh status >/dev/null; then
    bash scripts/otel.sh start
    started_otel=1
  fi
  eval "export $(bash scripts/otel.sh env | tr '\n' ' ')"
fi

export KAFKA_BOOTSTRAP=$bootstrap SCHEMA_REGISTRY_URL=$registry
cargo test --locked --all-targets "$@"
