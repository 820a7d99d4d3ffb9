#!/usr/bin/env bash
# The project's test command (`npm test`): installs what is missing, builds,
# typechecks, lints, checks formatting and API docs, runs the quick suite on the
# oldest supported Node, starts the real brokers the integration tests need, runs
# every test on the newest Node, and checks the packed packages as a user
# installs them. A broker that cannot start fails the run with its reason.
# Arguments go to the full vitest run.
#
# `scripts/test.sh --integration [vitest args]` (`npm run test:integration`): build,
# brokers, and the integration project alone on the machine's Node.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pnpm() { bash scripts/pnpm.sh "$@"; }
step() { echo "test: $*" >&2; }

# The range in package.json "engines": its oldest and newest majors are tested.
OLDEST_NODE=20
NEWEST_NODE=24
on_node() {
  local major="$1"
  shift
  PATH="$(bash scripts/node.sh "$major" --bin-dir):$PATH" "$@"
}

brokers() {
  step "making sure Mosquitto answers on 127.0.0.1:1883"
  bash scripts/mosquitto.sh ensure
  step "making sure RabbitMQ answers on 127.0.0.1:5672 (the AMQP tests; the MQTT tests also start private nodes with its MQTT plugin)"
  bash scripts/rabbitmq.sh ensure
  step "making sure NATS with JetStream answers on 127.0.0.1:4222"
  bash scripts/nats.sh ensure
  step "making sure Redis answers on 127.0.0.1:6379"
  bash scripts/redis.sh ensure
  step "making sure PostgreSQL answers on 127.0.0.1:5432"
  bash scripts/postgres.sh ensure
  step "starting Apache Kafka (KRaft) on 127.0.0.1:9092"
  bash scripts/kafka.sh tools
  bash scripts/kafka.sh start
}

step "installing dependencies"
pnpm install --frozen-lockfile --reporter=silent
step "building"
pnpm exec tsc -b

if [[ "${1:-}" == "--integration" ]]; then
  shift
  brokers
  step "integration suite on Node $(node --version)"
  exec bash scripts/pnpm.sh exec vitest run --project integration "$@"
fi

step "typechecking tests"
pnpm exec tsc -p tsconfig.test.json
step "linting"
pnpm exec eslint .
step "checking formatting (npm run format fixes it)"
pnpm exec prettier --check . >/dev/null
step "checking the API reference: every public export has a doc comment (npm run docs writes it)"
pnpm exec typedoc --emit none
step "quick suite on Node $OLDEST_NODE: unit tests and the conformance kit on MemoryBroker"
on_node "$OLDEST_NODE" bash scripts/pnpm.sh exec vitest run --project unit
brokers
step "full suite on Node $NEWEST_NODE"
on_node "$NEWEST_NODE" bash -c 'echo "test: $(node --version)" >&2; exec bash scripts/pnpm.sh exec vitest run "$@"' vitest "$@"
for major in "$OLDEST_NODE" "$NEWEST_NODE"; do
  step "packed-install check on Node $major"
  bash scripts/packed-install.sh "$major"
done
