#!/usr/bin/env bash
# The project's test command (`npm test`): installs what is missing, builds,
# typechecks, lints, starts the real brokers the integration tests need, and runs
# every test. A broker that cannot start fails the run with its reason.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pnpm() { bash scripts/pnpm.sh "$@"; }

step() { echo "test: $*" >&2; }

step "installing dependencies"
pnpm install --frozen-lockfile --reporter=silent
step "building"
pnpm exec tsc -b
step "typechecking tests"
pnpm exec tsc -p tsconfig.test.json
step "linting"
pnpm exec eslint .
step "making sure Mosquitto answers on 127.0.0.1:1883"
bash scripts/mosquitto.sh ensure
step "making sure PostgreSQL answers on 127.0.0.1:5432"
bash scripts/postgres.sh ensure
step "starting Apache Kafka (KRaft) on 127.0.0.1:9092"
bash scripts/kafka.sh tools
bash scripts/kafka.sh start
step "running tests"
pnpm exec vitest run "$@"
