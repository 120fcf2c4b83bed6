#!/usr/bin/env bash
# Makes sure the server binaries that `make dev` and `make test` start are installed:
# PostgreSQL (initdb, pg_ctl, pg_basebackup, postgres, psql) and redis-server; with
# --test also Chromium, which the tests drive headless (the Flower dashboard, a page on
# another origin), and Node.js with npm (the generated TypeScript client's journey).
# As root on Debian/Ubuntu they are installed with apt-get; otherwise we say what to install.
set -euo pipefail
for_tests=0
[ "${1:-}" = "--test" ] && for_tests=1

have_postgres() {
  local dirs=()
  if command -v pg_ctl >/dev/null; then dirs+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")"); fi
  dirs+=(/usr/lib/postgresql/*/bin /usr/pgsql-*/bin)
  for dir in "${dirs[@]}"; do
    local complete=1
    for tool in initdb pg_ctl pg_basebackup postgres psql; do
      [ -x "$dir/$tool" ] || complete=0
    done
    [ "$complete" = 1 ] && return 0
  done
  return 1
}

missing=()
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ "$for_tests" = 1 ]; then
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
  # Node.js and npm: the generated TypeScript client the tests build and drive.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  exit 0
fi

echo "Missing system packages: ${missing[*]}." >&2
echo "Install them and run again, e.g. on Debian/Ubuntu: sudo apt-get install ${missing[*]}" >&2
echo "(Fedora: sudo dnf install postgresql-server redis chromium nodejs npm; macOS: brew install postgresql@15 redis chromium node)" >&2
exit 1
