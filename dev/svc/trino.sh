# shellcheck shell=bash
# Trino 476, on demand (`dev/up trino`, `dev/up --with-trino`, `make trino`): one node on
# 127.0.0.1:8089 reading the lake through the same JDBC catalog (Postgres) and bucket as the
# lander, with dev/trino/ as its configuration. Trino 476 needs Java >= 24: the Temurin 25 JDK
# (TRINO_JAVA_HOME). The server tarball comes from Maven Central into the cache, once; the installed
# copy keeps only the Iceberg plugin, without the plugin's optional HDFS file system and Hive-view
# translator (the only jars in the tarball that carry org.apache.hadoop classes: see
# trino_prune and `trino_check_classpath`).

TRINO_HOME="$(svc_dir trino)"
TRINO_LOG="$(svc_log trino)"
TRINO_URL="http://$BIND:$TRINO_PORT"
TRINO_INSTALL="$CACHE_DIR/trino-server-$TRINO_VERSION"
TRINO_CLI="$CACHE_DIR/trino-cli-$TRINO_VERSION-executable.jar"
TRINO_JAVA_HOME="${TRINO_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
TRINO_HEAP="${STACK_TRINO_HEAP:--Xmx3g}"
TRINO_QUERY_MEMORY="${STACK_TRINO_QUERY_MEMORY:-2GB}"
MAVEN_CENTRAL="${MAVEN_CENTRAL:-https://repo.maven.apache.org/maven2}"
# Bump when trino_prune changes, so an installed copy is pruned again.
TRINO_INSTALL_RECIPE=1

# trino_download URL FILE: FILE from Maven Central, checked against its published SHA-1.
trino_download() {
  local url=$1 file=$2 step="trino: download $(basename "$2")"
  [[ -s $file ]] && return 0
  log "$step from $url"
  local t0=$SECONDS
  run_step "$step" "$TRINO_LOG" curl -fsSL --retry 3 -o "$file.part" "$url"
  run_step "$step: checksum" "$TRINO_LOG" curl -fsSL --retry 3 -o "$file.sha1" "$url.sha1"
  echo "$(cut -c1-40 "$file.sha1")  $file.part" | sha1sum -c --status ||
    fail "$step" "$TRINO_LOG" "SHA-1 of $file.part does not match $url.sha1"
  mv "$file.part" "$file"
  log "$step: done in $((SECONDS - t0))s ($(du -h "$file" | cut -f1))"
}

