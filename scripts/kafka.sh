#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for pipewarden's demo, tests and CI.
#
#   scripts/kafka.sh start|stop|status|restart|reset|logs [-f]
#   KAFKA_SECURE=1 scripts/kafka.sh start|stop|status|restart|reset|env|logs [-f]
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
#   KAFKA_SECURE           1: a second, secured broker for the tests of
#                          pipewarden on a secured cluster: clients connect
#                          with SASL (PLAIN or SCRAM-SHA-512) over TLS, and
#                          ACLs are enforced (StandardAuthorizer, nothing
#                          allowed without an ACL, super user "admin"). It
#                          has its own run folder (.run/kafka-secure/), ports
#                          (SECURE_KAFKA_PORT 9094, SECURE_KAFKA_CONTROLLER_PORT
#                          9095 by default), a test CA and broker certificate
#                          made once with openssl in .run/kafka-secure/tls/,
#                          users admin, pipewarden (PLAIN) and
#                          pipewarden-scram (SCRAM-SHA-512) with random
#                          passwords kept in .run/kafka-secure/secrets/.
#                          'env' prints the SECURE_KAFKA_* variables the
#                          tests read. KAFKA_BOOTSTRAP does not apply to it;
#                          SECURE_KAFKA_HEAP_OPTS sets its heap (-Xmx512m).
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
KAFKA_SECURE="${KAFKA_SECURE:-0}"
if [[ "$KAFKA_SECURE" == 1 ]]; then
  KAFKA_INSTANCE=secure
  KAFKA_PORT="${SECURE_KAFKA_PORT:-9094}"
  KAFKA_CONTROLLER_PORT="${SECURE_KAFKA_CONTROLLER_PORT:-9095}"
  TEMPLATE="$CONF_DIR/server-secure.properties.in"
  # It holds a few test topics only.
  KAFKA_HEAP_OPTS="${SECURE_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
else
  TEMPLATE="$CONF_DIR/server.properties.in"
fi
RUN_DIR="$ROOT/.run/kafka${KAFKA_INSTANCE:+-$KAFKA_INSTANCE}"
TLS_DIR="$RUN_DIR/tls"
SECRETS_DIR="$RUN_DIR/secrets"
PLAIN_USER=pipewarden
SCRAM_USER=pipewarden-scram
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
  # The secured instance exists for the tests; it is never "external".
  [[ "$KAFKA_SECURE" == 1 ]] && return 1
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

# The secured instance's test CA, broker certificate (for 127.0.0.1 and
# localhost; key and chain in one PEM file, as ssl.keystore.type=PEM reads it)
# and user passwords, made once; test material only, never for production.
make_secrets() {
  [[ -f "$TLS_DIR/.complete" && -f "$SECRETS_DIR/.complete" ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found (e.g. apt-get install openssl)"
  rm -rf "$TLS_DIR" "$SECRETS_DIR" "$DATA_DIR"
  mkdir -p "$TLS_DIR" "$SECRETS_DIR" && chmod 700 "$TLS_DIR" "$SECRETS_DIR"
  (
    cd "$TLS_DIR"
    make_test_certificates "pipewarden test kafka CA" || exit 1
    # PKCS#8 key, then the certificate chain.
    openssl pkcs8 -topk8 -nocrypt -in key.pem -out broker.pem
    cat cert.pem ca.pem >>broker.pem
    chmod 600 broker.pem
  ) || die "could not make the test certificates in $TLS_DIR"
  local user
  for user in admin "$PLAIN_USER" "$SCRAM_USER"; do
    openssl rand -hex 16 >"$SECRETS_DIR/$user.password"
  done
  chmod 600 "$SECRETS_DIR"/*.password
  touch "$TLS_DIR/.complete" "$SECRETS_DIR/.complete"
}

secret() { # user
  cat "$SECRETS_DIR/$1.password"
}

write_props() {
  mkdir -p "$RUN_DIR"
  local secure=()
  if [[ "$KAFKA_SECURE" == 1 ]]; then
    make_secrets
    secure=(
      -e "s|@TLS_DIR@|$TLS_DIR|g"
      -e "s|@ADMIN_PASSWORD@|$(secret admin)|g"
      -e "s|@PLAIN_USER@|$PLAIN_USER|g"
      -e "s|@PLAIN_PASSWORD@|$(secret "$PLAIN_USER")|g"
    )
  fi
  (umask 077 && sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$DATA_DIR|g" \
      "${secure[@]}" \
      "$TEMPLATE" >"$PROPS.tmp")
  mv "$PROPS.tmp" "$PROPS"
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local id
  id="$("$JAVA" -cp "$LIBS/*" -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$RUN_DIR/storage-tool" kafka.tools.StorageTool random-uuid 2>>"$OUT" | tail -n1)"
  [[ -n "$id" ]] || die "StorageTool random-uuid printed nothing (see ${OUT#"$ROOT"/})"
  mkdir -p "$DATA_DIR"
  # SCRAM credentials of a KRaft cluster are metadata records; formatting
  # writes the first ones, so the broker accepts SCRAM logins from the start.
  local scram=()
  [[ "$KAFKA_SECURE" == 1 ]] &&
    scram=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$(secret "$SCRAM_USER")]")
  if ! "$JAVA" -cp "$LIBS/*" -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
       -Dkafka.logs.dir="$RUN_DIR/storage-tool" kafka.tools.StorageTool format -t "$id" -c "$PROPS" \
       "${scram[@]}" >>"$OUT" 2>&1; then
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

cmd_env() {
  [[ "$KAFKA_SECURE" == 1 ]] || die "env is for the secured instance (KAFKA_SECURE=1)"
  [[ -f "$SECRETS_DIR/.complete" ]] || die "no test credentials yet: start the secured instance first"
  echo "SECURE_KAFKA_BOOTSTRAP=$LOCAL_BOOTSTRAP"
  echo "SECURE_KAFKA_CA=$TLS_DIR/ca.pem"
  echo "SECURE_KAFKA_ADMIN_USERNAME=admin"
  echo "SECURE_KAFKA_ADMIN_PASSWORD_FILE=$SECRETS_DIR/admin.password"
  echo "SECURE_KAFKA_PLAIN_USERNAME=$PLAIN_USER"
  echo "SECURE_KAFKA_PLAIN_PASSWORD_FILE=$SECRETS_DIR/$PLAIN_USER.password"
  echo "SECURE_KAFKA_SCRAM_USERNAME=$SCRAM_USER"
  echo "SECURE_KAFKA_SCRAM_PASSWORD_FILE=$SECRETS_DIR/$SCRAM_USER.password"
}

cmd_logs() {
  [[ -f "$LOG" ]] || die "no server log at $LOG"
  if [[ "${1:-}" == "-f" ]]; then
    exec tail -n 50 -F "$LOG"
  fi
  tail -n "${KAFKA_LOG_LINES:-200}" "$LOG"
}

usage() {
  echo "usage: [KAFKA_SECURE=1] $0 start|stop|status|restart|reset|env|logs [-f]" >&2
  exit 1
}

case "${1:-}" in
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  reset)   cmd_reset ;;
  env)     cmd_env ;;
  logs)    shift; cmd_logs "$@" ;;
  *)       usage ;;
esac
