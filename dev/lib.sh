# shellcheck shell=bash disable=SC2034  # the settings below are used by the files that source this one
# Shared helpers and the ONE place that defines the local stack's layout, ports, versions and
# credentials. Sourced by dev/up, dev/down, dev/status and dev/svc/*.sh; never run directly.
#
# Environment read by these scripts (deliberately NOT prefixed TRIBUTARY_: the Rust services treat
# every TRIBUTARY_* variable as a config key):
#   STACK_CACHE_DIR  download/build cache, outside the clone (default ~/.cache/tributary)
#   STACK_PORT_OFFSET add this to every port (default 0)
#   STACK_VERBOSE=1  echo every step's command output to the terminal as well as its log

set -euo pipefail

DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$DEV_DIR/.." && pwd)"
STACK_DIR="$REPO_DIR/.stack"                     # runtime data, logs, pids (git-ignored)
CACHE_DIR="${STACK_CACHE_DIR:-$HOME/.cache/tributary}"  # downloads and builds (outside the clone)
READY_LOG="$STACK_DIR/READY.log"

# ---- addresses and ports (everything binds to loopback) ------------------------------------
# STACK_PORT_OFFSET (default 0) shifts every port, to run a second stack beside the first (e.g. to
# test these scripts from a fresh clone); the services' own defaults assume offset 0.
BIND=127.0.0.1
_O=${STACK_PORT_OFFSET:-0}
PG_PORT=$((5432 + _O))
KAFKA_PORT=$((9092 + _O))
KAFKA_CONTROLLER_PORT=$((9093 + _O))
# A second listener that advertises the port of a proxy in front of it, so a client that bootstraps
# through that proxy stays behind it: the e2e slowdown test delays and stalls Kafka there.
KAFKA_PROXIED_PORT=$((9094 + _O))
KAFKA_PROXY_PORT=$((9095 + _O))
CONNECT_PORT=$((8083 + _O))
S3_PORT=$((9000 + _O))                 # S3 API (MinIO's port)
S3_MASTER_PORT=$((9333 + _O))          # SeaweedFS master (UI at /)
S3_VOLUME_PORT=$((9340 + _O))          # SeaweedFS volume server (mini's default; not 8080, the API's port)
S3_FILER_PORT=$((8888 + _O))           # SeaweedFS filer (browsable UI: http://127.0.0.1:8888/buckets/)
# gRPC ports of master, volume, filer and admin: HTTP port + 10000 (19333, 19340, 18888, 22535)
S3_ADMIN_PORT=$((12535 + _O))          # SeaweedFS admin UI (weed mini)
S3_PORT_GRPC=$((18333 + _O))           # SeaweedFS S3 gRPC (its default, S3 port + 10000 = 19000, is ClickHouse's)
CH_HTTP_PORT=$((8123 + _O))
CH_TCP_PORT=$((19000 + _O))            # ClickHouse native protocol; 9000 belongs to the object store
CH_INTERSERVER_PORT=$((19009 + _O))
PROM_PORT=$((9090 + _O))
TRINO_PORT=$((8089 + _O))           # Trino (on demand: dev/up trino)

# ---- versions (pinned) ----------------------------------------------------------------------
PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
KAFKA_VERSION=4.4.0
DEBEZIUM_VERSION=3.6.3.Final
SEAWEEDFS_MODULE=github.com/seaweedfs/seaweedfs/weed
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
TRINO_VERSION=476                      # needs Java >= 24 (dev/svc/trino.sh)

# ---- credentials (local development only) ---------------------------------------------------
PG_USER=tributary
PG_PASSWORD=tributary
PG_SOURCE_DB=salesdb
PG_CATALOG_DB=tributary
S3_ACCESS_KEY=tributary
S3_SECRET_KEY=tributary-secret
S3_REGION=us-east-1
S3_BUCKETS_FILE="$REPO_DIR/minio/buckets.txt"
CH_DATABASE=marts
# The API reads ClickHouse as this read-only user (dev/clickhouse/users.xml); the marts write as `default`.
CH_READER_USER=tributary_reader
CH_READER_PASSWORD=tributary-reader
# Bearer token of writes to the API (POST /api/v1/lineage): the services send it as OPENLINEAGE_API_KEY.
LINEAGE_WRITE_TOKEN=tributary-dev-lineage-token
LAKE_CATALOG_NAME=tributary              # the lander's lake.catalog_name (iceberg_tables.catalog_name)

