#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1 (data in /tmp) and print its URL on stdout, e.g.
#   export TASTEBUD_PG_URL=$(bash scripts/start_postgres.sh)
# The server stops (and its folder is removed) once the calling shell exits, or with
#   pg_ctl -D <dir>/data stop   (the folder is printed on stderr).
# Needs Debian's postgresql package; as root the server runs as the postgres user.
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL is not installed (apt-get install -y postgresql)" >&2
  exit 1
fi
port=${TASTEBUD_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=$(mktemp -d /tmp/tastebud-pg.XXXXXX)
run=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  run=(runuser -u postgres --)
fi
"${run[@]}" "$bin/initdb" -D "$dir/data" -U tastebud --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
"${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c synchronous_commit=on" start >/dev/null
"${run[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U tastebud tastebud
# stop with the shell that asked for it: the caller of $( ), or TASTEBUD_PG_OWNER_PID
owner=${TASTEBUD_PG_OWNER_PID:-$(ps -o ppid= -p "$PPID" 2>/dev/null | tr -d ' ' || echo "$PPID")}
[ -n "$owner" ] || owner=$PPID
setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 5; done; ${run[*]} $bin/pg_ctl -D $dir/data -m fast stop; rm -rf $dir" \
  </dev/null >/dev/null 2>&1 &
echo "started PostgreSQL in $dir on port $port (stops when process $owner exits)" >&2
echo "postgresql://tastebud@127.0.0.1:$port/tastebud"
