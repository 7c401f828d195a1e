#!/usr/bin/env bash
# A PostgreSQL server for the tests; prints its URL on stdout (and nothing else; logs go to stderr).
#
#   scripts/postgres.sh [start]   print a reachable server's URL, starting a private one if need be
#   scripts/postgres.sh stop      stop the private server (if this script started one)
#   scripts/postgres.sh status    print the private server's URL if it runs, else exit 1
#
# `start` takes, in order:
#   1. CALSYNC_TEST_PG_URL, when it is set and a server answers there;
#   2. a server on 127.0.0.1:5432 that lets user postgres in without a password;
#   3. a private cluster in $ROOT/.pgdata (or CALSYNC_PGDATA) on a free loopback port, trust auth,
#      made with initdb / pg_ctl (from /usr/lib/postgresql/*/bin, CALSYNC_PG_BINDIR or PATH);
#      when there are none and we are root on a Debian-like system, apt installs postgresql first.
# CALSYNC_PG_PRIVATE=1 skips 1 and 2 (always the private cluster). Idempotent: a running private
# cluster is reused. As root, the cluster belongs to user postgres (made if missing): initdb refuses root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEFAULT_STATE="$ROOT/.pgdata"
STATE="${CALSYNC_PGDATA:-$DEFAULT_STATE}"   # ours alone: data/ (the cluster), server.log, port, lock
PG_USER="${CALSYNC_PG_OS_USER:-postgres}"  # the OS user that owns the cluster when we run as root
PORT_FIRST="${CALSYNC_PG_PORT:-55432}"     # the private server's preferred port (next free one if taken)

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- probing -----------------------------------------------------------------------------------

libpq_url() {  # SQLAlchemy spellings (postgresql+psycopg://) -> a URL libpq understands
  local url="$1"
  case "$url" in
    postgresql+*://*) url="postgresql://${url#*://}" ;;
    postgres://*) url="postgresql://${url#*://}" ;;
  esac
  printf '%s' "$url"
}

python_with_psycopg() {
  local py
  for py in "$ROOT/.venv/bin/python" python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import psycopg' >/dev/null 2>&1; then
      printf '%s' "$py"
      return 0
    fi
  done
  return 1
}

# Succeeds when a server at URL accepts a connection and answers a query (so: auth works too).
probe() {
  local url py
  url="$(libpq_url "$1")"
  if command -v psql >/dev/null 2>&1; then
    PGCONNECT_TIMEOUT=3 psql -X -A -t -q -w -d "$url" -c 'select 1' >/dev/null 2>&1
  elif py="$(python_with_psycopg)"; then
    "$py" - "$url" >/dev/null 2>&1 <<'EOF'
import sys
import psycopg
with psycopg.connect(sys.argv[1], connect_timeout=3) as conn:
    conn.execute("select 1")
EOF
  elif command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -t 3 -d "$url" >/dev/null 2>&1
  else
    log "neither psql, psycopg nor pg_isready found: cannot check $url"
    return 1
  fi
}

port_in_use() {  # something accepts TCP connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1
}

# --- the private cluster -----------------------------------------------------------------------

DATA="$STATE/data"

as_owner() {  # run a command as the cluster's owner (ourselves unless we are root)
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    "$@"
  fi
}

find_bindir() {  # a directory with initdb, pg_ctl and postgres; the cluster's major version if given
  local want="${1:-}" dir candidates=() found
  [ -n "${CALSYNC_PG_BINDIR:-}" ] && candidates+=("$CALSYNC_PG_BINDIR")
  # newest version first
  while IFS= read -r dir; do candidates+=("$dir"); done < <(
    ls -d /usr/lib/postgresql/*/bin /usr/pgsql-*/bin /usr/local/pgsql/bin 2>/dev/null | sort -V -r)
  for found in initdb pg_ctl; do
    if command -v "$found" >/dev/null 2>&1; then
      candidates+=("$(dirname "$(readlink -f "$(command -v "$found")")")")
    fi
  done
  for dir in "${candidates[@]}"; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ] || continue
    if [ -n "$want" ]; then
      local version
      version="$("$dir/postgres" --version 2>/dev/null | sed -E 's/^[^0-9]*([0-9]+).*/\1/')"
      [ "$version" = "$want" ] || continue
    fi
    printf '%s' "$dir"
    return 0
  done
  return 1
}

install_postgres() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "no PostgreSQL server programs (initdb, pg_ctl) found, and cannot install them (needs root and apt-get).
  Install PostgreSQL (e.g. apt-get install postgresql), set CALSYNC_PG_BINDIR to its bin directory,
  or point CALSYNC_TEST_PG_URL at a server."
  fi
  log "no initdb/pg_ctl found: installing PostgreSQL with apt-get (takes a minute)"
  local t=()
  command -v timeout >/dev/null 2>&1 && t=(timeout 100)
  export DEBIAN_FRONTEND=noninteractive
  "${t[@]}" apt-get update -qq >&2 || die "apt-get update failed"
  "${t[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2 </dev/null \
    || die "apt-get install postgresql failed"
}

read_port() {  # the port of a running private server, from its postmaster.pid (4th line)
  [ -f "$DATA/postmaster.pid" ] && sed -n 4p "$DATA/postmaster.pid" 2>/dev/null
}

private_url() { printf 'postgresql://postgres@127.0.0.1:%s/postgres' "$1"; }

running_private_url() {  # the private server's URL when it runs and answers
  local port
  port="$(read_port || true)"
  [ -n "$port" ] && probe "$(private_url "$port")" && private_url "$port"
}