# ---- layout ---------------------------------------------------------------------------------
# .stack/<svc>/{pid,<svc>.log,data/...}; the cache holds m2/ (Maven repo), kafka-<v>/ (jars),
# connect-plugins/, go/ (GOPATH+GOCACHE), bin/ (built binaries).
ALL_SERVICES=(postgres kafka s3 connect clickhouse prometheus trino)
# What `dev/up` starts without names; Trino is on demand (`dev/up trino`, `dev/up --with-trino`).
DEFAULT_SERVICES=(postgres kafka s3 connect clickhouse prometheus)

svc_dir() { echo "$STACK_DIR/$1"; }
svc_log() { echo "$STACK_DIR/$1/$1.log"; }
svc_pidfile() { echo "$STACK_DIR/$1/pid"; }

# ---- output ---------------------------------------------------------------------------------
_ts() { date +%H:%M:%S; }
log() { printf '[dev %s] %s\n' "$(_ts)" "$*" >&2; }
warn() { printf '[dev %s] WARNING: %s\n' "$(_ts)" "$*" >&2; }

# fail STEP LOGFILE MESSAGE...: a clear error naming the step and its log, with the log's tail.
fail() {
  local step=$1 logfile=$2
  shift 2
  {
    printf '\n[dev %s] ERROR in step "%s": %s\n' "$(_ts)" "$step" "$*"
    if [[ -n $logfile ]]; then
      printf '[dev] log file: %s\n' "$logfile"
      if [[ -s $logfile ]]; then
        printf '[dev] ---- last 25 lines of %s ----\n' "$logfile"
        tail -n 25 "$logfile" | sed 's/^/    /'
        printf '[dev] ----\n'
      fi
    fi
  } >&2
  exit 1
}

# run_step STEP LOGFILE CMD...: run CMD with its output appended to LOGFILE; fail clearly if it fails.
run_step() {
  local step=$1 logfile=$2
  shift 2
  mkdir -p "$(dirname "$logfile")"
  printf '\n==== %s  step "%s": %s\n' "$(date -Is)" "$step" "$*" >>"$logfile"
  if [[ ${STACK_VERBOSE:-0} == 1 ]]; then
    "$@" 2>&1 | tee -a "$logfile" >&2 || fail "$step" "$logfile" "command failed: $*"
  else
    "$@" >>"$logfile" 2>&1 || fail "$step" "$logfile" "command failed: $*"
  fi
}

# wait_for STEP LOGFILE TIMEOUT_S DESCRIPTION CMD...: poll CMD every second until it succeeds.
# If the service's pid file names a dead process, stop waiting at once.
WAIT_PIDFILE=""
wait_for() {
  local step=$1 logfile=$2 timeout=$3 what=$4
  shift 4
  local start=$SECONDS
  while ! "$@" >/dev/null 2>&1; do
    if [[ -n $WAIT_PIDFILE ]] && ! pid_alive "$WAIT_PIDFILE"; then
      fail "$step" "$logfile" "process died while waiting for: $what"
    fi
    if ((SECONDS - start >= timeout)); then
      fail "$step" "$logfile" "timed out after ${timeout}s waiting for: $what"
    fi
    sleep 1
  done
}

# ---- processes and ports --------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/$BIND/$1") 2>/dev/null; }

# who_listens PORT: "pid/command" of whatever listens on PORT (any address), if anything.
who_listens() {
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\2\/\1/p' | head -n1
}

# proc_alive PID: the process exists and is not a zombie (a killed service whose parent never
# reaps it stays a zombie, and kill -0 still succeeds on it).
proc_alive() {
  local pid=$1 state
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || state=Z
  [[ -n $state && $state != Z && $state != X ]]
}

pid_alive() {
  local f=$1
  [[ -s $f ]] || return 1
  proc_alive "$(<"$f")"
}

# port_free_or_ours STEP LOG PORT PIDFILE: fail clearly if PORT is held by a process that is not ours.
require_port_free() {
  local step=$1 logfile=$2 port=$3 holder
  if port_open "$port"; then
    holder=$(who_listens "$port")
    fail "$step" "$logfile" "port $port is already in use by ${holder:-an unknown process}; stop it or free the port"
  fi
}

