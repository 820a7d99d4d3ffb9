#!/usr/bin/env bash
# The packages as a user meets them: packs every library package (pnpm rewrites
# workspace:* to versions), installs the tarballs with plain `npm install` (no
# flags) into a new ESM project beside inversify, reflect-metadata, zod, the
# OpenTelemetry SDK and context manager current for that Node, type-checks
# scripts/packed-install/main.ts under strict and NodeNext, and runs it, and runs
# the packed `ktransport` command's --help.
#
# Usage: scripts/packed-install.sh <node-major>   (the packages must be built)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
major="${1:?usage: scripts/packed-install.sh <node-major>}"
say() { echo "packed-install: $*" >&2; }
PATH="$(bash "$root/scripts/node.sh" "$major" --bin-dir):$PATH"
export PATH

work="$(mktemp -d "${TMPDIR:-/tmp}/ktransport-packed-XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tarballs" "$work/app"
for dir in "$root"/packages/*/; do
  (cd "$dir" && bash "$root/scripts/pnpm.sh" pack --pack-destination "$work/tarballs" >/dev/null)
done

# What is current for that Node: SDK 2.x pieces on Node 20; the newest on 22 and later.
if ((major < 22)); then otel=(@opentelemetry/sdk-trace-base@2 @opentelemetry/context-async-hooks@2 typescript@5.9); else
  otel=(@opentelemetry/sdk-trace-base@latest @opentelemetry/context-async-hooks@latest typescript@latest); fi
cp "$root/scripts/packed-install/main.ts" "$root/scripts/packed-install/tsconfig.json" "$work/app/"
cd "$work/app"
echo '{ "name": "packed-install-check", "private": true, "type": "module" }' >package.json
say "node $(node --version): npm install of $(ls "$work/tarballs" | tr '\n' ' ')with ${otel[*]}"
if ! npm install --no-audit --no-fund "$work"/tarballs/*.tgz inversify reflect-metadata zod @opentelemetry/api "${otel[@]}" >npm.log 2>&1; then
  cat npm.log >&2
  say "error: plain npm install of the packed packages failed on node $(node --version)"
  exit 1
fi
say "installed: $(node -p "const l=require('./package-lock.json').packages;['@opentelemetry/api','@opentelemetry/sdk-trace-base','@opentelemetry/context-async-hooks','typescript'].map(n=>n+'@'+l['node_modules/'+n].version).join(' ')")"
npx --no-install tsc -p tsconfig.json || { say "error: the program does not type-check against the packed packages"; exit 1; }
node dist/main.js
# The command line as a user installs it: the packed @ktransport/cli's bin answers --help.
help="$(npx --no-install ktransport --help)" || { say "error: ktransport --help failed from the packed @ktransport/cli"; exit 1; }
[[ "$help" == *publish* && "$help" == *tail* && "$help" == *request* && "$help" == *asyncapi* ]] || { say "error: ktransport --help does not list its commands: $help"; exit 1; }
say "node $(node --version): ktransport --help from the packed @ktransport/cli lists publish, tail, request and asyncapi"
