#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 with trust authentication for
# loopback, as the saver-service tests expect: starts the Debian cluster if it is
# installed but stopped, installs it (apt-get) if it is missing.
# Usage: scripts/postgres.sh ensure
set -euo pipefail

say() { echo "postgres: $*" >&2; }
answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

wait_ready() {
  for _ in $(seq 1 60); do answers && return 0; sleep 0.5; done
  say "error: PostgreSQL does not answer on 127.0.0.1:5432 after starting it"
  exit 1
}

ensure() {
  answers && return 0
  if ! command -v pg_ctlcluster >/dev/null; then
    say "installing PostgreSQL with apt-get"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    local hba
    hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)"
    # Tests connect as postgres over loopback without a password.
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" || as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  say "starting cluster $version/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  wait_ready
}

case "${1:-}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
