#!/usr/bin/env bash
# The whole test suite, as README and CI run it: installs missing build
# dependencies, starts the local Kafka broker if none is reachable (and stops
# it again afterwards if it started it), then runs every test.
#   KAFKA_BOOTSTRAP=host:port   use another cluster instead of the local one
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
cleanup() { if [ "$started_kafka" = 1 ]; then bash scripts/kafka.sh stop; fi; }
trap cleanup EXIT

export KAFKA_BOOTSTRAP=$bootstrap
cargo test --locked --all-targets "$@"
