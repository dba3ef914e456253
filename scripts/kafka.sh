#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for pipewarden's demo, tests and CI.
#
#   scripts/kafka.sh start|stop|status|restart|reset|logs [-f]
#
# Needs only Java 17+ and Maven: the broker's jars are resolved once from
# Maven Central (scripts/kafka/pom.xml) into .cache/kafka/libs; the broker's
# config, data, pid and logs live in .run/kafka/. Works from any directory.
#
# Environment:
#   KAFKA_PORT             client port (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093)
#   KAFKA_BOOTSTRAP        if set to anything but 127.0.0.1:$KAFKA_PORT or
#                          localhost:$KAFKA_PORT, an external cluster is used:
#                          start/stop/restart/reset do nothing
#   KAFKA_INSTANCE         name of a second, independent broker (its files
#                          live in .run/kafka-$KAFKA_INSTANCE); give it its own
#                          KAFKA_PORT and KAFKA_CONTROLLER_PORT. Tests that
#                          stop and restart a broker use one of their own.
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to be ready (90)
#   KAFKA_HEAP_OPTS        JVM heap options (-Xms256m -Xmx1g)
#   KAFKA_JVM_OPTS         extra JVM options (none; -XX:TieredStopAtLevel=1
#                          starts ~2.5 s sooner but serves fetches slower, so
#                          it is not the default: benchmarks read through it)
#   JAVA_HOME              Java to use (else java on PATH)
#
# Exit codes: 0 ok; status exits 3 when the broker is not running; 1 on error.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
CONF_DIR="$SCRIPT_DIR/kafka"
POM="$CONF_DIR/pom.xml"

CACHE_DIR="$ROOT/.cache/kafka"
LIBS="$CACHE_DIR/libs"
RUN_DIR="$ROOT/.run/kafka${KAFKA_INSTANCE:+-$KAFKA_INSTANCE}"
DATA_DIR="$RUN_DIR/data"
PROPS="$RUN_DIR/server.properties"
PID_FILE="$RUN_DIR/kafka.pid"
LOG="$RUN_DIR/server.log"
OUT="$RUN_DIR/kafka.out"
LOCK="$RUN_DIR/.lock"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT=30
HOST=127.0.0.1
LOCAL_BOOTSTRAP="$HOST:$KAFKA_PORT"
READY_LINE='Kafka Server started'

SERVICE=kafka
PID_PATTERN='kafka.Kafka'
# shellcheck source=scripts/lib/service.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"

# --- external cluster ------------------------------------------------------

external() {
  local b="${KAFKA_BOOTSTRAP:-}"
  [[ -n "$b" && "$b" != "127.0.0.1:$KAFKA_PORT" && "$b" != "localhost:$KAFKA_PORT" ]]
}

# --- prerequisites ---------------------------------------------------------

JAVA=
need_java() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    die "java not found: install a Java 17+ JDK/JRE (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
  fi
  local v major
  v="$("$JAVA" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')"
  major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the version of $JAVA (got '$v')"
  (( major >= 17 )) || die "Kafka 4 needs Java 17+, but $JAVA is version $v"
}

need_mvn() {
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: Maven is needed once to fetch the Kafka jars (e.g. apt-get install maven)"
}

# The marker's name carries a hash of the pom, so editing the pom re-resolves.
marker() {
  echo "$LIBS/.resolved-$(sha256sum "$POM" | cut -c1-16)"
}

resolve_jars() {
  local m
  m="$(marker)"
  [[ -f "$m" ]] && return 0
  need_mvn
  say "resolving Kafka jars with Maven into ${LIBS#"$ROOT"/} (once)..."
  local t0 tmp
  t0="$(now)"
  mkdir -p "$CACHE_DIR"
  tmp="$(mktemp -d "$CACHE_DIR/libs.tmp.XXXXXX")"
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "Maven could not resolve $POM"
  fi
  rm -f "$tmp.log"
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar after resolving $POM"; }
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  touch "$(marker)"
  say "jars resolved in $(since "$t0")s ($(du -sh "$LIBS" | cut -f1))"
}

