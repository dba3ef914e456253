#!/usr/bin/env bash
# `make demo`: local Kafka + pipewarden (config.toml) + simulated agent
# pipelines, then a live summary every 10 s until Ctrl-C.
#   scripts/demo.sh [start]   start everything (idempotent), then summarise
#   scripts/demo.sh stop      stop the simulator, pipewarden and Kafka
#   DEMO_SIM_ARGS="--slow-agent qa-agent --rate 20"   extra simulator options
#   DEMO_DETACH=1             start and return instead of summarising
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
run_dir=.run/demo
mkdir -p "$run_dir"
bin=target/release/pipewarden
metrics_url=http://127.0.0.1:9464

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
  local name=$1 file=$run_dir/$1.pid
  if running "$file"; then
    local pid; pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    echo "demo: stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

if [ "${1:-start}" = stop ]; then
  stop_pid simulate
  stop_pid pipewarden
  bash scripts/kafka.sh stop
  exit 0
fi

bash scripts/deps.sh
cargo build --release --locked --bin pipewarden
bash scripts/kafka.sh start

if running "$run_dir/pipewarden.pid"; then
  echo "demo: pipewarden already running (pid $(cat "$run_dir/pipewarden.pid"))"
else
  "$bin" check-config --config config.toml
  nohup "$bin" run --config config.toml >"$run_dir/pipewarden.log" 2>&1 &
  echo $! >"$run_dir/pipewarden.pid"
  echo "demo: pipewarden started (pid $!, log $run_dir/pipewarden.log)"
fi
if running "$run_dir/simulate.pid"; then
  echo "demo: simulator already running (pid $(cat "$run_dir/simulate.pid"))"
else
  # shellcheck disable=SC2086 # DEMO_SIM_ARGS is a list of options
  nohup "$bin" simulate ${DEMO_SIM_ARGS:-} >"$run_dir/simulate.log" 2>&1 &
  echo $! >"$run_dir/simulate.pid"
  echo "demo: simulated agents started (pid $!, log $run_dir/simulate.log)"
fi

printf 'demo: waiting for pipewarden to be ready'
for _ in $(seq 1 120); do
  if curl -fsS "$metrics_url/readyz" >/dev/null 2>&1; then break; fi
  running "$run_dir/pipewarden.pid" || { echo; echo "demo: pipewarden exited; see $run_dir/pipewarden.log" >&2; tail -20 "$run_dir/pipewarden.log" >&2; exit 1; }
  printf '.'; sleep 1
done
echo
cat <<INFO

  metrics    $metrics_url/metrics
  readiness  $metrics_url/readyz
  logs       $run_dir/pipewarden.log, $run_dir/simulate.log
  stop       make stop   (Ctrl-C here stops only this summary)

INFO

[ "${DEMO_DETACH:-0}" = 1 ] && exit 0

# Live summary: records per topic (rate over the last interval), contract
# problems by reason, pipewarden's own processing time.
declare -A previous=()
interval=10
while true; do
  scrape=$(curl -fsS "$metrics_url/metrics" 2>/dev/null) || { echo "demo: /metrics not answering"; sleep "$interval"; continue; }
  echo "---- $(date +%T) ----"
  while read -r topic total; do
    before=${previous[$topic]:-$total}
    rate=$(awk -v a="$total" -v b="$before" -v s="$interval" 'BEGIN { printf "%.1f", (a - b) / s }')
    printf '  %-28s %8d records %7s/s\n' "$topic" "$total" "$rate"
    previous[$topic]=$total
  done < <(awk -F'[{}"]' '/^pipewarden_records_total\{/ { split($0, v, " "); print $3, v[2] }' <<<"$scrape" | sort)
  problems=$(awk -F'"' '/^pipewarden_envelope_problems_total\{/ { split($0, v, " "); n[$4] += v[2] } END { for (r in n) printf "%s=%d ", r, n[r] }' <<<"$scrape")
  echo "  contract problems: ${problems:-none}"
  verdicts=$(awk -F'"' '/^pipewarden_verdicts_total\{/ { split($0, v, " "); n[$4] += v[2] }
                        /^pipewarden_quarantined_records_total\{/ { split($0, v, " "); q += v[2] }
                        END { printf "valid=%d invalid=%d unverified=%d quarantined=%d", n["valid"], n["invalid"], n["unverified"], q }' <<<"$scrape")
  echo "  verdicts: $verdicts"
  awk '/^pipewarden_record_processing_seconds_(sum|count) / { v[$1] = $2 }
       END { if (v["pipewarden_record_processing_seconds_count"] > 0)
               printf "  processing: %d records, mean %.1f µs per record\n", v["pipewarden_record_processing_seconds_count"],
                      1e6 * v["pipewarden_record_processing_seconds_sum"] / v["pipewarden_record_processing_seconds_count"] }' <<<"$scrape"
  sleep "$interval"
done