# trino_prune DIR: keep the Iceberg plugin only (Trino loads every plugin folder at start), and
# drop from it what this configuration never loads: the HDFS file system (hdfs/, used only with
# fs.hadoop.enabled=true) and Coral (Hive-view translation for a Hive metastore catalog).
trino_prune() {
  local dir=$1 p
  for p in "$dir"/plugin/*; do
    [[ $(basename "$p") == iceberg ]] || rm -rf "$p"
  done
  rm -rf "$dir/plugin/iceberg/hdfs" "$dir"/plugin/iceberg/io.trino.coral_coral-*.jar
}

# trino_check_classpath: fail if any jar Trino can load carries org.apache.hadoop classes.
trino_check_classpath() {
  local jar found=()
  while IFS= read -r jar; do
    if unzip -l "$jar" 2>/dev/null | grep -q 'org/apache/hadoop/'; then found+=("$jar"); fi
  done < <(find "$TRINO_INSTALL/lib" "$TRINO_INSTALL/plugin" -name '*.jar')
  ((${#found[@]} == 0)) ||
    fail "trino: classpath check" "$TRINO_LOG" "jars with org.apache.hadoop classes: ${found[*]}"
}

trino_install() {
  mkdir -p "$CACHE_DIR/downloads" "$TRINO_HOME"
  [[ -x $TRINO_JAVA_HOME/bin/java ]] ||
    fail "trino: java" "" "Trino $TRINO_VERSION needs Java >= 24: no $TRINO_JAVA_HOME/bin/java (set TRINO_JAVA_HOME)"
  local marker="$TRINO_VERSION/$TRINO_INSTALL_RECIPE"
  if [[ ! -f $TRINO_INSTALL/.complete || $(<"$TRINO_INSTALL/.complete") != "$marker" ]]; then
    local tarball="$CACHE_DIR/downloads/trino-server-$TRINO_VERSION.tar.gz"
    trino_download "$MAVEN_CENTRAL/io/trino/trino-server/$TRINO_VERSION/trino-server-$TRINO_VERSION.tar.gz" "$tarball"
    command -v unzip >/dev/null || ensure_apt "trino: install unzip" unzip
    log "trino: unpacking into $TRINO_INSTALL (Iceberg plugin only)"
    local tmp="$TRINO_INSTALL.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    run_step "trino: unpack" "$TRINO_LOG" tar -xzf "$tarball" -C "$tmp" --strip-components=1
    trino_prune "$tmp"
    rm -rf "$TRINO_INSTALL"
    mv "$tmp" "$TRINO_INSTALL"
    trino_check_classpath # once per install: the jars change only here
    echo "$marker" >"$TRINO_INSTALL/.complete"
  fi
  trino_download "$MAVEN_CENTRAL/io/trino/trino-cli/$TRINO_VERSION/trino-cli-$TRINO_VERSION-executable.jar" "$TRINO_CLI"
}

trino_write_conf() {
  local etc="$TRINO_HOME/etc" f
  mkdir -p "$etc/catalog" "$TRINO_HOME/data"
  local subst=(-e "s|@BIND@|$BIND|g" -e "s|@TRINO_PORT@|$TRINO_PORT|g"
    -e "s|@TRINO_INSTALL@|$TRINO_INSTALL|g" -e "s|@TRINO_ETC@|$etc|g"
    -e "s|@TRINO_DATA@|$TRINO_HOME/data|g" -e "s|@TRINO_HEAP@|$TRINO_HEAP|g"
    -e "s|@TRINO_QUERY_MEMORY@|$TRINO_QUERY_MEMORY|g")
  for f in config.properties node.properties jvm.config log.properties; do
    sed "${subst[@]}" "$REPO_DIR/dev/trino/$f" >"$etc/$f"
  done
  cp "$REPO_DIR/dev/trino/iceberg.properties" "$etc/catalog/iceberg.properties"
}

# Trino answers /v1/info while it starts; it takes queries once `starting` is false.
trino_ready() { [[ $(curl -fsS -m 3 "$TRINO_URL/v1/info" 2>/dev/null | jq -r .starting 2>/dev/null) == false ]]; }

trino_up() {
  local pidfile
  pidfile=$(svc_pidfile trino)
  trino_install
  if pid_alive "$pidfile"; then
    log "trino: already running (pid $(<"$pidfile")), checking health"
  else
    require_port_free "trino: start" "$TRINO_LOG" "$TRINO_PORT"
    trino_write_conf
    log "trino: starting $TRINO_VERSION on $TRINO_URL (log: $TRINO_LOG)"
    # As Trino's launcher does: jvm.config is the JVM's options, node.properties its -D properties.
    local etc="$TRINO_HOME/etc" jvm_opts node_props
    mapfile -t jvm_opts < <(grep -v '^\s*$' "$etc/jvm.config")
    mapfile -t node_props < <(grep -v -e '^\s*$' -e '^#' "$etc/node.properties" | sed 's/^/-D/')
    # The catalog file reads the lake's coordinates from these (compose.yaml sets the same).
    export LAKE_JDBC_URL="jdbc:postgresql://$BIND:$PG_PORT/$PG_CATALOG_DB" LAKE_JDBC_USER="$PG_USER" \
      LAKE_JDBC_PASSWORD="$PG_PASSWORD" LAKE_CATALOG_NAME="$LAKE_CATALOG_NAME" \
      LAKE_S3_ENDPOINT="http://$BIND:$S3_PORT" LAKE_S3_REGION="$S3_REGION" \
      LAKE_S3_ACCESS_KEY="$S3_ACCESS_KEY" LAKE_S3_SECRET_KEY="$S3_SECRET_KEY"
    start_bg trino "$TRINO_JAVA_HOME/bin/java" "${jvm_opts[@]}" "${node_props[@]}" \
      -Dconfig="$etc/config.properties" \
      -Dlog.levels-file="$etc/log.properties" \
      -cp "$TRINO_INSTALL/lib/*" io.trino.server.TrinoServer
  fi
  WAIT_PIDFILE=$pidfile wait_for "trino: health" "$TRINO_LOG" 180 "$TRINO_URL/v1/info to say it has started" trino_ready
  mark_ready "trino up $TRINO_URL (catalog iceberg, schema = the lake's namespace)"
}

trino_down() {
  stop_pid trino 60
}

trino_status() {
  local pidfile state=down pid="" health="-"
  pidfile=$(svc_pidfile trino)
  if pid_alive "$pidfile"; then
    state=running
    pid=$(<"$pidfile")
    if trino_ready; then health=ok; else health=FAIL; fi
  fi
  status_line trino "$state" "$pid" "$health" "$TRINO_URL (on demand: dev/up trino)" "$TRINO_LOG" \
    "$TRINO_HOME/data"
}

# trino_sql SQL: run SQL with the Trino CLI against the local node (catalog iceberg, schema raw).
trino_sql() {
  "$TRINO_JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -jar "$TRINO_CLI" --server "$TRINO_URL" --catalog iceberg \
    --schema "${TRINO_SCHEMA:-raw}" --output-format ALIGNED --execute "$1"
}