write_props() {
  mkdir -p "$RUN_DIR"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$DATA_DIR|g" \
      "$CONF_DIR/server.properties.in" >"$PROPS.tmp"
  mv "$PROPS.tmp" "$PROPS"
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local id
  id="$("$JAVA" -cp "$LIBS/*" -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$RUN_DIR/storage-tool" kafka.tools.StorageTool random-uuid 2>>"$OUT" | tail -n1)"
  [[ -n "$id" ]] || die "StorageTool random-uuid printed nothing (see ${OUT#"$ROOT"/})"
  mkdir -p "$DATA_DIR"
  if ! "$JAVA" -cp "$LIBS/*" -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
       -Dkafka.logs.dir="$RUN_DIR/storage-tool" kafka.tools.StorageTool format -t "$id" -c "$PROPS" >>"$OUT" 2>&1; then
    tail -n 20 "$OUT" >&2
    die "formatting KRaft storage in $DATA_DIR failed"
  fi
  say "formatted KRaft storage (cluster id $id)"
}

# --- process state ---------------------------------------------------------

ready() { # pid
  kill -0 "$1" 2>/dev/null && port_open "$KAFKA_PORT" &&
    grep -q "$READY_LINE" "$LOG" 2>/dev/null
}

show_log_tail() {
  echo "--- last lines of ${LOG#"$ROOT"/} ---" >&2
  tail -n 30 "$LOG" >&2 2>/dev/null || echo "(no server log)" >&2
  if [[ -s "$OUT" ]]; then
    echo "--- last lines of ${OUT#"$ROOT"/} ---" >&2
    tail -n 15 "$OUT" >&2
  fi
}

await_ready() { # pid t0
  wait_ready "$1" "$KAFKA_START_TIMEOUT" "$LOCAL_BOOTSTRAP"
  echo "kafka ready on $LOCAL_BOOTSTRAP in $(since "$2")s (pid $1)"
}

# --- commands --------------------------------------------------------------

cmd_start() {
  if external; then say "using external cluster at $KAFKA_BOOTSTRAP"; return 0; fi
  local t0 pid
  t0="$(now)"
  with_lock 120
  if pid="$(live_pid)"; then
    if ready "$pid"; then
      say "already running on $LOCAL_BOOTSTRAP (pid $pid)"
      return 0
    fi
    say "broker (pid $pid) is starting; waiting for it"
    await_ready "$pid" "$t0"
    return 0
  fi
  need_java
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_open "$p" && die "port $p on $HOST is in use by another process (not a broker started by this script); free it, choose KAFKA_PORT/KAFKA_CONTROLLER_PORT, or set KAFKA_BOOTSTRAP to use it"
  done
  resolve_jars
  write_props
  : >"$OUT"
  format_storage
  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.prev"

  # setsid: own session, so the broker outlives the calling shell and its
  # terminal; the inner bash records its own pid and then becomes java.
  # shellcheck disable=SC2016,SC2086
  setsid -f bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} ${KAFKA_JVM_OPTS:-} \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
      -Dkafka.logs.dir="$RUN_DIR" \
      -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$OUT" 2>&1 9>&-
  pid="$(launched_pid)"
  say "started broker (pid $pid), waiting until ready..."
  await_ready "$pid" "$t0"
}

cmd_stop() {
  if external; then say "using external cluster at $KAFKA_BOOTSTRAP; nothing to stop"; return 0; fi
  with_lock 120
  stop_recorded "$KAFKA_STOP_TIMEOUT"
}

cmd_status() {
  if external; then
    local hp="${KAFKA_BOOTSTRAP%%,*}"
    hp="${hp#*://}"
    if timeout 2 bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp##*:}" 2>/dev/null; then
      say "using external cluster at $KAFKA_BOOTSTRAP (reachable)"
      return 0
    fi
    say "using external cluster at $KAFKA_BOOTSTRAP (NOT reachable)"
    return 3
  fi
  local pid
  if pid="$(live_pid)"; then
    if ready "$pid"; then
      say "running on $LOCAL_BOOTSTRAP (pid $pid)"
      return 0
    fi
    say "process $pid alive but not ready on $LOCAL_BOOTSTRAP"
    return 3
  fi
  say "not running"
  return 3
}

cmd_reset() {
  if external; then say "using external cluster at $KAFKA_BOOTSTRAP; nothing to reset"; return 0; fi
  cmd_stop
  rm -rf "$DATA_DIR"
  say "deleted ${DATA_DIR#"$ROOT"/}"
}

cmd_logs() {
  [[ -f "$LOG" ]] || die "no server log at $LOG"
  if [[ "${1:-}" == "-f" ]]; then
    exec tail -n 50 -F "$LOG"
  fi
  tail -n "${KAFKA_LOG_LINES:-200}" "$LOG"
}

usage() {
  echo "usage: $0 start|stop|status|restart|reset|logs [-f]" >&2
  exit 1
}

case "${1:-}" in
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  reset)   cmd_reset ;;
  logs)    shift; cmd_logs "$@" ;;
  *)       usage ;;
esac
