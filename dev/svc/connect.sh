# shellcheck shell=bash
# Kafka Connect 4.4.0 (distributed, one worker, REST 127.0.0.1:8083) with the Debezium 3.6.3.Final
# Postgres connector; registers ingest/debezium/salesdb-connector.json as `salesdb-connector`.

CONNECT_HOME="$(svc_dir connect)"
CONNECT_LOG="$(svc_log connect)"
CONNECT_PLUGIN_PATH="$CACHE_DIR/kafka-$KAFKA_VERSION/connect-plugins"
# A fixed heap, touched at start (as for the broker, dev/svc/kafka.sh).
CONNECT_HEAP="${STACK_CONNECT_HEAP:--Xms1g -Xmx1g -XX:+AlwaysPreTouch}"
CONNECTOR_NAME=salesdb-connector
CONNECTOR_FILE="$REPO_DIR/ingest/debezium/salesdb-connector.json"
CONNECT_URL="http://$BIND:$CONNECT_PORT"
# Debezium's own OpenLineage (lineage/README.md, "Debezium's own OpenLineage"): the core 3.5.0.Final
# + libs (dev/kafka/openlineage-pom.xml) unpacked into the connector's plugin folder, and an
# openlineage.yml whose transports are the file every job appends to and the lineage server
# (Marquez on :5000 when one answers, else the API's Marquez-compatible store on :8080).
OPENLINEAGE_POM="$DEV_DIR/kafka/openlineage-pom.xml"
OPENLINEAGE_DIST="$CACHE_DIR/kafka-$KAFKA_VERSION/openlineage"
DEBEZIUM_OPENLINEAGE_VERSION=3.5.0.Final
OPENLINEAGE_YML="$CONNECT_HOME/openlineage.yml"
LINEAGE_EVENTS_FILE="$STACK_DIR/lineage/events.jsonl"

# Debezium 3.6.3 is built against Kafka 4.3 and calls org.apache.kafka.common.utils.Sanitizer, which
# Kafka 4.4 moved to ...utils.internals (the task fails with NoClassDefFoundError). 3.6.1's archive
# carried kafka-clients 4.3.0 for it; 3.6.3's does not, so we put that jar in the plugin folder as
# 3.6.1 did. Connect loads org.apache.kafka classes from the worker first; only the ones Kafka 4.4
# lacks come from this jar.
DEBEZIUM_KAFKA_CLIENTS=org.apache.kafka:kafka-clients:4.3.0

connect_ensure_plugin() {
  local step="connect: unpack Debezium plugin" archive
  archive="$KAFKA_DIST/plugins/debezium-connector-postgres-$DEBEZIUM_VERSION-plugin.tar.gz"
  local marker="$CONNECT_PLUGIN_PATH/.debezium-$DEBEZIUM_VERSION-kafka-clients-4.3.0"
  [[ -f $marker ]] && return 0
  [[ -f $archive ]] || fail "$step" "$STACK_DIR/mvn.log" "missing $archive (Maven download incomplete?)"
  rm -rf "$CONNECT_PLUGIN_PATH"
  mkdir -p "$CONNECT_PLUGIN_PATH"
  run_step "$step" "$CONNECT_LOG" tar -xzf "$archive" -C "$CONNECT_PLUGIN_PATH"
  local folder="$CONNECT_PLUGIN_PATH/debezium-connector-postgres"
  if ! compgen -G "$folder/kafka-clients-*.jar" >/dev/null; then
    run_step "$step: $DEBEZIUM_KAFKA_CLIENTS" "$STACK_DIR/mvn.log" mvn -B -q \
      -Dmaven.repo.local="$CACHE_DIR/m2" dependency:copy \
      -Dartifact="$DEBEZIUM_KAFKA_CLIENTS" -DoutputDirectory="$folder"
  fi
  touch "$marker"
  log "$step: $(find "$CONNECT_PLUGIN_PATH" -name '*.jar' | wc -l) jars under $CONNECT_PLUGIN_PATH"
}

