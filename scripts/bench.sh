#!/usr/bin/env bash
# `make bench`: every performance figure of docs/performance.md, one after
# another, from release builds:
#
#   1. ingest: a raw rdkafka consumer and pipewarden read the same preloaded
#      topics side by side (no validation; JSON Schema + contract + PII +
#      correlation + cost; Avro), with pipewarden's per-record processing
#      p99 from its own histogram          -> target/bench/ingest.json
#   2. stages: CPU per record of each stage, in memory (no broker)
#   3. trace memory: resident bytes per open trace at 1,000,000 traces
#   4. scrape: rendering /metrics with 20,000 series
#   5. lag: one lag cycle over 1,000 groups and 2,000 partitions
#                                          -> target/bench/lag.json
#
#   scripts/bench.sh                 all of the above
#   scripts/bench.sh ingest [ARGS]   only 1; ARGS go to pipewarden-bench,
#                                    e.g. --records 500000 --rounds 3
#   scripts/bench.sh lag [ARGS]      only 5 (`make bench-lag`)
#   scripts/bench.sh stages|memory|scrape
#
# A broker is needed for 1 and 5: KAFKA_BOOTSTRAP, else the local one
# (started if it is not running).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/deps.sh
cargo build --release --locked --bin pipewarden --bin pipewarden-bench --bin pipewarden-trace-memory

broker() {
  local bootstrap host port
  bootstrap=${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}
  host=${bootstrap%%,*}; port=${host##*:}; host=${host%:*}
  if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    bash scripts/kafka.sh start
  fi
  export KAFKA_BOOTSTRAP=$bootstrap
}

bin=target/release
what=${1:-all}
[[ $# -gt 0 ]] && shift
case "$what" in
  ingest) broker; exec "$bin/pipewarden-bench" "$@" ;;
  lag) broker; exec "$bin/pipewarden-bench" lag "$@" ;;
  stages) exec "$bin/pipewarden-bench" stages "$@" ;;
  memory) exec "$bin/pipewarden-trace-memory" --traces 1000000 "$@" ;;
  scrape) exec "$bin/pipewarden-bench" scrape "$@" ;;
  all)
    broker
    echo "== 1. ingest throughput and processing p99 (pipewarden-bench)"
    "$bin/pipewarden-bench"
    echo; echo "== 2. CPU per record by stage (pipewarden-bench stages)"
    "$bin/pipewarden-bench" stages
    echo; echo "== 3. memory per open trace (pipewarden-trace-memory --traces 1000000)"
    for events in 1 3; do "$bin/pipewarden-trace-memory" --traces 1000000 --events "$events"; done
    "$bin/pipewarden-trace-memory" --traces 1000000 --events 1 --text-ids
    echo; echo "== 4. /metrics with 20,000 series (pipewarden-bench scrape)"
    "$bin/pipewarden-bench" scrape
    echo; echo "== 5. lag cycle, 1,000 groups x 2,000 partitions (pipewarden-bench lag)"
    "$bin/pipewarden-bench" lag
    ;;
  *) echo "usage: $0 [all|ingest|stages|memory|scrape|lag] [ARGS]" >&2; exit 1 ;;
esac
