#!/usr/bin/env bash
# The redis backend's tests start their own redis-server (tests/redis_server.py); this makes
# sure the binary is there, installing Debian's package when it is not.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is not installed and apt-get is not available: install Redis (>= 6) and retry" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing redis-server (Debian package) for the redis backend's tests..."
$SUDO apt-get install -y -q redis-server >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null 2>&1
  $SUDO apt-get install -y -q redis-server >/dev/null
}
command -v redis-server >/dev/null
