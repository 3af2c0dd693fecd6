#!/usr/bin/env bash
# Debian packages the test suite drives for real: chromium (browser tests), postgresql (event
# store), wrk (load tests). Installs only what is missing; without root it says what to install
# (and fails under TASTEBUD_REQUIRE_SYSTEM=1).
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${need[*]} (run: sudo apt-get install -y ${need[*]})" >&2
  # the tests that need them skip, except where TASTEBUD_REQUIRE_SYSTEM=1 (CI) says they must run
  [ "${TASTEBUD_REQUIRE_SYSTEM:-}" = 1 ] && exit 1
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
