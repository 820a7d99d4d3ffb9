#!/usr/bin/env bash
# Root scripts that only need the dependencies (`npm run build`, `typecheck`, `lint`):
# installs them from the lockfile when they are missing or stale (a no-op taking about
# a second otherwise), then runs the given commands with `pnpm exec`, one per argument.
# A fresh clone therefore needs no separate `npm run setup` before any root script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/pnpm.sh install --frozen-lockfile --reporter=silent >&2
for command in "$@"; do
  # shellcheck disable=SC2086 # each argument is one command line of words
  bash scripts/pnpm.sh exec $command
done
