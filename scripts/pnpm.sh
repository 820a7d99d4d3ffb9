#!/usr/bin/env bash
# Runs the pnpm version pinned in package.json ("packageManager"), installing it
# into .tools/ from the npm registry the first time, so that a fresh clone needs
# nothing but Node and npm.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(node -p "require('$root/package.json').packageManager.split('@')[1]")"
bin="$root/.tools/node_modules/.bin/pnpm"
if [[ ! -x "$bin" ]] || [[ "$("$bin" --version 2>/dev/null)" != "$version" ]]; then
  echo "pnpm: installing pnpm@$version into .tools/" >&2
  npm install --silent --no-audit --no-fund --prefix "$root/.tools" "pnpm@$version" >&2
fi
exec "$bin" "$@"
