#!/usr/bin/env bash
# Root scripts that only need the dependencies (`npm run build`, `typecheck`, `lint`,
# `format`, `docs`, `changeset`): installs them from the lockfile when they are
# missing or stale (a no-op of about a second otherwise), then runs the command
# with `pnpm exec`, extra arguments included (`npm run lint -- --fix`).
# A fresh clone therefore needs no separate `npm run setup` before any root script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/pnpm.sh install --frozen-lockfile --reporter=silent >&2
exec bash scripts/pnpm.sh exec "$@"
