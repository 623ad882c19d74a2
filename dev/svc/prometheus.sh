# shellcheck shell=bash
# Prometheus from Debian (2.42): our own process with dev/prometheus/{prometheus.yml,rules.yml},
# data in .stack/prometheus/data, UI and API on 127.0.0.1:9090. It scrapes Tributary's services
# (dev/app) and evaluates the alerting rules; Debian's own prometheus service is never started.

PROM_HOME="$(svc_dir prometheus)"
PROM_LOG="$(svc_log prometheus)"
PROM_URL="http://$BIND:$PROM_PORT"

prom_ready() { curl -fsS -m 3 "$PROM_URL/-/ready" >/dev/null 2>&1; }

prometheus_up() {
  local pidfile
  pidfile=$(svc_pidfile prometheus)
  mkdir -p "$PROM_HOME/data"
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    ensure_apt_no_start "prometheus: install" prometheus
  fi
  sed -E "s|@[A-Z_]+_HOST@|$BIND|g" "$REPO_DIR/dev/prometheus/prometheus.yml" >"$PROM_HOME/prometheus.yml"
  cp "$REPO_DIR/dev/prometheus/rules.yml" "$PROM_HOME/rules.yml"
  run_step "prometheus: promtool check config" "$PROM_LOG" promtool check config "$PROM_HOME/prometheus.yml"
  if pid_alive "$pidfile"; then
    log "prometheus: already running (pid $(<"$pidfile")), reloading its config"
    curl -fsS -m 10 -X POST "$PROM_URL/-/reload" >>"$PROM_LOG" 2>&1 || true
  else
    require_port_free "prometheus: start" "$PROM_LOG" "$PROM_PORT"
    log "prometheus: starting on $PROM_URL (log: $PROM_LOG)"
    start_bg prometheus prometheus --config.file="$PROM_HOME/prometheus.yml" \
      --storage.tsdb.path="$PROM_HOME/data" --storage.tsdb.retention.time=2d \
      --web.listen-address="$BIND:$PROM_PORT" --web.enable-lifecycle
  fi
  WAIT_PIDFILE=$pidfile wait_for "prometheus: health" "$PROM_LOG" 60 "$PROM_URL/-/ready" prom_ready
  mark_ready "prometheus up $PROM_URL (rules: dev/prometheus/rules.yml)"
}

prometheus_down() {
  stop_pid prometheus 30
}

prometheus_status() {
  local pidfile state=down pid="" health="-"
  pidfile=$(svc_pidfile prometheus)
  if pid_alive "$pidfile"; then
    state=running
    pid=$(<"$pidfile")
    if prom_ready; then health=ok; else health=FAIL; fi
  fi
  status_line prometheus "$state" "$pid" "$health" "$PROM_URL" "$PROM_LOG" "$PROM_HOME/data"
  if [[ $health == ok ]]; then
    local targets
    targets=$(curl -fsS -m 5 "$PROM_URL/api/v1/targets" 2>/dev/null |
      jq -r '[.data.activeTargets[] | "\(.labels.job)=\(.health)"] | join(" ")' 2>/dev/null || true)
    status_detail "targets: ${targets:-?}"
  fi
}
