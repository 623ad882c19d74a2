# shellcheck shell=bash
# S3-compatible object store on 127.0.0.1:9000: SeaweedFS (`weed mini`: master, volume, filer,
# S3 gateway and admin UI in one process), built from the Go module proxy into the cache.
# Buckets and credentials come from minio/ (buckets.txt, seaweedfs-s3.json, setup.sh).

S3_HOME="$(svc_dir s3)"
S3_LOG="$(svc_log s3)"
S3_URL="http://$BIND:$S3_PORT"
WEED_BIN="$CACHE_DIR/bin/seaweedfs-$SEAWEEDFS_VERSION/weed"

# Build `weed` once. `go install module@version` refuses SeaweedFS (its go.mod has replace
# directives), so download the module through the Go proxy and build inside it as the main module.
s3_ensure_weed() {
  [[ -x $WEED_BIN ]] && return 0
  local step="s3: build SeaweedFS (go)" logfile="$STACK_DIR/go-build.log"
  command -v go >/dev/null || fail "$step" "" \
    "needs Go >= 1.26 on PATH (SeaweedFS $SEAWEEDFS_VERSION is built from the Go module proxy)"
  export GOPATH="$CACHE_DIR/go" GOCACHE="$CACHE_DIR/go/cache" GOFLAGS=-buildvcs=false GOTOOLCHAIN=auto
  log "$step: $SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION -> $WEED_BIN (several minutes on 2 cores; log: $logfile)"
  local t0=$SECONDS dir
  run_step "$step: download" "$logfile" go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION"
  dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | jq -r .Dir)
  [[ -d $dir ]] || fail "$step" "$logfile" "module source not found after download"
  mkdir -p "$(dirname "$WEED_BIN")"
  # Lowered priority: `make demo` and `make test` run the Rust build beside this one, and the Rust
  # build is the longer of the two, so it gets the cores first.
  run_step "$step: compile" "$logfile" nice -n 10 bash -c "cd '$dir' && go build -trimpath -o '$WEED_BIN.tmp' ./weed"
  mv "$WEED_BIN.tmp" "$WEED_BIN"
  rm -rf "$GOCACHE" # build cache (~2 GB); the module download stays for a rebuild
  log "$step: done in $((SECONDS - t0))s"
}

s3_healthy() { curl -fsS -m 3 -o /dev/null "$S3_URL/healthz"; }

s3_setup() {
  S3_ENDPOINT=$S3_URL S3_REGION=$S3_REGION S3_ACCESS_KEY=$S3_ACCESS_KEY S3_SECRET_KEY=$S3_SECRET_KEY \
    S3_ADMIN_ACCESS_KEY=stack-admin S3_ADMIN_SECRET_KEY=stack-admin-secret \
    "$REPO_DIR/minio/setup.sh"
}

s3_up() {
  local pidfile
  pidfile=$(svc_pidfile s3)
  mkdir -p "$S3_HOME/data"
  s3_ensure_weed
  if pid_alive "$pidfile"; then
    log "s3: already running (pid $(<"$pidfile")), checking health"
  else
    local p
    for p in "$S3_PORT" "$S3_MASTER_PORT" "$S3_VOLUME_PORT" "$S3_FILER_PORT" "$S3_ADMIN_PORT" \
      $((S3_MASTER_PORT + 10000)) $((S3_VOLUME_PORT + 10000)) $((S3_FILER_PORT + 10000)) \
      $((S3_PORT_GRPC)) $((S3_ADMIN_PORT + 10000)); do
      require_port_free "s3: start" "$S3_LOG" "$p"
    done
    log "s3: starting SeaweedFS, S3 $S3_URL, filer UI http://$BIND:$S3_FILER_PORT, admin UI http://$BIND:$S3_ADMIN_PORT (log: $S3_LOG)"
    (cd "$S3_HOME" && start_bg s3 "$WEED_BIN" -logtostderr=true mini \
      -dir="$S3_HOME/data" -ip="$BIND" -ip.bind="$BIND" \
      -master.port="$S3_MASTER_PORT" -master.port.grpc=$((S3_MASTER_PORT + 10000)) -master.telemetry=false \
      -volume.port="$S3_VOLUME_PORT" -volume.port.grpc=$((S3_VOLUME_PORT + 10000)) \
      -filer.port="$S3_FILER_PORT" -filer.port.grpc=$((S3_FILER_PORT + 10000)) \
      -s3.port="$S3_PORT" -s3.port.grpc="$S3_PORT_GRPC" -s3.port.iceberg=0 -s3.port.lance=0 \
      -s3.config="$REPO_DIR/minio/seaweedfs-s3.json" \
      -admin.port="$S3_ADMIN_PORT" -admin.port.grpc=$((S3_ADMIN_PORT + 10000)) -admin.port.legacy=0 \
      -webdav=false)
  fi
  WAIT_PIDFILE=$pidfile wait_for "s3: health" "$S3_LOG" 120 "$S3_URL/healthz" s3_healthy
  run_step "s3: buckets (minio/setup.sh)" "$S3_HOME/setup.log" s3_setup
  mark_ready "s3 up $S3_URL (SeaweedFS; buckets: $(sed -e 's/#.*//' "$S3_BUCKETS_FILE" | xargs); filer UI http://$BIND:$S3_FILER_PORT/buckets/)"
}

s3_down() {
  stop_pid s3 30
}

s3_status() {
  local pidfile state=down pid="" health="-"
  pidfile=$(svc_pidfile s3)
  if pid_alive "$pidfile"; then
    state=running
    pid=$(<"$pidfile")
    if s3_healthy; then health=ok; else health=FAIL; fi
  fi
  status_line s3 "$state" "$pid" "$health" "$S3_URL (S3, SeaweedFS)" "$S3_LOG" "$S3_HOME/data"
  status_detail "browse: filer UI http://$BIND:$S3_FILER_PORT/buckets/  admin UI http://$BIND:$S3_ADMIN_PORT  master http://$BIND:$S3_MASTER_PORT"
  status_detail "keys: $S3_ACCESS_KEY / $S3_SECRET_KEY (region $S3_REGION, path-style); buckets: $(sed -e 's/#.*//' "$S3_BUCKETS_FILE" | xargs)"
}
