#!/usr/bin/env bash
# `npm run demo`: installs and builds what is missing, then runs the example on
# embedded defaults (nothing else needs to be running).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/pnpm.sh install --frozen-lockfile --reporter=silent
bash scripts/pnpm.sh exec tsc -b
node examples/saver-service/dist/demo.js "$@"
