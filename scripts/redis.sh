#!/usr/bin/env bash
# Redis for the tests: the Debian packages redis-server and redis-tools, and the machine's
# server on 127.0.0.1:6379. The Redis transport's tests also start private redis-server
# instances on free ports (packages/transport-redis/test/redis.ts) and only need the binaries.
#
# Usage: scripts/redis.sh install|ensure|status
#   install  apt-get install redis-server (and redis-tools) when redis-server or redis-cli is missing
#   ensure   install, then start the machine's server unless 127.0.0.1:6379 answers PING; idempotent
#   status   exit 0 when 127.0.0.1:6379 answers PING
set -euo pipefail

say() { echo "redis: $*" >&2; }
die() { say "error: $*"; exit 1; }
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }
answers() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }

install() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  say "installing the Debian packages redis-server and redis-tools with apt-get"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
  command -v redis-server >/dev/null || die "redis-server still missing after apt-get install"
}

ensure() {
  install
  answers && return 0
  say "starting the machine's Redis on 127.0.0.1:6379 (no persistence)"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  local i
  for ((i = 0; i < 100; i++)); do
    answers && { say "ready on 127.0.0.1:6379"; return 0; }
    sleep 0.1
  done
  tail -n 20 /var/log/redis/ci.log >&2 || true
  die "redis-server did not answer PING on 127.0.0.1:6379 within 10 s (log: /var/log/redis/ci.log)"
}

case "${1:-}" in
  install) install ;;
  ensure) ensure ;;
  status) answers && echo "answering on 127.0.0.1:6379" || { echo "nothing answers PING on 127.0.0.1:6379"; exit 1; } ;;
  *) echo "usage: $0 install|ensure|status" >&2; exit 2 ;;
esac
