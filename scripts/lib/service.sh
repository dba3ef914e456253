# shellcheck shell=bash
# Helpers shared by scripts/kafka.sh and scripts/registry.sh: a local service
# that runs in the background and is known only by the PID it recorded.
#
# The sourcing script sets, before calling these:
#   SERVICE      name used in messages and in 'scripts/$SERVICE.sh'
#   HOST         address the service listens on
#   RUN_DIR      runtime folder (pid file, lock, logs)
#   PID_FILE     where the pid is recorded
#   LOCK         lock file serialising start/stop
#   PID_PATTERN  fixed text the service's command line contains, so a reused
#                pid of an unrelated process is never taken for (or killed as) it
# and defines:
#   ready <pid>      success once the service answers
#   show_log_tail    prints the end of its logs to stderr

say() { echo "$SERVICE: $*"; }
die() { echo "$SERVICE: error: $*" >&2; exit 1; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { # port
  timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Prints the recorded pid if that process is alive and is our service;
# removes a stale pid file.
live_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc 0-9 <"$PID_FILE")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
     tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PID_PATTERN"; then
    echo "$pid"
    return 0
  fi
  rm -f "$PID_FILE"
  return 1
}

with_lock() { # seconds to wait for the lock
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK"
  flock -w "$1" 9 || die "another scripts/$SERVICE.sh holds $LOCK"
}

# Prints the pid the launcher recorded (it writes PID_FILE, then execs the
# service); dies with the log tail when none appears within 5 s.
launched_pid() {
  local _i pid
  for _i in $(seq 50); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.1
  done
  pid="$(tr -dc 0-9 <"$PID_FILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || { show_log_tail; die "$SERVICE did not start (no pid recorded)"; }
  echo "$pid"
}

wait_ready() { # pid timeout-seconds where
  local pid="$1" timeout="$2" where="$3" deadline
  deadline=$(( $(date +%s) + timeout ))
  until ready "$pid"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      show_log_tail
      die "$SERVICE (pid $pid) exited during startup"
    fi
    if (( $(date +%s) >= deadline )); then
      show_log_tail
      die "$SERVICE (pid $pid) not ready at $where after ${timeout}s; it is still running: 'scripts/$SERVICE.sh stop' to end it"
    fi
    sleep 0.2
  done
}

# Stops the recorded process: SIGTERM, then SIGKILL after the timeout.
stop_recorded() { # timeout-seconds
  local pid t0 deadline
  if ! pid="$(live_pid)"; then
    say "not running"
    return 0
  fi
  t0="$(now)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + $1 ))
  while kill -0 "$pid" 2>/dev/null; do
    if (( $(date +%s) >= deadline )); then
      say "pid $pid still alive after ${1}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
  say "stopped (pid $pid) in $(since "$t0")s"
}

# Makes, in the current directory, a test CA (ca.pem, ca-key.pem) and a
# server key and certificate signed by it for 127.0.0.1 and localhost
# (key.pem, cert.pem). Test material only, never for production.
make_test_certificates() { # CA common name (the caller checks for openssl)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 3650 \
    -subj "/CN=$1" 2>/dev/null &&
  openssl req -newkey rsa:2048 -nodes -keyout key.pem -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null &&
  printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
    'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >server.ext &&
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 3650 \
    -extfile server.ext 2>/dev/null &&
  chmod 600 key.pem ca-key.pem
}
