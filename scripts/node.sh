#!/usr/bin/env bash
# A Node.js of a given major version for the project's scripts: the machine's own
# `node` when it is that major, otherwise the official binary that the npm
# registry's `node` package of that major installs, kept in .tools/node-<major>/
# (installed on first use, reused after; the exact version is the newest of that
# major on the day it was installed).
#
# Usage: scripts/node.sh <major> --bin-dir      prints a directory to put first in PATH
#        scripts/node.sh <major> [node args...]  runs that node
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
major="${1:?usage: scripts/node.sh <major> --bin-dir | [node args...]}"
shift
[[ "$major" =~ ^[0-9]+$ ]] || { echo "node.sh: major version must be a number, got '$major'" >&2; exit 2; }

machine="$(command -v node || true)"
if [[ -n "$machine" ]] && [[ "$("$machine" -p 'process.versions.node.split(".")[0]')" == "$major" ]]; then
  bin_dir="$(dirname "$machine")"
else
  prefix="$root/.tools/node-$major"
  bin_dir="$prefix/node_modules/.bin"
  if [[ ! -x "$bin_dir/node" ]] || [[ "$("$bin_dir/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null)" != "$major" ]]; then
    echo "node: installing Node.js $major from the npm registry (package node@$major) into .tools/node-$major/" >&2
    mkdir -p "$prefix"
    # The package's install script fetches the platform's official binary (node-<os>-<arch>) from the same registry.
    npm install --silent --no-audit --no-fund --no-save --prefix "$prefix" "node@$major" >&2
    [[ -x "$bin_dir/node" ]] || { echo "node.sh: node@$major installed no binary in $bin_dir" >&2; exit 1; }
    echo "node: $("$bin_dir/node" --version) ready in .tools/node-$major/" >&2
  fi
fi

if [[ "${1:-}" == "--bin-dir" ]]; then
  echo "$bin_dir"
else
  exec "$bin_dir/node" "$@"
fi
