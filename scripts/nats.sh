#!/usr/bin/env bash
# nats-server with JetStream for the NATS tests: the Debian package and the machine's instance on
# 127.0.0.1:4222 (-js). Tests that stop a server or need a cluster start private nats-server
# processes on free ports (packages/transport-nats/test/servers.ts); they only need the binary.
#
# Usage: scripts/nats.sh ensure|install|start|status
#   ensure   install (if missing) + start (if 127.0.0.1:4222 does not answer with JetStream); idempotent
#   install  apt-get install nats-server when /usr/sbin/nats-server is missing
#   start    start the machine's server with its own start command unless it already answers
#   status   exit 0 when 127.0.0.1:4222 answers and announces JetStream in its INFO
set -euo pipefail

PORT=4222
BIN=/usr/sbin/nats-server

say() { echo "nats: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The server's INFO line (sent first on every connection), or nothing.
info() {
  local line=''
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null || return 1
  IFS= read -r -t 2 line <&3 || true
  exec 3<&- 3>&-
  printf '%s' "$line"
}

answers() { [[ "$(info || true)" == INFO* ]]; }
jetstream() { [[ "$(info || true)" == *'"jetstream":true'* ]]; }

install() {
  [[ -x "$BIN" ]] && return 0
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  say "installing the Debian package nats-server with apt-get"
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server >/dev/null
  [[ -x "$BIN" ]] || die "$BIN still missing after apt-get install nats-server"
  say "installed $("$BIN" --version)"
}

start() {
  if jetstream; then
    say "already answering with JetStream on 127.0.0.1:$PORT"
    return 0
  fi
  answers && die "127.0.0.1:$PORT answers without JetStream: start nats-server with -js"
  [[ -x "$BIN" ]] || die "nats-server is not installed (run: $0 install)"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  say "starting $BIN on 127.0.0.1:$PORT with JetStream (store /var/lib/nats-server)"
  "${sudo[@]}" mkdir -p /var/lib/nats-server
  "${sudo[@]}" start-stop-daemon --start --oknodo --background --exec "$BIN" -- \
    -a 127.0.0.1 -p "$PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  local i
  for ((i = 0; i < 100; i++)); do
    jetstream && { say "ready on 127.0.0.1:$PORT"; return 0; }
    sleep 0.1
  done
  tail -n 20 /var/log/nats-server.log >&2 || true
  die "nats-server did not answer with JetStream on 127.0.0.1:$PORT within 10s (log: /var/log/nats-server.log)"
}

case "${1:-}" in
  ensure) install && start ;;
  install) install ;;
  start) start ;;
  status) jetstream && echo "answering with JetStream on 127.0.0.1:$PORT" || { echo "no JetStream server on 127.0.0.1:$PORT"; exit 1; } ;;
  *) echo "usage: $0 ensure|install|start|status" >&2; exit 2 ;;
esac
