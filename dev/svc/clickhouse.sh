# shellcheck shell=bash
# ClickHouse from Debian (clickhouse-server 18.16): our own server process with dev/clickhouse/
# config, data in .stack/clickhouse/data, HTTP 127.0.0.1:8123, native TCP 127.0.0.1:19000.
# Debian's own clickhouse-server service is never started (policy-rc.d guard during install).

CH_HOME="$(svc_dir clickhouse)"
CH_LOG="$(svc_log clickhouse)"
CH_CONF_SRC="$REPO_DIR/dev/clickhouse"
CH_URL="http://$BIND:$CH_HTTP_PORT"

ch_server_bin() { command -v clickhouse-server || { [[ -x /usr/sbin/clickhouse-server ]] && echo /usr/sbin/clickhouse-server; } || true; }

# Install clickhouse-server/-client without letting the package start its own service (it would
# take ports 8123 and 9000 with /etc/clickhouse-server/config.xml).
ch_install() {
  local need=0
  [[ -n $(ch_server_bin) ]] || need=1
  command -v clickhouse-client >/dev/null || need=1
  if ((need)); then
    ensure_apt_no_start "clickhouse: install" clickhouse-server clickhouse-client
  fi
  ch_stop_system_service
}

# Debian's service (started by hand, by an install without the guard, or at boot) must not run.
ch_stop_system_service() {
  local pidfile=/var/run/clickhouse-server/clickhouse-server.pid pid
  [[ -s $pidfile ]] || return 0
  pid=$(<"$pidfile")
  kill -0 "$pid" 2>/dev/null || return 0
  if ((EUID == 0)); then
    log "clickhouse: stopping Debian's clickhouse-server service (pid $pid)"
    run_step "clickhouse: stop system service" "$CH_LOG" /etc/init.d/clickhouse-server stop || true
  else
    fail "clickhouse: system service" "" "Debian's clickhouse-server service runs (pid $pid): sudo service clickhouse-server stop"
  fi
}

ch_write_conf() {
  mkdir -p "$CH_HOME/data/tmp" "$CH_HOME/data/user_files" "$CH_HOME/data/format_schemas"
  sed -e "s|@HOME@|$CH_HOME|g" -e "s|@BIND@|$BIND|g" -e "s|@HTTP_PORT@|$CH_HTTP_PORT|g" \
    -e "s|@TCP_PORT@|$CH_TCP_PORT|g" -e "s|@INTERSERVER_PORT@|$CH_INTERSERVER_PORT|g" \
    -e "s|@CONF_DIR@|$CH_HOME|g" "$CH_CONF_SRC/config.xml" >"$CH_HOME/config.xml"
  cp "$CH_CONF_SRC/users.xml" "$CH_HOME/users.xml"
}

ch_ping() { [[ $(curl -fsS -m 3 "$CH_URL/ping" 2>/dev/null) == Ok.* ]]; }
ch_query() { curl -fsS -m 30 --data-binary "$1" "$CH_URL/"; }

clickhouse_up() {
  local pidfile
  pidfile=$(svc_pidfile clickhouse)
  mkdir -p "$CH_HOME"
  ch_install
  if pid_alive "$pidfile"; then
    log "clickhouse: already running (pid $(<"$pidfile")), checking health"
    # Users (dev/clickhouse/users.xml) are reloaded by the running server within seconds.
    cp "$CH_CONF_SRC/users.xml" "$CH_HOME/users.xml"
  else
    require_port_free "clickhouse: start" "$CH_LOG" "$CH_HTTP_PORT"
    require_port_free "clickhouse: start" "$CH_LOG" "$CH_TCP_PORT"
    ch_write_conf
    log "clickhouse: starting, HTTP $BIND:$CH_HTTP_PORT, native $BIND:$CH_TCP_PORT (log: $CH_LOG, server log: $CH_HOME/clickhouse-server.log)"
    (cd "$CH_HOME" && start_bg clickhouse "$(ch_server_bin)" --config-file="$CH_HOME/config.xml")
  fi
  WAIT_PIDFILE=$pidfile wait_for "clickhouse: health" "$CH_HOME/clickhouse-server.err.log" 60 "$CH_URL/ping" ch_ping
  run_step "clickhouse: create database $CH_DATABASE" "$CH_LOG" ch_query "CREATE DATABASE IF NOT EXISTS $CH_DATABASE"
  local v
  v=$(clickhouse-client --host "$BIND" --port "$CH_TCP_PORT" -q "SELECT version()" 2>>"$CH_LOG") ||
    fail "clickhouse: native protocol check" "$CH_LOG" "clickhouse-client --port $CH_TCP_PORT failed"
  [[ $(ch_query "EXISTS DATABASE $CH_DATABASE" 2>/dev/null) == 1* ]] ||
    [[ $(ch_query "SELECT count() FROM system.databases WHERE name = '$CH_DATABASE'") == 1* ]] ||
    fail "clickhouse: verify" "$CH_LOG" "database $CH_DATABASE missing"
  mark_ready "clickhouse up http://$BIND:$CH_HTTP_PORT (native $BIND:$CH_TCP_PORT, version $v, database $CH_DATABASE)"
}

clickhouse_down() {
  stop_pid clickhouse 60
}

clickhouse_status() {
  local pidfile state=down pid="" health="-"
  pidfile=$(svc_pidfile clickhouse)
  if pid_alive "$pidfile"; then
    state=running
    pid=$(<"$pidfile")
    if ch_ping; then health=ok; else health=FAIL; fi
  fi
  status_line clickhouse "$state" "$pid" "$health" "$CH_URL (HTTP), $BIND:$CH_TCP_PORT (native)" \
    "$CH_LOG, $CH_HOME/clickhouse-server{,.err}.log" "$CH_HOME/data"
  if [[ $health == ok ]]; then
    local tables
    tables=$(ch_query "SELECT groupArray(name) FROM system.tables WHERE database = '$CH_DATABASE'" 2>/dev/null || true)
    status_detail "clickhouse-client --port $CH_TCP_PORT; database $CH_DATABASE tables: ${tables:-?}"
  fi
}
