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
#   scripts/bench.sh pairs A B [N]   two pipewarden binaries side by side:
#                                    N (default 6) alternating pairs of
#                                    everything-on JSON runs, each with its
#                                    own raw read, then the means
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
  pairs)
    [[ $# -ge 2 ]] || { echo "usage: $0 pairs BINARY_A BINARY_B [PAIRS]" >&2; exit 1; }
    broker
    a=$1 b=$2 n=${3:-6}
    for binary in "$a" "$b"; do [[ -x $binary ]] || { echo "not an executable: $binary" >&2; exit 1; }; done
    results=$(mktemp)
    for ((i = 1; i <= n; i++)); do
      for binary in "$a" "$b"; do
        # The summary line: "json-schema: R events/s (... raw JSON at W events/s), C µs CPU per record ..."
        line=$("$bin/pipewarden-bench" --runs json --rounds 1 --no-warmup --pipewarden-bin "$binary" 2>&1 |
          grep -E '^ *json-schema:' | tail -1 | sed 's/^ *//' || true)
        [[ -n $line ]] || { echo "pair $i: no result from $binary" >&2; exit 1; }
        echo "pair $i $binary: $line"
        printf '%s\t%s\n' "$binary" "$line" >> "$results"
      done
    done
    python3 - "$results" "$a" "$b" <<'PY'
import re, sys
rows = [l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1])]
for binary in sys.argv[2:]:
    runs = [re.search(r"(\d+) events/s .*raw JSON at (\d+) events/s\), ([\d.]+) µs CPU", line).groups()
            for b, line in rows if b == binary]
    rate, raw, cpu = (sum(float(r[k]) for r in runs) / len(runs) for k in range(3))
    low, high = min(int(r[0]) for r in runs), max(int(r[0]) for r in runs)
    print(f"{binary}: {rate:,.0f} events/s on average ({low:,}-{high:,}), {cpu:.2f} µs CPU per record, "
          f"raw {raw:,.0f} events/s, {len(runs)} runs")
PY
    rm -f "$results"
    ;;
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
  *) echo "usage: $0 [all|ingest|stages|memory|scrape|lag|pairs] [ARGS]" >&2; exit 1 ;;
esac
