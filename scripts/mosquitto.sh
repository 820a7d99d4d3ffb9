#!/usr/bin/env bash
# Mosquitto for the MQTT tests: the Debian packages and one shared instance on 127.0.0.1:1883.
# Tests that stop or reconfigure a broker start their own private instances on free ports
# (packages/transport-mqtt/test/mosquitto.ts); they only need the binaries installed here.
#
# Usage: scripts/mosquitto.sh ensure|install|start|stop|status
#   ensure   install (if missing) + start (if 127.0.0.1:$MOSQUITTO_PORT does not answer); idempotent
#   install  apt-get install mosquitto mosquitto-clients when mosquitto/mosquitto_pub/mosquitto_sub/mosquitto_passwd are missing
#   start    start our instance (anonymous, no persistence) unless the port already answers
#   stop     stop the instance this script started (never a broker it did not start)
#   status   exit 0 when the port answers
#
# Environment (defaults in brackets):
#   MOSQUITTO_PORT    [1883]
#   KTRANSPORT_CACHE  [$HOME/.cache/ktransport]  holds mosquitto-$PORT/{mosquitto.conf,mosquitto.pid,mosquitto.log}
set -euo pipefail

PORT="${MOSQUITTO_PORT:-1883}"
CACHE="${KTRANSPORT_CACHE:-$HOME/.cache/ktransport}"
DIR="$CACHE/mosquitto-$PORT"
PID_FILE="$DIR/mosquitto.pid"
LOG_FILE="$DIR/mosquitto.log"

say() { echo "mosquitto: $*" >&2; }
die() { say "error: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

binary() {
  command -v mosquitto 2>/dev/null && return 0
  [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto && return 0
  return 1
}

install() {
  local missing=0 tool
  binary >/dev/null || missing=1
  for tool in mosquitto_pub mosquitto_sub mosquitto_passwd; do command -v "$tool" >/dev/null || missing=1; done
  ((missing)) || return 0
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  say "installing the Debian packages mosquitto and mosquitto-clients with apt-get"
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null
  binary >/dev/null || die "mosquitto still missing after apt-get install"
  say "installed $(binary) ($("$(binary)" -h 2>/dev/null | head -n1 || true))"
}

start() {
  if port_open; then
    say "already answering on 127.0.0.1:$PORT"
    return 0
  fi
  local bin
  bin="$(binary)" || die "mosquitto is not installed (run: $0 install)"
  mkdir -p "$DIR"
  cat >"$DIR/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
pid_file $PID_FILE
log_dest file $LOG_FILE
user $(id -un)
EOF
  say "starting $bin on 127.0.0.1:$PORT (config $DIR/mosquitto.conf)"
  "$bin" -d -c "$DIR/mosquitto.conf"
  local i
  for ((i = 0; i < 100; i++)); do
    port_open && { say "ready on 127.0.0.1:$PORT"; return 0; }
    sleep 0.1
  done
  tail -n 20 "$LOG_FILE" >&2 || true
  die "mosquitto did not answer on 127.0.0.1:$PORT within 10s (log: $LOG_FILE)"
}

stop() {
  local pid
  if [[ ! -f "$PID_FILE" ]] || ! pid="$(<"$PID_FILE")" || ! kill -0 "$pid" 2>/dev/null; then
    say "no instance started by this script on port $PORT"
    return 0
  fi
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$PID_FILE"
  say "stopped pid $pid"
}

case "${1:-}" in
  ensure) install && start ;;
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) port_open && echo "answering on 127.0.0.1:$PORT" || { echo "nothing on 127.0.0.1:$PORT"; exit 1; } ;;
  *) echo "usage: $0 ensure|install|start|stop|status" >&2; exit 2 ;;
esac
