#!/usr/bin/env bash
# The whole test suite, as README and CI run it: installs missing build
# dependencies, starts the local Kafka broker and schema registry if none is
# reachable (and stops them again afterwards if it started them), then runs
# every test. A second, secured registry instance (TLS and basic auth) and a
# second, secured broker (SASL over TLS, ACLs) are started the same way for
# the security tests.
#   KAFKA_BOOTSTRAP=host:port   use another cluster instead of the local one
#   SCHEMA_REGISTRY_URL=url     use another Confluent-compatible registry
#   KAFKA_PORT, KAFKA_CONTROLLER_PORT, REGISTRY_PORT, REGISTRY_MANAGEMENT_PORT,
#   SECURE_REGISTRY_PORT, SECURE_REGISTRY_MANAGEMENT_PORT,
#   SECURE_KAFKA_PORT, SECURE_KAFKA_CONTROLLER_PORT
#                               ports of the local services (see the scripts)
#   OTLP_GRPC_ENDPOINT, OTLP_HTTP_ENDPOINT, OTEL_TRACES_FILE
#                               use another collector (all three) instead of
#                               scripts/otel.sh's, which is started only when
#                               no test filter is given or it names spans
#   extra arguments go to cargo test (e.g. scripts/test.sh ingest)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/deps.sh
# promtool, prometheus, helm, kubeconform and offline Kubernetes schemas for
# the tests of what ships (alert rules, chart, dashboards).
bash scripts/tools.sh install

bootstrap=${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}
host=${bootstrap%%,*}; port=${host##*:}; host=${host%:*}
started_kafka=0
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "test: using the broker at $bootstrap"
else
  bash scripts/kafka.sh start
  started_kafka=1
fi
# A second, secured broker (SASL PLAIN and SCRAM-SHA-512 over TLS, ACLs
# enforced) for tests/security.rs. It starts in the background while the
# other services start and the tests compile, so it adds no wall time.
secure_kafka() { KAFKA_SECURE=1 bash scripts/kafka.sh "$@"; }
started_secure_kafka=0
secure_kafka_start=
if ! secure_kafka status >/dev/null 2>&1; then
  secure_kafka start &
  secure_kafka_start=$!
  started_secure_kafka=1
fi
started_registry=0
registry=${SCHEMA_REGISTRY_URL:-http://127.0.0.1:${REGISTRY_PORT:-8081}/apis/ccompat/v7}
if curl -fsS -o /dev/null "$registry/subjects" 2>/dev/null; then
  echo "test: using the schema registry at $registry"
else
  bash scripts/registry.sh start
  started_registry=1
fi
# A second, secured registry (HTTPS with a test CA, basic auth) for the
# tests of pipewarden's registry TLS and credentials.
secure() {
  REGISTRY_SECURE=1 REGISTRY_PORT="${SECURE_REGISTRY_PORT:-8444}" \
    REGISTRY_MANAGEMENT_PORT="${SECURE_REGISTRY_MANAGEMENT_PORT:-8094}" bash scripts/registry.sh "$@"
}
started_secure=0
if ! secure status >/dev/null 2>&1; then
  secure start
  started_secure=1
fi
eval "$(secure env | sed 's/^/export /')"
started_otel=0
cleanup() {
  if [ "$started_otel" = 1 ]; then bash scripts/otel.sh stop; fi
  if [ "$started_secure_kafka" = 1 ]; then
    if [ -n "$secure_kafka_start" ]; then wait "$secure_kafka_start" || true; fi
    secure_kafka stop
  fi
  if [ "$started_secure" = 1 ]; then secure stop; fi
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
# A CI run builds once from a fresh clone: incremental state would only take
# disk (about 1.5 GB).
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi
cargo test --locked --all-targets --no-run "$@"
if [ -n "$secure_kafka_start" ]; then
  wait "$secure_kafka_start" || { echo "test: the secured broker did not start" >&2; exit 1; }
  secure_kafka_start=
fi
eval "$(secure_kafka env | sed 's/^/export /')"
cargo test --locked --all-targets "$@"
