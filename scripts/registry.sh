#!/usr/bin/env bash
# Local Confluent-API-compatible schema registry for pipewarden's demo, tests
# and CI: Apicurio Registry 3 with its in-memory (H2) storage, so every start
# begins with an empty registry.
#
#   scripts/registry.sh start|stop|status|restart|reset|url|logs [-f]
#
# Needs only Java 21+ and Maven: the registry's quarkus-app distribution
# (io.apicurio:apicurio-registry-app:$APICURIO_VERSION, classifier "all",
# type tar.gz) is fetched once from Maven Central and unpacked into
# .cache/registry/; its pid and log live in .run/registry/. Works from any
# directory. The Confluent-compatible API is served under
#   http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7
# ('url' prints it; 'reset' = restart, since the store is in memory).
# scripts/registry/smoke.py checks that API the way pipewarden uses it.
#
# Environment:
#   REGISTRY_PORT             HTTP port on 127.0.0.1 (default 8081)
#   REGISTRY_MANAGEMENT_PORT  Quarkus management port on 127.0.0.1, which
#                             serves /health and /metrics (default 8091)
#   SCHEMA_REGISTRY_URL       if set to a URL that is not on 127.0.0.1 or
#                             localhost at $REGISTRY_PORT, an external registry
#                             is used: start/stop/restart/reset do nothing
#   REGISTRY_START_TIMEOUT    seconds to wait for the registry to be ready (120)
#   REGISTRY_HEAP_OPTS        JVM heap options (-Xms64m -Xmx512m)
#   REGISTRY_JVM_OPTS         extra JVM options, e.g. -Dquarkus.log.level=INFO
#                             or -Dkey=value for any Apicurio/Quarkus setting
#   REGISTRY_CDS              1 (default): keep a class-data sharing archive of
#                             the registry per Java version in .cache/registry/
#                             (written at the first stop, ~80 MB; later starts
#                             use ~15% less CPU); 0: none
#   REGISTRY_SECURE           1: a second, secured instance (HTTPS only, HTTP
#                             basic auth on every path) for the tests of
#                             pipewarden's registry TLS and credentials. It has
#                             its own run folder (.run/registry-secure/), ports
#                             (REGISTRY_PORT 8444, REGISTRY_MANAGEMENT_PORT 8094
#                             by default), a test CA and server certificate made
#                             once with openssl in .run/registry-secure/tls/
#                             (ca.pem, cert.pem, key.pem), user "pipewarden"
#                             and a random password kept in tls/password.
#                             'env' prints the SECURE_REGISTRY_* variables
#                             the tests read.
#   REGISTRY_JAVA_HOME        Java 21+ to use; else the first Java 21+ of
#                             JAVA_HOME, java on PATH and the newest JDK in
#                             /usr/lib/jvm (Apicurio 3.3 is compiled for Java
#                             21, Debian 12's default Java is 17)
#
# Differences from Confluent's registry seen with this one: the default
# compatibility is NONE (Confluent: BACKWARD; PUT /config sets it); a request
# body needs a Content-Type (application/vnd.schemaregistry.v1+json or
# application/json), else 415; ids are Apicurio content ids, global and
# shared by subjects, with gaps.
#
# Exit codes: 0 ok; status exits 3 when the registry is not running; 1 on error.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"

# Only 3.3.3 of the 3.x line resolves from Maven Central here: the parent POM
# (io.apicurio:apicurio-registry) of 3.3.2 and 3.0.9 is not served.
APICURIO_VERSION=3.3.3
ARTIFACT="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all"
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
MIN_JAVA=21

CACHE_DIR="$ROOT/.cache/registry"
APP_DIR="$CACHE_DIR/apicurio-registry-$APICURIO_VERSION"
RUN_JAR="$APP_DIR/quarkus-run.jar"
REGISTRY_SECURE="${REGISTRY_SECURE:-0}"
if [[ "$REGISTRY_SECURE" == 1 ]]; then
  RUN_DIR="$ROOT/.run/registry-secure"
  REGISTRY_PORT="${REGISTRY_PORT:-8444}"
  REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-8094}"
  SCHEME=https
else
  RUN_DIR="$ROOT/.run/registry"
  SCHEME=http
fi
TLS_DIR="$RUN_DIR/tls"
SECURE_USER=pipewarden
TMP_DIR="$RUN_DIR/tmp"
PID_FILE="$RUN_DIR/registry.pid"
LOG="$RUN_DIR/registry.log"
LOCK="$RUN_DIR/.lock"

