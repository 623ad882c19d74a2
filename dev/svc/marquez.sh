# shellcheck shell=bash
# Marquez, the OpenLineage server, on the JDK: the API server io.github.marquezproject:marquez-api
# from Maven Central (dev/marquez/pom.xml), main class marquez.MarquezApp, config
# dev/marquez/marquez.yml, its own database `marquez` on the stack's Postgres.
# API http://127.0.0.1:5000 (OpenLineage endpoint /api/v1/lineage), admin http://127.0.0.1:5001.
#
# Opt-in: `STACK_MARQUEZ=1 dev/up` (or `dev/up` then `STACK_MARQUEZ=1 dev/up`) starts it after the
# rest of the stack; dev/down stops it. Not in the default service list because the Maven registry
# reachable from this project's machines does not serve marquez-api (checked 2026-11-25: "Could
# not find artifact io.github.marquezproject:marquez-api:jar" — see lineage/README.md); where it
# is served, this starts the real server.

MARQUEZ_VERSION=$(sed -n 's:.*<marquez.version>\(.*\)</marquez.version>.*:\1:p' "$DEV_DIR/marquez/pom.xml")
MARQUEZ_PORT=$((5000 + ${STACK_PORT_OFFSET:-0}))
MARQUEZ_ADMIN_PORT=$((5001 + ${STACK_PORT_OFFSET:-0}))
MARQUEZ_DB=marquez
MARQUEZ_HOME="$(svc_dir marquez)"
MARQUEZ_LOG="$(svc_log marquez)"
MARQUEZ_DIST="$CACHE_DIR/marquez-$MARQUEZ_VERSION"
MARQUEZ_URL="http://$BIND:$MARQUEZ_PORT"

marquez_ensure_jars() {
  local step="marquez: download marquez-api $MARQUEZ_VERSION (mvn)" logfile="$STACK_DIR/mvn-marquez.log" sum
  sum=$(cksum <"$DEV_DIR/marquez/pom.xml" | cut -d' ' -f1)
  [[ -f $MARQUEZ_DIST/.complete && $(<"$MARQUEZ_DIST/.complete") == "$sum" ]] && return 0
  [[ -n $(java_bin) ]] || ensure_apt "marquez: install java" openjdk-17-jre-headless
  command -v mvn >/dev/null || ensure_apt "marquez: install maven" maven
  log "$step into $MARQUEZ_DIST (log: $logfile)"
  rm -rf "$MARQUEZ_DIST.tmp"
  mkdir -p "$MARQUEZ_DIST.tmp"
  run_step "$step" "$logfile" mvn -B -q -f "$DEV_DIR/marquez/pom.xml" \
    -Dmaven.repo.local="$CACHE_DIR/m2" -Dlibs.dir="$MARQUEZ_DIST.tmp/libs" \
    dependency:copy-dependencies
  rm -rf "$MARQUEZ_DIST"
  mv "$MARQUEZ_DIST.tmp" "$MARQUEZ_DIST"
  echo "$sum" >"$MARQUEZ_DIST/.complete"
}

marquez_healthy() { curl -fsS -m 5 "$MARQUEZ_URL/api/v1/namespaces" >/dev/null; }

marquez_up() {
  local pidfile
  pidfile=$(svc_pidfile marquez)
  mkdir -p "$MARQUEZ_HOME"
  if pid_alive "$pidfile"; then
    log "marquez: already running (pid $(<"$pidfile")), checking health"
  else
    marquez_ensure_jars
    require_port_free "marquez: start" "$MARQUEZ_LOG" "$MARQUEZ_PORT"
    require_port_free "marquez: start" "$MARQUEZ_LOG" "$MARQUEZ_ADMIN_PORT"
    run_step "marquez: database" "$MARQUEZ_LOG" pg_psql_app -d "$PG_CATALOG_DB" -f "$DEV_DIR/marquez/init-db.sql"
    log "marquez: starting on $MARQUEZ_URL (log: $MARQUEZ_LOG)"
    MARQUEZ_BIND=$BIND MARQUEZ_PORT=$MARQUEZ_PORT MARQUEZ_ADMIN_PORT=$MARQUEZ_ADMIN_PORT \
      POSTGRES_HOST=$BIND POSTGRES_PORT=$PG_PORT POSTGRES_DB=$MARQUEZ_DB \
      POSTGRES_USER=$PG_USER POSTGRES_PASSWORD=$PG_PASSWORD \
      start_bg marquez "$(java_bin)" -Xms128m -Xmx512m -Duser.timezone=UTC \
      -cp "$MARQUEZ_DIST/libs/*" marquez.MarquezApp server "$DEV_DIR/marquez/marquez.yml"
  fi
  WAIT_PIDFILE=$pidfile wait_for "marquez: health" "$MARQUEZ_LOG" 180 "$MARQUEZ_URL/api/v1/namespaces" marquez_healthy
  mark_ready "marquez up $MARQUEZ_URL (OpenLineage: $MARQUEZ_URL/api/v1/lineage)"
}

marquez_down() { stop_pid marquez 30; }

marquez_status() {
  local pidfile state=down pid="" health="-"
  pidfile=$(svc_pidfile marquez)
  if pid_alive "$pidfile"; then
    state=running
    pid=$(<"$pidfile")
    if marquez_healthy; then health=ok; else health=FAIL; fi
  fi
  status_line marquez "$state" "$pid" "$health" "$MARQUEZ_URL (API), admin :$MARQUEZ_ADMIN_PORT" "$MARQUEZ_LOG" \
    "Postgres database $MARQUEZ_DB"
  return 0
}
