#!/usr/bin/env bash
# Installs the Debian packages the test suite's real servers and browser need (PostgreSQL,
# Dovecot IMAP, Chromium for the dashboard's browser tests), when they are missing. Needs root
# (or sudo); otherwise says what to install.
set -euo pipefail
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo_cmd=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo_cmd=(sudo -n)
else
  echo "install-system-packages: please install these Debian packages: ${need[*]}" >&2
  echo "  (the tests that need them will be skipped, loudly)" >&2
  exit 0
fi
echo "install-system-packages: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages may start system servers; the tests run their own, so stop them.
if command -v systemctl >/dev/null; then "${sudo_cmd[@]}" systemctl stop dovecot 2>/dev/null || true; fi
pkill -x dovecot 2>/dev/null || true
if command -v pg_ctlcluster >/dev/null; then
  for c in /etc/postgresql/*/main; do
    [ -d "$c" ] || continue
    v=$(basename "$(dirname "$c")")
    "${sudo_cmd[@]}" pg_ctlcluster "$v" main stop 2>/dev/null || true
  done
fi