REGISTRY_PORT="${REGISTRY_PORT:-8081}"
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-8091}"
REGISTRY_START_TIMEOUT="${REGISTRY_START_TIMEOUT:-120}"
# The secured instance keeps no archive of its own: two JVMs writing one
# archive file at exit could race.
if [[ "${REGISTRY_SECURE:-0}" == 1 ]]; then REGISTRY_CDS="${REGISTRY_CDS:-0}"; else REGISTRY_CDS="${REGISTRY_CDS:-1}"; fi
REGISTRY_STOP_TIMEOUT=30
HOST=127.0.0.1
API_PATH=/apis/ccompat/v7
LOCAL_URL="$SCHEME://$HOST:$REGISTRY_PORT$API_PATH"

SERVICE=registry
PID_PATTERN="$RUN_JAR"
# shellcheck source=scripts/lib/service.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"

# --- external registry -----------------------------------------------------

# Local when it names this script's instance: http(s)://127.0.0.1:PORT/... or
# http(s)://localhost:PORT/... (any path, e.g. the ccompat base URL).
external() {
  # The secured instance exists for the tests; it is never "external".
  [[ "$REGISTRY_SECURE" == 1 ]] && return 1
  local u="${SCHEMA_REGISTRY_URL:-}"
  [[ -n "$u" ]] || return 1
  [[ "$u" =~ ^https?://(127\.0\.0\.1|localhost):$REGISTRY_PORT(/.*)?$ ]] && return 1
  return 0
}

# --- prerequisites ---------------------------------------------------------

java_major() { # java binary -> major version, or nothing
  local v major
  v="$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')" || return 0
  major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] && echo "$major"
  return 0
}

JAVA=
need_java() {
  local c m
  if [[ -n "${REGISTRY_JAVA_HOME:-}" ]]; then
    c="$REGISTRY_JAVA_HOME/bin/java"
    [[ -x "$c" ]] || die "REGISTRY_JAVA_HOME=$REGISTRY_JAVA_HOME has no bin/java"
    m="$(java_major "$c")"
    (( ${m:-0} >= MIN_JAVA )) || die "Apicurio Registry $APICURIO_VERSION needs Java $MIN_JAVA+, but $c is version ${m:-unknown}"
    JAVA="$c"
    return 0
  fi
  local -a cands=()
  [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && cands+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null 2>&1 && cands+=("$(command -v java)")
  # then the JDKs/JREs installed side by side (e.g. a Temurin beside Debian's)
  local best='' best_m=0
  for c in /usr/lib/jvm/*/bin/java; do
    [[ -x "$c" && ! -L "${c%/bin/java}" ]] || continue
    m="$(java_major "$c")"
    if (( ${m:-0} > best_m )); then best="$c"; best_m="$m"; fi
  done
  [[ -n "$best" ]] && cands+=("$best")
  for c in "${cands[@]}"; do
    m="$(java_major "$c")"
    if (( ${m:-0} >= MIN_JAVA )); then JAVA="$c"; return 0; fi
  done
  die "Apicurio Registry $APICURIO_VERSION needs Java $MIN_JAVA+ and none was found (tried: ${cands[*]:-no java at all}); install one (e.g. a Temurin 21/25 JDK) or set REGISTRY_JAVA_HOME"
}

need_mvn() {
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: Maven is needed once to fetch Apicurio Registry (e.g. apt-get install maven)"
}

need_curl() {
  command -v curl >/dev/null 2>&1 || die "curl not found (e.g. apt-get install curl)"
}

# Fetches the distribution with Maven (into the local Maven repository, then a
# copy here), unpacks it beside, and marks it complete; a half-done attempt
# leaves only temporary files that the next one removes.
fetch_app() {
  [[ -f "$APP_DIR/.complete" && -f "$RUN_JAR" ]] && return 0
  need_mvn
  say "fetching Apicurio Registry $APICURIO_VERSION with Maven into ${APP_DIR#"$ROOT"/} (once)..."
  local t0 tmp
  t0="$(now)"
  mkdir -p "$CACHE_DIR"
  rm -rf "$CACHE_DIR"/dl.tmp.* "$APP_DIR.tmp"
  tmp="$(mktemp -d "$CACHE_DIR/dl.tmp.XXXXXX")"
  if ! mvn -q -B "$DEP_PLUGIN:copy" -Dartifact="$ARTIFACT" -DoutputDirectory="$tmp" \
       >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "Maven could not fetch $ARTIFACT"
  fi
  rm -f "$tmp.log"
  local tgz="$tmp/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
  [[ -f "$tgz" ]] || { rm -rf "$tmp"; die "no $(basename "$tgz") after fetching $ARTIFACT"; }
  mkdir -p "$APP_DIR.tmp"
  if ! tar -xzf "$tgz" -C "$APP_DIR.tmp"; then
    rm -rf "$tmp" "$APP_DIR.tmp"
    die "could not unpack $tgz"
  fi
  rm -rf "$tmp"
  [[ -f "$APP_DIR.tmp/quarkus-run.jar" ]] || { rm -rf "$APP_DIR.tmp"; die "no quarkus-run.jar in $ARTIFACT"; }
  touch "$APP_DIR.tmp/.complete"
  rm -rf "$APP_DIR"
  mv "$APP_DIR.tmp" "$APP_DIR"
  say "fetched and unpacked in $(since "$t0")s ($(du -sh "$APP_DIR" | cut -f1))"
}

# --- process state ---------------------------------------------------------

http_code() { # url
  local auth=()
  [[ "$REGISTRY_SECURE" == 1 ]] &&
    auth=(--cacert "$TLS_DIR/ca.pem" -u "$SECURE_USER:$(cat "$TLS_DIR/password" 2>/dev/null)")
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 "${auth[@]}" "$1" 2>/dev/null || true
}

# The secured instance's test CA, server certificate (for 127.0.0.1 and
# localhost) and password, made once; test material only, never for production.
make_tls() {
  [[ -f "$TLS_DIR/.complete" ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found (e.g. apt-get install openssl)"
  rm -rf "$TLS_DIR" && mkdir -p "$TLS_DIR" && chmod 700 "$TLS_DIR"
  (
    cd "$TLS_DIR"
    make_test_certificates "pipewarden test registry CA" || exit 1
    openssl rand -hex 16 >password
    chmod 600 password
  ) || die "could not make the test certificates in $TLS_DIR"
  touch "$TLS_DIR/.complete"
}

ready() { # pid
  kill -0 "$1" 2>/dev/null && [[ "$(http_code "$LOCAL_URL/subjects")" == 200 ]]
}

show_log_tail() {
  echo "--- last lines of ${LOG#"$ROOT"/} ---" >&2
  tail -n 40 "$LOG" >&2 2>/dev/null || echo "(no log)" >&2
}

await_ready() { # pid t0
  wait_ready "$1" "$REGISTRY_START_TIMEOUT" "$LOCAL_URL"
  local var=SCHEMA_REGISTRY_URL
  [[ "$REGISTRY_SECURE" == 1 ]] && var=SECURE_REGISTRY_URL
  echo "registry ready in $(since "$2")s (pid $1): $var=$LOCAL_URL"
}

# --- commands --------------------------------------------------------------

cmd_start() {
  if external; then say "using external registry at $SCHEMA_REGISTRY_URL"; return 0; fi
  local t0 pid
  t0="$(now)"
  need_curl
  with_lock 180
  if pid="$(live_pid)"; then
    if ready "$pid"; then
      say "already running at $LOCAL_URL (pid $pid)"
      return 0
    fi
    say "registry (pid $pid) is starting; waiting for it"
    await_ready "$pid" "$t0"
    return 0
  fi
  need_java
  [[ "$REGISTRY_PORT" != "$REGISTRY_MANAGEMENT_PORT" ]] ||
    die "REGISTRY_PORT and REGISTRY_MANAGEMENT_PORT are both $REGISTRY_PORT"
  local p
  for p in "$REGISTRY_PORT" "$REGISTRY_MANAGEMENT_PORT"; do
    port_open "$p" && die "port $p on $HOST is in use by another process (not a registry started by this script); free it, choose REGISTRY_PORT/REGISTRY_MANAGEMENT_PORT, or set SCHEMA_REGISTRY_URL to use it"
  done
  fetch_app
  mkdir -p "$TMP_DIR"
  local secure=()
  if [[ "$REGISTRY_SECURE" == 1 ]]; then
    make_tls
    # HTTPS only, and every path (API and UI) needs HTTP basic auth: Quarkus'
    # embedded user store, which Apicurio's build enables.
    secure=(
      -Dquarkus.http.port=0 -Dquarkus.http.insecure-requests=disabled
      -Dquarkus.http.ssl-port="$REGISTRY_PORT"
      -Dquarkus.http.ssl.certificate.files="$TLS_DIR/cert.pem"
      -Dquarkus.http.ssl.certificate.key-files="$TLS_DIR/key.pem"
      -Dquarkus.http.auth.basic=true
      -Dquarkus.security.users.embedded.plain-text=true
      "-Dquarkus.security.users.embedded.users.$SECURE_USER=$(cat "$TLS_DIR/password")"
      "-Dquarkus.security.users.embedded.roles.$SECURE_USER=sr-admin"
      '-Dquarkus.http.auth.permission.authenticated.paths=/*'
      -Dquarkus.http.auth.permission.authenticated.policy=authenticated
    )
  fi
  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.prev"
  local major cds=()
  major="$(java_major "$JAVA")"
  # Dynamic CDS archive (JDK 19+): created when the JVM exits if absent or made
  # by another JVM build, used at the next start.
  [[ "$REGISTRY_CDS" == 1 ]] &&
    cds=(-XX:+AutoCreateSharedArchive -XX:SharedArchiveFile="$APP_DIR/cds-java$major.jsa" -Xlog:cds=off)
  say "starting Apicurio Registry $APICURIO_VERSION with $JAVA (Java $major)"

  # setsid: own session, so the registry outlives the calling shell and its
  # terminal; the inner bash records its own pid and then becomes java.
  # Storage: SQL on an in-memory H2 database; Apicurio's default URL,
  # jdbc:h2:mem:db_${quarkus.uuid}, names a new one at every start.
  # shellcheck disable=SC2016,SC2086
  setsid -f bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" ${REGISTRY_HEAP_OPTS:--Xms64m -Xmx512m} \
      "${cds[@]}" -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Djava.io.tmpdir="$TMP_DIR" \
      -Dquarkus.http.host="$HOST" \
      -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dquarkus.management.host="$HOST" \
      -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
      -Dapicurio.storage.kind=sql \
      -Dapicurio.storage.sql.kind=h2 \
      -Dapicurio.storage.snapshot.location="$TMP_DIR" \
      -Dapicurio.import.work-dir="$TMP_DIR" \
      -Dquarkus.log.console.format='%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c{3.}] (%t) %s%e%n' \
      "${secure[@]}" \
      ${REGISTRY_JVM_OPTS:-} \
      -jar "$RUN_JAR" \
    </dev/null >>"$LOG" 2>&1 9>&-
  pid="$(launched_pid)"
  say "started (pid $pid), waiting until ready..."
  await_ready "$pid" "$t0"
}

cmd_stop() {
  if external; then say "using external registry at $SCHEMA_REGISTRY_URL; nothing to stop"; return 0; fi
  with_lock 180
  stop_recorded "$REGISTRY_STOP_TIMEOUT"
}

cmd_status() {
  need_curl
  if external; then
    local code
    code="$(http_code "${SCHEMA_REGISTRY_URL%/}/subjects")"
    if [[ "$code" == 200 ]]; then
      say "using external registry at $SCHEMA_REGISTRY_URL (reachable)"
      return 0
    fi
    say "using external registry at $SCHEMA_REGISTRY_URL (NOT reachable: GET /subjects gave ${code:-nothing})"
    return 3
  fi
  local pid
  if pid="$(live_pid)"; then
    if ready "$pid"; then
      say "running at $LOCAL_URL (pid $pid)"
      return 0
    fi
    say "process $pid alive but not ready at $LOCAL_URL"
    return 3
  fi
  say "not running"
  return 3
}

cmd_url() {
  if external; then echo "$SCHEMA_REGISTRY_URL"; else echo "$LOCAL_URL"; fi
}

cmd_env() {
  [[ "$REGISTRY_SECURE" == 1 ]] || die "env is for the secured instance (REGISTRY_SECURE=1)"
  [[ -f "$TLS_DIR/.complete" ]] || die "no test certificates yet: start the secured instance first"
  echo "SECURE_REGISTRY_URL=$LOCAL_URL"
  echo "SECURE_REGISTRY_CA=$TLS_DIR/ca.pem"
  echo "SECURE_REGISTRY_USERNAME=$SECURE_USER"
  echo "SECURE_REGISTRY_PASSWORD_FILE=$TLS_DIR/password"
}

cmd_logs() {
  [[ -f "$LOG" ]] || die "no log at $LOG"
  if [[ "${1:-}" == "-f" ]]; then
    exec tail -n 50 -F "$LOG"
  fi
  tail -n "${REGISTRY_LOG_LINES:-200}" "$LOG"
}

usage() {
  echo "usage: [REGISTRY_SECURE=1] $0 start|stop|status|restart|reset|url|env|logs [-f]" >&2
  exit 1
}

case "${1:-}" in
  start)         cmd_start ;;
  stop)          cmd_stop ;;
  status)        cmd_status ;;
  restart|reset) cmd_stop; cmd_start ;;
  url)           cmd_url ;;
  env)           cmd_env ;;
  logs)          shift; cmd_logs "$@" ;;
  *)             usage ;;
esac
