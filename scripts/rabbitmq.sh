#!/usr/bin/env bash
# RabbitMQ for the tests: the Debian package, and the machine's node on 127.0.0.1:5672.
# The MQTT and AMQP tests start private RabbitMQ nodes of their own (own node name, ports
# and data; packages/transport-*/test/rabbitmq.ts) and only need the binaries. The AMQP
# interop tests use Debian's amqp-tools (amqp-publish, amqp-consume).
#
# Usage: scripts/rabbitmq.sh install|ensure|status
#   install  apt-get install rabbitmq-server (and amqp-tools) when missing
#   ensure   install, then start the machine's node (rabbitmq-server -detached) unless 5672 answers
#   status   exit 0 when 127.0.0.1:5672 answers
set -euo pipefail

BIN=/usr/lib/rabbitmq/bin
say() { echo "rabbitmq: $*" >&2; }
die() { say "error: $*"; exit 1; }
port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

install() {
  local missing=()
  [[ -x "$BIN/rabbitmq-server" ]] || missing+=(rabbitmq-server)
  command -v amqp-publish >/dev/null || missing+=(amqp-tools)
  ((${#missing[@]} == 0)) && return 0
  say "installing the Debian package(s) ${missing[*]} with apt-get"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -x "$BIN/rabbitmq-server" ]] || die "$BIN/rabbitmq-server still missing after apt-get install"
  command -v amqp-publish >/dev/null || die "amqp-publish (amqp-tools) still missing after apt-get install"
}

ensure() {
  install
  port_open && return 0
  say "starting the machine's RabbitMQ node (rabbitmq-server -detached)"
  as_root rabbitmq-server -detached
  local i
  for ((i = 0; i < 120; i++)); do
    port_open && { say "ready on 127.0.0.1:5672"; return 0; }
    sleep 0.5
  done
  die "RabbitMQ does not answer on 127.0.0.1:5672 after 60 s (see /var/log/rabbitmq/)"
}

case "${1:-}" in
  install) install ;;
  ensure) ensure ;;
  status) port_open && echo "answering on 127.0.0.1:5672" || { echo "nothing on 127.0.0.1:5672"; exit 1; } ;;
  *) echo "usage: $0 install|ensure|status" >&2; exit 2 ;;
esac
