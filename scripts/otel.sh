#!/usr/bin/env bash
# Local OpenTelemetry Collector (OTLP receiver → file) for pipewarden's span
# export tests.
#
#   scripts/otel.sh build|start|stop|status|restart|logs [-f]|env
#
# The collector is built once with `go build` from scripts/otel/ (an OTLP
# receiver and the file exporter, module versions pinned in go.mod/go.sum,
# downloaded from the Go module proxy) into .cache/otel/; Go's own module and
# build caches stay where Go keeps them, so a rebuild is quick. It listens on
# 127.0.0.1 only and appends every span it receives, as OTLP/JSON lines, to
# .run/otel/traces.jsonl; its pid, config and logs are in .run/otel/.
#
# Environment:
#   OTEL_GRPC_PORT       OTLP/gRPC port (default 4317)
#   OTEL_HTTP_PORT       OTLP/HTTP port (default 4318)
#   OTEL_START_TIMEOUT   seconds to wait for the receiver ports (30)
#
# `env` prints the variables the tests read (OTLP_GRPC_ENDPOINT,
# OTLP_HTTP_ENDPOINT, OTEL_TRACES_FILE) as shell assignments.
#
# Exit codes: 0 ok; status exits 3 when the collector is not running; 1 on error.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
SRC_DIR="$SCRIPT_DIR/otel"

CACHE_DIR="$ROOT/.cache/otel"
BIN="$CACHE_DIR/otelcol-pipewarden"
RUN_DIR="$ROOT/.run/otel"
CONFIG="$RUN_DIR/config.yaml"
TRACES_FILE="$RUN_DIR/traces.jsonl"
PID_FILE="$RUN_DIR/otelcol.pid"
LOG="$RUN_DIR/otelcol.log"
LOCK="$RUN_DIR/.lock"

OTEL_GRPC_PORT="${OTEL_GRPC_PORT:-4317}"
OTEL_HTTP_PORT="${OTEL_HTTP_PORT:-4318}"
OTEL_START_TIMEOUT="${OTEL_START_TIMEOUT:-30}"
OTEL_STOP_TIMEOUT=10
HOST=127.0.0.1

SERVICE=otel
PID_PATTERN='otelcol-pipewarden'
# shellcheck source=scripts/lib/service.sh
source "$SCRIPT_DIR/lib/service.sh"

# The marker's name carries a hash of the sources, so editing them rebuilds.
marker() {
  echo "$CACHE_DIR/.built-$(cat "$SRC_DIR/go.mod" "$SRC_DIR/go.sum" "$SRC_DIR/main.go" | sha256sum | cut -c1-16)"
}

cmd_build() {
  local m t0 tmp
  m="$(marker)"
  [[ -x "$BIN" && -f "$m" ]] && return 0
  command -v go >/dev/null 2>&1 || die "go not found: the collector is built with Go (1.26 or newer)"
  say "building the collector with $(go version | cut -d' ' -f3) into ${CACHE_DIR#"$ROOT"/} (once; a cold build takes minutes)..."
  t0="$(now)"
  mkdir -p "$CACHE_DIR"
  tmp="$(mktemp "$CACHE_DIR/otelcol.tmp.XXXXXX")"
  # -mod=readonly: go.sum must already list every module, nothing is re-resolved.
  if ! (cd "$SRC_DIR" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -o "$tmp" .); then
    rm -f "$tmp"
    die "go build in ${SRC_DIR#"$ROOT"/} failed"
  fi
  mv -f "$tmp" "$BIN"
  rm -f "$CACHE_DIR"/.built-*
  touch "$m"
  say "collector built in $(since "$t0")s ($(du -h "$BIN" | cut -f1))"
}

ready() { # pid
  kill -0 "$1" 2>/dev/null && port_open "$OTEL_GRPC_PORT" && port_open "$OTEL_HTTP_PORT"
}

show_log_tail() {
  echo "--- last lines of ${LOG#"$ROOT"/} ---" >&2
  tail -n 30 "$LOG" >&2 2>/dev/null || echo "(no log)" >&2
}

write_config() {
  mkdir -p "$RUN_DIR"
  sed -e "s|@GRPC_PORT@|$OTEL_GRPC_PORT|g" \
      -e "s|@HTTP_PORT@|$OTEL_HTTP_PORT|g" \
      -e "s|@TRACES_FILE@|$TRACES_FILE|g" \
      "$SRC_DIR/config.yaml.in" >"$CONFIG.tmp"
  mv "$CONFIG.tmp" "$CONFIG"
}

cmd_start() {
  local t0 pid p
  t0="$(now)"
  with_lock 900
  if pid="$(live_pid)"; then
    wait_ready "$pid" "$OTEL_START_TIMEOUT" "$HOST:$OTEL_GRPC_PORT"
    say "already running (pid $pid)"
    return 0
  fi
  cmd_build
  for p in "$OTEL_GRPC_PORT" "$OTEL_HTTP_PORT"; do
    port_open "$p" && die "port $p on $HOST is in use by another process; free it or choose OTEL_GRPC_PORT/OTEL_HTTP_PORT"
  done
  write_config
  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.prev"
  # Spans of earlier runs are of no use to anyone: each run starts empty.
  : >"$TRACES_FILE"
  # setsid: own session, so the collector outlives the calling shell; the
  # inner bash records its own pid and then becomes the collector.
  # shellcheck disable=SC2016
  setsid -f bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$BIN" --config "$CONFIG" </dev/null >>"$LOG" 2>&1 9>&-
  pid="$(launched_pid)"
  wait_ready "$pid" "$OTEL_START_TIMEOUT" "$HOST:$OTEL_GRPC_PORT"
  say "ready: grpc $HOST:$OTEL_GRPC_PORT, http $HOST:$OTEL_HTTP_PORT, spans in ${TRACES_FILE#"$ROOT"/} ($(since "$t0")s, pid $pid)"
}

cmd_stop() {
  with_lock 60
  stop_recorded "$OTEL_STOP_TIMEOUT"
}

cmd_status() {
  local pid
  if pid="$(live_pid)" && ready "$pid"; then
    say "running: grpc $HOST:$OTEL_GRPC_PORT, http $HOST:$OTEL_HTTP_PORT (pid $pid)"
    return 0
  fi
  say "not running"
  return 3
}

cmd_env() {
  echo "OTLP_GRPC_ENDPOINT=http://$HOST:$OTEL_GRPC_PORT"
  echo "OTLP_HTTP_ENDPOINT=http://$HOST:$OTEL_HTTP_PORT"
  echo "OTEL_TRACES_FILE=$TRACES_FILE"
}

cmd_logs() {
  [[ -f "$LOG" ]] || die "no log at $LOG"
  if [[ "${1:-}" == "-f" ]]; then
    exec tail -n 50 -F "$LOG"
  fi
  tail -n 200 "$LOG"
}

case "${1:-}" in
  build)   with_lock 900; cmd_build ;;
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  env)     cmd_env ;;
  logs)    shift; cmd_logs "$@" ;;
  *)       echo "usage: $0 build|start|stop|status|restart|logs [-f]|env" >&2; exit 1 ;;
esac
