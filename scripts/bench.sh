#!/usr/bin/env bash
# `make bench`: builds release binaries, makes sure a broker is reachable
# (starting the local one if needed), then runs the ingest benchmark: a raw
# rdkafka consumer and pipewarden read the same preloaded topic, side by
# side in one run. Results are printed and written to target/bench/.
#   extra arguments go to pipewarden-bench (see --help), e.g. --records 500000
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/deps.sh
cargo build --release --locked --bin pipewarden --bin pipewarden-bench

bootstrap=${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}
host=${bootstrap%%,*}; port=${host##*:}; host=${host%:*}
if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  bash scripts/kafka.sh start
fi
export KAFKA_BOOTSTRAP=$bootstrap
exec target/release/pipewarden-bench "$@"
