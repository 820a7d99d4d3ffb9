#!/usr/bin/env bash
# `npm run bench [-- --quick]`: installs and builds what is missing, makes sure the
# brokers run (a Mosquitto instance of its own on BENCH_MQTT_PORT, Kafka from
# scripts/kafka.sh, kcat, the machine's RabbitMQ, NATS and Redis), then runs bench/. JSON lines go to stdout, progress to
# stderr; bench/RESULTS.md is rewritten. Options: see bench/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { echo "bench: $*" >&2; }

# One benchmark run at a time on a machine: a second run waits (it would skew the first, and both
# would manage the same Mosquitto).
lock_dir="${KTRANSPORT_CACHE:-$HOME/.cache/ktransport}"
mkdir -p "$lock_dir"
exec 9>"$lock_dir/bench.lock"
if ! flock -n 9; then
  say "another benchmark run is in progress on this machine; waiting for it to finish"
  flock 9
fi

say "installing dependencies and building"
bash scripts/pnpm.sh install --frozen-lockfile --reporter=silent >&2
bash scripts/pnpm.sh exec tsc -b bench >&2

# A Mosquitto of our own: known configuration, no other clients, stopped again at the end.
# Receive Maximum (max_inflight_messages) 1000 instead of Mosquitto's 20, so that QoS 1 publishes of
# conforming clients (ktransport and the raw baseline alike) are not bounded by the broker's window.
bash scripts/mosquitto.sh install >&2
port="${BENCH_MQTT_PORT:-1885}"
export BENCH_MQTT_URL="${BENCH_MQTT_URL:-mqtt://127.0.0.1:$port}"
if [[ "$BENCH_MQTT_URL" == "mqtt://127.0.0.1:$port" ]]; then
  dir="${KTRANSPORT_CACHE:-$HOME/.cache/ktransport}/bench-mosquitto-$port"
  mkdir -p "$dir"
  # Left over from a run that was killed (runs are serialized by the lock): restart it with this configuration.
  if [[ -f "$dir/mosquitto.pid" ]] && kill -0 "$(cat "$dir/mosquitto.pid")" 2>/dev/null; then kill "$(cat "$dir/mosquitto.pid")"; sleep 0.5; fi
  cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 1000000
pid_file $dir/mosquitto.pid
log_dest file $dir/mosquitto.log
user $(id -un)
CONF
  mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "error: 127.0.0.1:$port is taken by another program; set BENCH_MQTT_PORT to a free port (or BENCH_MQTT_URL to use that broker)"
    exit 1
  fi
  "$mosquitto_bin" -d -c "$dir/mosquitto.conf" 2>/dev/null 9>&-
  trap 'kill "$(cat "$dir/mosquitto.pid" 2>/dev/null)" 2>/dev/null || true' EXIT
  for ((i = 0; i < 50; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { say "error: mosquitto did not start (log: $dir/mosquitto.log)"; exit 1; }
  say "mosquitto for the benchmark on 127.0.0.1:$port (config $dir/mosquitto.conf)"
fi

bash scripts/kafka.sh start >&2
# The machine's RabbitMQ, NATS (JetStream) and Redis for the queue suites: started or installed when missing.
bash scripts/rabbitmq.sh ensure >&2
bash scripts/nats.sh ensure >&2
bash scripts/redis.sh ensure >&2
bash scripts/kafka.sh tools >&2 || say "warning: kcat could not be installed; the kcat reference is skipped"
export BENCH_KAFKA_BROKERS="${BENCH_KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}"

node bench/dist/main.js "$@"
