# shellcheck shell=bash
# PostgreSQL 15: our own cluster in .stack/postgres (not Debian's 15/main), 127.0.0.1:5432,
# wal_level=logical. Databases salesdb (sources, ingest/sql/*.sql) and tributary (catalog, state).

PG_HOME="$(svc_dir postgres)"
PG_LOG="$(svc_log postgres)"
PG_SQL_DIR="$REPO_DIR/ingest/sql"

# Run a command as the `postgres` OS user when we are root (initdb and postgres refuse root),
# from / (the clone may not be readable by that user).
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# The real directory that holds the cluster. Normally .stack/postgres itself; when we are root and
# the `postgres` user cannot reach the clone (e.g. a clone under /root), .stack/postgres becomes a
# symlink to /var/lib/tributary-stack/<hash>/postgres.
pg_home_real() { readlink -f "$PG_HOME"; }
pg_data() { echo "$(pg_home_real)/data"; }
# the server log by its real path (pg_ctl opens it as the postgres user); same file as $PG_LOG
pg_log_real() { echo "$(pg_home_real)/postgres.log"; }
pg_sock_dir() {
  local d
  d="$(pg_home_real)/run"
  # unix socket paths are limited to ~107 bytes
  if ((${#d} > 90)); then
    d="/tmp/tributary-pg-$(printf '%s' "$REPO_DIR" | cksum | cut -d' ' -f1)"
  fi
  echo "$d"
}

pg_psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "$(pg_sock_dir)" -p "$PG_PORT" -U postgres "$@"; }
pg_psql_app() {
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 \
    -h "$BIND" -p "$PG_PORT" -U "$PG_USER" "$@"
}

pg_running() {
  local d
  d=$(pg_data)
  [[ -s $d/postmaster.pid ]] && proc_alive "$(head -n1 "$d/postmaster.pid")"
}

pg_prepare_dirs() {
  local step="postgres: prepare data dir"
  mkdir -p "$STACK_DIR"
  if [[ ! -e $PG_HOME ]]; then
    mkdir -p "$PG_HOME"
  fi
  if ((EUID == 0)); then
    chown postgres:postgres "$(pg_home_real)"
    if ! runuser -u postgres -- test -w "$(pg_home_real)"; then
      [[ -L $PG_HOME ]] && fail "$step" "" "postgres user cannot write $(pg_home_real)"
      local alt
      alt="/var/lib/tributary-stack/$(printf '%s' "$REPO_DIR" | cksum | cut -d' ' -f1)/postgres"
      warn "the postgres OS user cannot reach $PG_HOME; keeping the cluster in $alt (symlinked)"
      if [[ -e $alt ]]; then
        # left by an earlier clone at the same path whose .stack/ is gone: start afresh
        if [[ -s $alt/data/postmaster.pid ]] && proc_alive "$(head -n1 "$alt/data/postmaster.pid")"; then
          fail "$step" "$alt/postgres.log" "a Postgres from an earlier clone still runs on $alt/data; stop it first"
        fi
        log "postgres: removing the cluster an earlier clone left in $alt"
        rm -rf "$alt"
      fi
      mkdir -p "$alt"
      chown postgres:postgres "$alt"
      if [[ -f $PG_HOME/pid || -e $PG_HOME/data ]]; then
        fail "$step" "" "$PG_HOME has content but is unreachable by the postgres user"
      fi
      rm -rf "$PG_HOME"
      ln -s "$alt" "$PG_HOME"
    fi
  fi
  local sock
  sock=$(pg_sock_dir)
  mkdir -p "$sock"
  ((EUID == 0)) && chown postgres:postgres "$sock"
  touch "$PG_LOG"
  ((EUID == 0)) && chown postgres:postgres "$PG_LOG"
  return 0
}

# Debian's own cluster (pg_ctlcluster 15 main) must not hold our port: stop it (root) or fail.
pg_stop_system_cluster() {
  command -v pg_lsclusters >/dev/null || return 0
  local ver name port status
  while read -r ver name port status _; do
    [[ $port == "$PG_PORT" && $status == online* ]] || continue
    if ((EUID == 0)); then
      log "postgres: stopping Debian's system cluster $ver/$name on port $port (it would hold $PG_PORT)"
      run_step "postgres: stop system cluster $ver/$name" "$PG_LOG" pg_ctlcluster "$ver" "$name" stop
    else
      fail "postgres: system cluster" "" \
        "Debian's cluster $ver/$name is running on port $port; stop it: sudo pg_ctlcluster $ver $name stop"
    fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
}

pg_write_conf() {
  local d
  d=$(pg_data)
  cat >"$d/tributary.conf" <<EOF
# Written by dev/svc/postgres.sh on every dev/up; edit the script, not this file.
listen_addresses = '$BIND'
port = $PG_PORT
unix_socket_directories = '$(pg_sock_dir)'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
# A replication slot whose reader (Debezium) is gone may hold at most this much WAL; past it the
# slot is invalidated (Debezium then re-snapshots) instead of filling the disk.
max_slot_wal_keep_size = 4GB
max_connections = 200
# The catalog, the marts' kept state (a row per current sale) and the source database share this
# server. At 10 000 changes/s for 10 minutes freshness p50 was 49.6 s with 128 MB (the default),
# 24.8 s with 1 GB (bench/results/cdc-2026-12-05-{d82d889,564012d}-10k-10min.md, one run each). 4 GB
# did no better (cdc-2026-12-07-eb5e10b-10k-10min.md).
shared_buffers = 1GB
# Fewer checkpoints (and so fewer full-page writes: the first change to a page after each one
# writes the whole page into the WAL) under a sustained write load. At 10 000 changes/s the WAL
# grows ~9 MB/s; with 4 GB a checkpoint was forced every ~4 minutes, and the marts' kept-state
# commits (random updates of a multi-million-row table) slowed after each.
max_wal_size = 8GB
checkpoint_timeout = 15min
# The first change to a page after a checkpoint writes the whole page into the WAL; compressed,
# those images cost less WAL to write, fsync and decode (Debezium's walsender reads it all).
# At 10 000 changes/s the WAL grew ~18 MB/s uncompressed and forced a checkpoint every ~2 min.
wal_compression = lz4
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  ((EUID == 0)) && chown postgres:postgres "$d/tributary.conf"
  grep -q "^include_if_exists = 'tributary.conf'" "$d/postgresql.conf" ||
    as_pg sh -c "echo \"include_if_exists = 'tributary.conf'\" >> '$d/postgresql.conf'"
}

postgres_up() {
  local step="postgres"
  if [[ ! -x $PG_BIN/postgres ]]; then
    ensure_apt "postgres: install" "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR"
  fi
  export PATH="$PG_BIN:$PATH"
  pg_stop_system_cluster
  pg_prepare_dirs
  local data
  data=$(pg_data)

  if pg_running; then
    log "postgres: already running (pid $(head -n1 "$data/postmaster.pid")), checking health"
  else
    require_port_free "postgres: start" "$PG_LOG" "$PG_PORT"
    if [[ ! -s $data/PG_VERSION ]]; then
      log "postgres: initdb $data"
      mkdir -p "$data"
      ((EUID == 0)) && chown postgres:postgres "$data"
      run_step "postgres: initdb" "$PG_LOG" as_pg "$PG_BIN/initdb" -D "$data" -U postgres \
        -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    fi
    pg_write_conf
    log "postgres: starting on $BIND:$PG_PORT (log: $PG_LOG)"
    run_step "postgres: start" "$PG_LOG" as_pg setsid "$PG_BIN/pg_ctl" start -D "$data" -l "$(pg_log_real)" -w -t 60
  fi
  head -n1 "$data/postmaster.pid" >"$PG_HOME/pid"

  WAIT_PIDFILE="$PG_HOME/pid" wait_for "postgres: health" "$PG_LOG" 60 "pg_isready on $BIND:$PG_PORT" \
    "$PG_BIN/pg_isready" -q -h "$BIND" -p "$PG_PORT"

  local wal
  wal=$(pg_psql_admin -d postgres -Atc 'SHOW wal_level') || fail "postgres: health" "$PG_LOG" "cannot connect as postgres via $(pg_sock_dir)"
  [[ $wal == logical ]] || fail "postgres: config" "$PG_LOG" \
    "wal_level is '$wal', not 'logical': restart it with dev/down postgres && dev/up postgres"

  local sqllog="$PG_HOME/sql.log"
  run_step "postgres: roles and databases (ingest/sql/bootstrap.sql)" "$sqllog" \
    pg_psql_admin -d postgres -f "$PG_SQL_DIR/bootstrap.sql"
  run_step "postgres: schema (ingest/sql/schema.sql)" "$sqllog" \
    pg_psql_app -d "$PG_SOURCE_DB" -f "$PG_SQL_DIR/schema.sql"
  run_step "postgres: sample data (ingest/sql/sample.sql)" "$sqllog" \
    pg_psql_app -d "$PG_SOURCE_DB" -f "$PG_SQL_DIR/sample.sql"

  local counts
  counts=$(pg_psql_app -d "$PG_SOURCE_DB" -Atc \
    "SELECT format('%s cities, %s salesmen, %s sales', (SELECT count(*) FROM city), (SELECT count(*) FROM salesman), (SELECT count(*) FROM sale))") ||
    fail "postgres: verify" "$sqllog" "cannot query salesdb as $PG_USER"
  pg_psql_app -d "$PG_CATALOG_DB" -Atc 'SELECT 1' >/dev/null ||
    fail "postgres: verify" "$sqllog" "cannot connect to database $PG_CATALOG_DB as $PG_USER"
  log "postgres: salesdb has $counts"
  mark_ready "postgres up $BIND:$PG_PORT"
}

postgres_down() {
  export PATH="$PG_BIN:$PATH"
  [[ -e $PG_HOME ]] || return 0
  if pg_running; then
    log "postgres: stopping"
    run_step "postgres: stop" "$PG_LOG" as_pg "$PG_BIN/pg_ctl" stop -D "$(pg_data)" -m fast -w -t 60
  fi
  rm -f "$PG_HOME/pid"
}

postgres_status() {
  local state=down pid="" health="-"
  if [[ -e $PG_HOME ]] && pg_running; then
    pid=$(head -n1 "$(pg_data)/postmaster.pid")
    state=running
    if "$PG_BIN/pg_isready" -q -h "$BIND" -p "$PG_PORT"; then health=ok; else health=FAIL; fi
  fi
  status_line postgres "$state" "$pid" "$health" "$BIND:$PG_PORT" "$PG_LOG" "$(pg_data 2>/dev/null || echo "$PG_HOME/data")"
  if [[ $health == ok ]]; then
    status_detail "psql postgres://$PG_USER:$PG_PASSWORD@$BIND:$PG_PORT/$PG_SOURCE_DB  (catalog db: $PG_CATALOG_DB)"
    local slots
    slots=$(pg_psql_app -d "$PG_SOURCE_DB" -Atc "SELECT string_agg(slot_name || CASE WHEN active THEN ' (active)' ELSE ' (inactive)' END, ', ') FROM pg_replication_slots" 2>/dev/null || true)
    status_detail "replication slots: ${slots:-none}"
  fi
}