# Debezium's OpenLineage implementation, downloaded once per openlineage-pom.xml and unpacked into
# the connector's folder: the connector finds it with a ServiceLoader on its own plugin class
# loader, so it must sit beside the connector (another plugin folder would not be seen). Without
# it the connector still runs: Debezium falls back to a no-op emitter.
connect_ensure_openlineage() {
  local step="connect: Debezium OpenLineage $DEBEZIUM_OPENLINEAGE_VERSION" sum logfile="$STACK_DIR/mvn.log"
  local folder="$CONNECT_PLUGIN_PATH/debezium-connector-postgres"
  local archive="$OPENLINEAGE_DIST/debezium-openlineage-core-$DEBEZIUM_OPENLINEAGE_VERSION-libs.tar.gz"
  sum=$(cksum <"$OPENLINEAGE_POM" | cut -d' ' -f1)
  if ! [[ -f $OPENLINEAGE_DIST/.complete && $(<"$OPENLINEAGE_DIST/.complete") == "$sum" ]]; then
    command -v mvn >/dev/null || ensure_apt "connect: install maven" maven
    log "$step: download from Maven Central into $OPENLINEAGE_DIST (log: $logfile)"
    rm -rf "$OPENLINEAGE_DIST.tmp"
    run_step "$step: download" "$logfile" mvn -B -q -f "$OPENLINEAGE_POM" \
      -Dmaven.repo.local="$CACHE_DIR/m2" -Dopenlineage.dir="$OPENLINEAGE_DIST.tmp" \
      dependency:copy-dependencies
    rm -rf "$OPENLINEAGE_DIST"
    mv "$OPENLINEAGE_DIST.tmp" "$OPENLINEAGE_DIST"
    echo "$sum" >"$OPENLINEAGE_DIST/.complete"
  fi
  local marker="$CONNECT_PLUGIN_PATH/.openlineage-$DEBEZIUM_OPENLINEAGE_VERSION-$sum"
  [[ -f $marker ]] && return 0
  [[ -f $archive ]] || fail "$step" "$logfile" "missing $archive (Maven download incomplete?)"
  [[ -d $folder ]] || fail "$step" "$CONNECT_LOG" "no Debezium plugin folder $folder"
  local tmp
  tmp=$(mktemp -d)
  run_step "$step: unpack" "$CONNECT_LOG" tar -xzf "$archive" -C "$tmp"
  # the archive's slf4j-api is the connector's own (same 1.7.36; org.slf4j comes from the worker
  # anyway); every other jar is new to the folder (jackson-databind/core come from the worker)
  local jar
  for jar in "$tmp"/debezium-openlineage-core/*.jar; do
    [[ -e $folder/$(basename "$jar") ]] || cp "$jar" "$folder/"
  done
  rm -rf "$tmp"
  rm -f "$CONNECT_PLUGIN_PATH"/.openlineage-*
  touch "$marker"
  log "$step: unpacked into $folder (a running worker loads it at its next start)"
}

# The connector's openlineage.yml: both transports, so Debezium's events land where our jobs' do.
connect_write_openlineage_yml() {
  local server="http://$BIND:8080"
  if curl -fsS -m 3 "http://$BIND:5000/api/v1/namespaces" >/dev/null 2>&1; then
    server="http://$BIND:5000"
  fi
  mkdir -p "$(dirname "$LINEAGE_EVENTS_FILE")"
  sed -e "s|@LINEAGE_FILE@|$LINEAGE_EVENTS_FILE|g" -e "s|@LINEAGE_URL@|$server|g" \
    "$DEV_DIR/kafka/openlineage.yml" >"$OPENLINEAGE_YML"
}

connect_write_conf() {
  sed -e "s|@BIND@|$BIND|g" -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONNECT_PORT@|$CONNECT_PORT|g" \
    -e "s|@PLUGIN_PATH@|$CONNECT_PLUGIN_PATH|g" \
    "$KAFKA_CONF_DIR/connect-distributed.properties" >"$CONNECT_HOME/connect-distributed.properties"
}

connect_rest_ok() { curl -fsS -m 5 "$CONNECT_URL/" >/dev/null; }
connect_has_postgres_plugin() {
  curl -fsS -m 5 "$CONNECT_URL/connector-plugins" | grep -q io.debezium.connector.postgresql.PostgresConnector
}

# connector_state: "<connector state> <task0 state>" (e.g. "RUNNING RUNNING"), empty if unknown.
connector_state() {
  curl -fsS -m 5 "$CONNECT_URL/connectors/$CONNECTOR_NAME/status" 2>/dev/null |
    jq -r '"\(.connector.state) \(.tasks[0].state // "NONE")"' 2>/dev/null
}
connector_running() { [[ $(connector_state) == "RUNNING RUNNING" ]]; }
connector_failed() { [[ $(connector_state) == *FAILED* ]]; }

connect_register() {
  local step="connect: register $CONNECTOR_NAME" want have code body
  want=$(jq -S . "$CONNECTOR_FILE") || fail "$step" "" "$CONNECTOR_FILE is not valid JSON"
  have=$(curl -fsS -m 10 "$CONNECT_URL/connectors/$CONNECTOR_NAME/config" 2>/dev/null | jq -S 'del(.name)' 2>/dev/null || true)
  if [[ $want == "$have" ]]; then
    log "connect: $CONNECTOR_NAME already registered with the same config"
    return 0
  fi
  log "connect: PUT $CONNECT_URL/connectors/$CONNECTOR_NAME/config < ingest/debezium/salesdb-connector.json"
  body=$(mktemp)
  code=$(curl -sS -m 60 -o "$body" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data-binary @"$CONNECTOR_FILE" "$CONNECT_URL/connectors/$CONNECTOR_NAME/config") || code=000
  { printf '\n==== %s PUT config -> %s\n' "$(date -Is)" "$code"; cat "$body"; echo; } >>"$CONNECT_HOME/register.log"
  if [[ $code != 200 && $code != 201 ]]; then
    local msg
    msg=$(jq -r '.message // empty' "$body" 2>/dev/null | head -c 2000)
    rm -f "$body"
    fail "$step" "$CONNECT_HOME/register.log" "Connect answered HTTP $code: ${msg:-see log}"
  fi
  rm -f "$body"
}

connect_up() {
  local pidfile
  pidfile=$(svc_pidfile connect)
  mkdir -p "$CONNECT_HOME"
  kafka_ensure_jars
  connect_ensure_plugin
  connect_ensure_openlineage
  connect_write_openlineage_yml
  if pid_alive "$pidfile"; then
    log "connect: already running (pid $(<"$pidfile")), checking health"
    if [[ $(find "$CONNECT_PLUGIN_PATH" -maxdepth 1 -name ".openlineage-*" -newer "$pidfile") ]]; then
      log "connect: the worker started before Debezium's OpenLineage jars were unpacked: it emits no lineage until restarted (dev/down connect; dev/up connect)"
    fi
  else
    require_port_free "connect: start" "$CONNECT_LOG" "$CONNECT_PORT"
    connect_write_conf
    log "connect: starting on $BIND:$CONNECT_PORT (log: $CONNECT_LOG)"
    # SALESDB_HOST/PORT and the two DEBEZIUM_OPENLINEAGE_* are read by the connector config
    # through ${env:...} (EnvVarConfigProvider)
    # shellcheck disable=SC2086
    SALESDB_HOST=$BIND SALESDB_PORT=$PG_PORT \
      DEBEZIUM_OPENLINEAGE_CONFIG="$OPENLINEAGE_YML" DEBEZIUM_OPENLINEAGE_KAFKA="$BIND:$KAFKA_PORT" start_bg connect "$(java_bin)" $CONNECT_HEAP \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.xml" \
      -cp "$KAFKA_LIBS/*" org.apache.kafka.connect.cli.ConnectDistributed \
      "$CONNECT_HOME/connect-distributed.properties"
  fi
  WAIT_PIDFILE=$pidfile wait_for "connect: health" "$CONNECT_LOG" 180 "REST API $CONNECT_URL/" connect_rest_ok
  WAIT_PIDFILE=$pidfile wait_for "connect: plugins" "$CONNECT_LOG" 60 "PostgresConnector in $CONNECT_URL/connector-plugins" \
    connect_has_postgres_plugin
  connect_register
  local start=$SECONDS
  until connector_running; do
    if connector_failed; then
      curl -fsS -m 5 "$CONNECT_URL/connectors/$CONNECTOR_NAME/status" >>"$CONNECT_HOME/register.log" 2>&1 || true
      fail "connect: connector $CONNECTOR_NAME" "$CONNECT_LOG" \
        "connector or task FAILED ($(connector_state)); status saved in $CONNECT_HOME/register.log"
    fi
    ((SECONDS - start < 120)) || fail "connect: connector $CONNECTOR_NAME" "$CONNECT_LOG" \
      "not RUNNING after 120s (state: $(connector_state))"
    sleep 1
  done
  WAIT_PIDFILE=$pidfile wait_for "connect: first topic" "$CONNECT_LOG" 120 "topic salesdb.public.sale" \
    kafka_topic_exists salesdb.public.sale
  mark_ready "connect up $BIND:$CONNECT_PORT (connector $CONNECTOR_NAME RUNNING, topic salesdb.public.sale)"
}

connect_down() {
  # The connector, its offsets and the Postgres slot stay registered: the next start resumes from
  # the slot's position without a new snapshot.
  stop_pid connect 60
}

connect_status() {
  local pidfile state=down pid="" health="-"
  pidfile=$(svc_pidfile connect)
  if pid_alive "$pidfile"; then
    state=running
    pid=$(<"$pidfile")
    if connect_rest_ok; then health=ok; else health=FAIL; fi
  fi
  local cs=""
  if [[ $health == ok ]]; then
    cs=$(connector_state)
    [[ $cs == "RUNNING RUNNING" ]] || health=FAIL
  fi
  status_line connect "$state" "$pid" "$health" "$CONNECT_URL (REST)" "$CONNECT_LOG" \
    "Kafka topics tributary_connect_{configs,offsets,statuses}; plugins $CONNECT_PLUGIN_PATH"
  [[ $state == running ]] && status_detail "connector $CONNECTOR_NAME: ${cs:-not registered} (connector, task 0)"
  return 0
}
