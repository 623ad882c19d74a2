# shellcheck shell=bash
# Apache Kafka 4.4.0, KRaft, broker+controller in one JVM on 127.0.0.1:9092 (controller 9093).
# Jars from Maven Central (dev/kafka/pom.xml) into the cache; data in .stack/kafka/data.

KAFKA_HOME="$(svc_dir kafka)"
KAFKA_LOG="$(svc_log kafka)"
KAFKA_DIST="$CACHE_DIR/kafka-$KAFKA_VERSION"   # libs/ (classpath) and plugins/ (Debezium archive)
KAFKA_LIBS="$KAFKA_DIST/libs"
KAFKA_CONF_DIR="$REPO_DIR/dev/kafka"
# A fixed heap, touched at start: the broker's memory is what it is given from the first minute (no
# growth to -Xmx under load, which is what an operator sizes and a soak must not mistake for a leak).
KAFKA_HEAP="${STACK_KAFKA_HEAP:--Xms768m -Xmx768m -XX:+AlwaysPreTouch}"

# kafka_ensure_jars: download Kafka, Connect, log4j2 and the Debezium plugin archive (once).
# The download is keyed by the pom's checksum, so editing the pom re-downloads.
kafka_ensure_jars() {
  local step="kafka: download jars (mvn)" logfile="$STACK_DIR/mvn.log" sum
  if [[ -z $(java_bin) ]]; then
    ensure_apt "kafka: install java" openjdk-17-jre-headless
  fi
  sum=$(cksum <"$KAFKA_CONF_DIR/pom.xml" | cut -d' ' -f1)
  if [[ -f $KAFKA_DIST/.complete && $(<"$KAFKA_DIST/.complete") == "$sum" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || ensure_apt "kafka: install maven" maven
  log "$step: Kafka $KAFKA_VERSION + Debezium $DEBEZIUM_VERSION from Maven Central into $KAFKA_DIST (log: $logfile)"
  local t0=$SECONDS tmp="$KAFKA_DIST.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  run_step "$step" "$logfile" mvn -B -q -f "$KAFKA_CONF_DIR/pom.xml" \
    -Dmaven.repo.local="$CACHE_DIR/m2" \
    -Dlibs.dir="$tmp/libs" -Dplugins.dir="$tmp/plugins" \
    dependency:copy-dependencies@libs dependency:copy-dependencies@plugins
  rm -rf "$KAFKA_DIST"
  mv "$tmp" "$KAFKA_DIST"
  echo "$sum" >"$KAFKA_DIST/.complete"
  log "$step: done in $((SECONDS - t0))s ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars)"
}

# kafka_java MAIN ARGS...: run a Kafka class on the downloaded classpath (tools: warnings only,
# at most 60 s).
kafka_java() {
  timeout 60 "$(java_bin)" -Xms64m -Xmx512m -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2-tools.xml" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# kafka_topics ARGS...: org.apache.kafka.tools.TopicCommand against the local broker.
kafka_topics() { kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$BIND:$KAFKA_PORT" "$@"; }

kafka_write_conf() {
  sed -e "s|@BIND@|$BIND|g" -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
    -e "s|@KAFKA_PROXIED_PORT@|$KAFKA_PROXIED_PORT|g" -e "s|@KAFKA_PROXY_PORT@|$KAFKA_PROXY_PORT|g" \
    -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$KAFKA_HOME/data|g" \
    "$KAFKA_CONF_DIR/server.properties" >"$KAFKA_HOME/server.properties"
}

kafka_up() {
  local pidfile
  pidfile=$(svc_pidfile kafka)
  mkdir -p "$KAFKA_HOME"
  kafka_ensure_jars
  if pid_alive "$pidfile"; then
    log "kafka: already running (pid $(<"$pidfile")), checking health"
  else
    require_port_free "kafka: start" "$KAFKA_LOG" "$KAFKA_PORT"
    require_port_free "kafka: start" "$KAFKA_LOG" "$KAFKA_CONTROLLER_PORT"
    kafka_write_conf
    if [[ ! -f $KAFKA_HOME/data/meta.properties ]]; then
      local id
      id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG") ||
        fail "kafka: format storage" "$KAFKA_LOG" "kafka.tools.StorageTool random-uuid failed"
      log "kafka: formatting storage, cluster id $id"
      echo "$id" >"$KAFKA_HOME/cluster.id"
      run_step "kafka: format storage" "$KAFKA_LOG" kafka_java kafka.tools.StorageTool format \
        -t "$id" -c "$KAFKA_HOME/server.properties"
    fi
    log "kafka: starting on $BIND:$KAFKA_PORT, controller $BIND:$KAFKA_CONTROLLER_PORT (log: $KAFKA_LOG)"
    # shellcheck disable=SC2086
    start_bg kafka "$(java_bin)" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.xml" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_HOME/server.properties"
  fi
  WAIT_PIDFILE=$pidfile wait_for "kafka: health" "$KAFKA_LOG" 90 "port $BIND:$KAFKA_PORT" port_open "$KAFKA_PORT"
  WAIT_PIDFILE=$pidfile wait_for "kafka: health" "$KAFKA_LOG" 90 "the broker to answer a topic listing" \
    kafka_topics --list
  mark_ready "kafka up $BIND:$KAFKA_PORT (controller $BIND:$KAFKA_CONTROLLER_PORT)"
}

kafka_down() {
  stop_pid kafka 60
}

kafka_status() {
  local pidfile state=down pid="" health="-"
  pidfile=$(svc_pidfile kafka)
  if pid_alive "$pidfile"; then
    state=running
    pid=$(<"$pidfile")
    if port_open "$KAFKA_PORT"; then health=ok; else health=FAIL; fi
  fi
  status_line kafka "$state" "$pid" "$health" "$BIND:$KAFKA_PORT (controller $BIND:$KAFKA_CONTROLLER_PORT)" \
    "$KAFKA_LOG" "$KAFKA_HOME/data"
  if [[ $health == ok && ${STATUS_TOPICS:-1} == 1 ]]; then
    local topics
    topics=$(kafka_topics --list 2>/dev/null | grep -v "^__" | paste -sd" " || true)
    status_detail "topics: ${topics:-none}"
  fi
}

kafka_topic_exists() { kafka_topics --list 2>/dev/null | grep -qx "$1"; }
