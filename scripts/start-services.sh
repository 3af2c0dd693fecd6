# Sourced by `make test`: starts a throwaway PostgreSQL on loopback when the event-store tests can
# use one, and exports TASTEBUD_PG_URL. The server lives in /tmp and is stopped at shell exit.
if [ -z "${TASTEBUD_PG_URL:-}" ] && [ -x scripts/start_postgres.sh ]; then
  url=$(bash scripts/start_postgres.sh 2>/dev/null) && export TASTEBUD_PG_URL="$url"
fi
true
