# Sourced by `make test`: starts a throwaway PostgreSQL on loopback when the event-store tests can
# use one, and exports TASTEBUD_PG_URL. The server lives in /tmp and is stopped at shell exit.
# Without PostgreSQL the tests that need it skip, or fail under TASTEBUD_REQUIRE_SYSTEM=1 (CI), where
# the reason start_postgres.sh gives is shown too.
if [ -z "${TASTEBUD_PG_URL:-}" ] && [ -x scripts/start_postgres.sh ]; then
  if [ "${TASTEBUD_REQUIRE_SYSTEM:-}" = 1 ]; then
    url=$(bash scripts/start_postgres.sh) && export TASTEBUD_PG_URL="$url"
  else
    url=$(bash scripts/start_postgres.sh 2>/dev/null) && export TASTEBUD_PG_URL="$url"
  fi
fi
true