ensure_owner() {  # as root: a non-root OS user to own the cluster
  [ "$(id -u)" -eq 0 ] || return 0
  command -v runuser >/dev/null 2>&1 || die "runuser is needed to run initdb/pg_ctl as $PG_USER when root"
  if ! id -u "$PG_USER" >/dev/null 2>&1; then
    log "creating system user $PG_USER to own the test cluster"
    useradd --system --user-group --home-dir "$STATE" --shell /usr/sbin/nologin "$PG_USER" >&2 \
      || die "could not create user $PG_USER"
  fi
}

init_cluster() {
  local bindir="$1"
  if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA" 2>/dev/null)" ] && [ ! -f "$DATA/PG_VERSION" ]; then
    log "removing a half-made cluster in $DATA"
    rm -rf "$DATA"
  fi
  mkdir -p "$DATA"
  [ "$(id -u)" -eq 0 ] && chown -R "$PG_USER:" "$STATE"
  chmod 700 "$STATE" "$DATA"
  if [ "$(id -u)" -eq 0 ] && ! runuser -u "$PG_USER" -- test -w "$DATA"; then
    die "user $PG_USER cannot reach $DATA (a parent directory is closed to it): set CALSYNC_PGDATA to a directory it can use"
  fi
  log "initdb $DATA ($("$bindir/postgres" --version))"
  if ! as_owner "$bindir/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
      >"$STATE/initdb.log" 2>&1; then
    cat "$STATE/initdb.log" >&2
    die "initdb failed"
  fi
  # A throw-away test server: loopback only, no durability (a crash loses nothing we need), room for
  # concurrency tests. The unix socket lives in the data directory when the path is short enough.
  local socket_dir="''"
  [ "${#DATA}" -lt 90 ] && socket_dir="'$DATA'"
  cat >>"$DATA/postgresql.conf" <<EOF

# --- calsync test server (scripts/postgres.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = $socket_dir
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
EOF
}

start_private() {
  local url
  if url="$(running_private_url)"; then
    log "private server already running"
    printf '%s\n' "$url"
    return 0
  fi
  local version="" bindir
  if [ -f "$DATA/PG_VERSION" ]; then
    version="$(cat "$DATA/PG_VERSION")"
  fi
  if ! bindir="$(find_bindir "$version")"; then
    if [ -n "$version" ] && bindir="$(find_bindir)"; then
      if [ "$STATE" != "$DEFAULT_STATE" ]; then
        die "$DATA is a PostgreSQL $version cluster but only $("$bindir/postgres" --version) is installed"
      fi
      log "$DATA holds a PostgreSQL $version cluster, but that version is not installed: making a new one"
      rm -rf "$DATA"
    else
      install_postgres
      bindir="$(find_bindir)" || die "PostgreSQL installed, but initdb/pg_ctl still not found"
    fi
  fi
  ensure_owner
  [ -f "$DATA/PG_VERSION" ] || init_cluster "$bindir"

  local port attempt
  port="$(cat "$STATE/port" 2>/dev/null || echo "$PORT_FIRST")"
  for attempt in 1 2 3 4 5; do
    while port_in_use "$port"; do port=$((port + 1)); done
    log "starting private server on 127.0.0.1:$port (log: $STATE/server.log)"
    if as_owner "$bindir/pg_ctl" -D "$DATA" -l "$STATE/server.log" -w -t 60 -o "-p $port" start >&2 9>&-; then
      printf '%s\n' "$port" >"$STATE/port"
      url="$(private_url "$port")"
      local i
      for i in $(seq 1 50); do
        probe "$url" && { printf '%s\n' "$url"; return 0; }
        sleep 0.2
      done
      tail -n 20 "$STATE/server.log" >&2 || true
      die "server started on port $port but does not answer at $url"
    fi
    tail -n 20 "$STATE/server.log" >&2 || true
    log "start attempt $attempt failed"
    port=$((port + 1))
  done
  die "could not start the private PostgreSQL server (see $STATE/server.log)"
}

stop_private() {
  if [ ! -f "$DATA/postmaster.pid" ]; then
    log "private server not running"
    return 0
  fi
  local version bindir
  version="$(cat "$DATA/PG_VERSION" 2>/dev/null || true)"
  bindir="$(find_bindir "$version")" || die "pg_ctl for PostgreSQL $version not found"
  as_owner "$bindir/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >&2
}

with_lock() {  # one start/stop at a time for this state directory (parallel CI jobs)
  mkdir -p "$STATE"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE/lock"
    flock -w 150 9 || die "timed out waiting for $STATE/lock"
  fi
  "$@"
}

start() {
  if [ "${CALSYNC_PG_PRIVATE:-}" != 1 ]; then
    if [ -n "${CALSYNC_TEST_PG_URL:-}" ]; then
      if probe "$CALSYNC_TEST_PG_URL"; then
        printf '%s\n' "$CALSYNC_TEST_PG_URL"
        return 0
      fi
      log "CALSYNC_TEST_PG_URL is set, but no server answers there; looking for another one"
    fi
    local local_url="postgresql://postgres@127.0.0.1:5432/postgres"
    if probe "$local_url"; then
      log "using the server on 127.0.0.1:5432"
      printf '%s\n' "$local_url"
      return 0
    fi
  fi
  with_lock start_private
}

case "${1:-start}" in
  start) start ;;
  stop) if [ -d "$STATE" ]; then with_lock stop_private; else log "no private server in $STATE"; fi ;;
  status) running_private_url && echo || { log "private server not running"; exit 1; } ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