# start_bg SVC CMD...: start CMD detached (own session, survives the calling shell), output to
# the service's log, pid recorded in .stack/<svc>/pid.
start_bg() {
  local svc=$1
  shift
  local logfile pidfile
  logfile=$(svc_log "$svc")
  pidfile=$(svc_pidfile "$svc")
  mkdir -p "$(dirname "$logfile")"
  printf '\n==== %s  starting: %s\n' "$(date -Is)" "$*" >>"$logfile"
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# stop_pid SVC [TIMEOUT]: TERM the recorded pid, then KILL its process group after TIMEOUT.
stop_pid() {
  local svc=$1 timeout=${2:-30} pidfile pid
  pidfile=$(svc_pidfile "$svc")
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  log "$svc: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local start=$SECONDS
  while proc_alive "$pid"; do
    if ((SECONDS - start >= timeout)); then
      warn "$svc: pid $pid did not stop in ${timeout}s, killing it"
      # the whole group (setsid in start_bg): a supervisor's service, a JVM's helpers
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  rm -f "$pidfile"
}

# ---- installs -------------------------------------------------------------------------------
_APT_UPDATED=0
# ensure_apt STEP PKG...: install the Debian packages that are missing (root, or sudo).
ensure_apt() {
  local step=$1
  shift
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local logfile="$STACK_DIR/apt.log" sudo=()
  ((EUID == 0)) || sudo=(sudo -n)
  log "$step: apt-get install ${missing[*]} (log: $logfile)"
  local t0=$SECONDS
  if ((_APT_UPDATED == 0)); then
    run_step "$step: apt-get update" "$logfile" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    _APT_UPDATED=1
  fi
  run_step "$step: apt-get install" "$logfile" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  log "$step: apt-get install done in $((SECONDS - t0))s"
}

# ensure_apt_no_start STEP PKG...: like ensure_apt, but a package's own service (a Debian
# postinst starting e.g. clickhouse-server or prometheus on their default ports) is not started:
# the stack runs its own process with its own config.
ensure_apt_no_start() {
  local step=$1 guard=0
  if ((EUID == 0)) && [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, by tributary dev/lib.sh: start no service during install\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  ensure_apt "$@"
  if ((guard)); then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
}

# ---- bookkeeping ----------------------------------------------------------------------------
mark_ready() {
  mkdir -p "$STACK_DIR"
  printf '%s (%s)\n' "$*" "$(date -Is)" >>"$READY_LOG"
  log "READY: $*"
}

# java for Kafka / Connect: the JDK on PATH (17 on Debian 12), or JAVA_HOME if set.
java_bin() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java || true
  fi
}

# ---- dev/status output ----------------------------------------------------------------------
status_line() { # SVC STATE PID HEALTH ADDRESS LOG DATA
  local rss="-"
  [[ -n $3 ]] && rss="$(($(ps -o rss= -p "$3" 2>/dev/null || echo 0) / 1024))MB"
  printf "%-11s %-8s pid %-8s rss %-7s health %-5s %s\n" "$1" "$2" "${3:--}" "$rss" "$4" "$5"
  printf '            log  %s\n            data %s\n' "$6" "$7"
}
status_detail() { printf '            %s\n' "$*"; }

# ---- service selection ----------------------------------------------------------------------
declare -A SERVICE_DEPS=([connect]="postgres kafka" [trino]="postgres s3")

# check_service_names NAME...: fail unless every NAME is a known service (call in the main shell).
check_service_names() {
  local s
  for s in "$@"; do
    [[ " ${ALL_SERVICES[*]} " == *" $s "* ]] ||
      fail "arguments" "" "unknown service '$s' (known: ${ALL_SERVICES[*]})"
  done
}

# resolve_services [NAME...]: the requested services plus their dependencies, in start order.
resolve_services() {
  local -A want=()
  local s d
  (($# == 0)) && set -- "${DEFAULT_SERVICES[@]}"
  for s in "$@"; do
    [[ " ${ALL_SERVICES[*]} " == *" $s "* ]] ||
      fail "arguments" "" "unknown service '$s' (known: ${ALL_SERVICES[*]})"
    want[$s]=1
    for d in ${SERVICE_DEPS[$s]:-}; do want[$d]=1; done
  done
  for s in "${ALL_SERVICES[@]}"; do
    [[ -n ${want[$s]:-} ]] && echo "$s"
  done
  return 0
}

load_services() {
  local f
  for f in "$DEV_DIR"/svc/*.sh; do
    # shellcheck source=/dev/null
    source "$f"
  done
}
