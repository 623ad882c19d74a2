# Two commands matter: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help up up-with-trino trino down status build build-services prereqs demo test lint lint-build unit e2e fmt oracle interop bench bench-build bench-lander bench-marts bench-aging bench-api bench-api-lake bench-cdc bench-trino soak chaos fuzz

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

prereqs: ## install build prerequisites (Debian packages for rdkafka)
	dev/prereqs

up: prereqs ## start the local stack (Postgres, Kafka, Connect+Debezium, object store, ClickHouse)
	dev/up

trino: prereqs ## start Trino 476 on 127.0.0.1:8089 reading the lake (and Postgres and the object store it needs)
	dev/up trino

up-with-trino: prereqs ## the local stack and Trino (what `make test` needs)
	dev/up --with-trino

down: ## stop the local stack and Tributary's services
	dev/app down || true
	dev/down

status: ## show what runs where: ports, pids, logs, data dirs
	dev/status
	dev/app status

build: prereqs ## build every binary and test (dev profile; one feature set, so `make test` reuses it)
	$(CARGO) build --workspace --all-targets

# Only the binaries dev/app runs: no test executables, no benchmark. `--workspace` keeps the feature
# set of `make build`, so a later `make test` adds the test targets without rebuilding these.
build-services: prereqs ## build the services the demo runs (lake, marts, api, ingest, erp-sim)
	$(CARGO) build --workspace --bins --exclude tributary-bench

# The stack (Go build of the object store, JVM downloads) and the Rust build overlap.
demo: prereqs ## stack up, sample data, pipeline running, rankings printed
	$(MAKE) --no-print-directory -j2 up build-services
	dev/demo

fmt: ## format the code
	$(CARGO) fmt --all

lint: prereqs ## fmt check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint-build: lint ## lint, then build every target
	$(CARGO) build --workspace --all-targets

unit: prereqs ## unit tests only (no services needed)
	$(CARGO) test --workspace --lib --bins

# The stack comes up while fmt, clippy and the build run.
test: prereqs ## fmt, clippy, unit, integration and end-to-end tests (starts the stack)
	$(MAKE) --no-print-directory -j2 up-with-trino lint-build
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=1
	$(MAKE) --no-print-directory oracle SEEDS=2 ROUNDS=3
	dev/fuzz $(FUZZ_SECONDS)

# Benchmarks (bench/README.md): release build, on the running stack; results in bench/results/.
# Every benchmark uses one release build of the same packages in one cargo invocation: built alone,
# `-p tributary-bench` unifies the shared dependencies' features differently and rebuilds most of them.
BENCH_PACKAGES := -p tributary-lake -p tributary-marts -p tributary-api -p tributary-ingest -p tributary-bench
BENCH := "$${CARGO_TARGET_DIR:-target}/release/tributary-bench"
bench-build: prereqs ## the release build every benchmark runs
	$(CARGO) build --release $(BENCH_PACKAGES)

bench: up bench-build ## benchmarks against their baselines (lander vs raw rdkafka and Iceberg's Kafka Connect sink; marts incremental vs recompute), results in bench/results/
	dev/iceberg-connect/worker up
	$(BENCH) lander --iceberg-connect
	$(BENCH) marts --runs $(MARTS_RUNS)
	$(MAKE) --no-print-directory bench-api
	$(MAKE) --no-print-directory bench-api-lake
	$(MAKE) --no-print-directory bench-cdc

# The lander benchmark alone, with both baselines (raw rdkafka, Apache Iceberg's Kafka Connect sink in
# its own Connect worker on :8084, left running; `dev/iceberg-connect/worker down` stops it).
EVENTS ?= 200000
LANDER_RUNS ?= 3
bench-lander: up bench-build ## lander vs raw rdkafka vs Iceberg's Kafka Connect sink on EVENTS pre-filled events, LANDER_RUNS runs with median (release build)
	dev/iceberg-connect/worker up
	$(BENCH) lander --events $(EVENTS) --iceberg-connect --runs $(LANDER_RUNS)

# The mart-cost benchmark alone (release build): MARTS_RUNS timed incremental runs per history,
# median and spread; HISTORIES=100000,1000000 for a shorter run.
HISTORIES ?= 100000,1000000,10000000
MARTS_RUNS ?= 3
bench-marts: up bench-build ## incremental marts runs (median of MARTS_RUNS) vs full recompute on 100K/1M/10M events of history (release)
	$(BENCH) marts --histories $(HISTORIES) --runs $(MARTS_RUNS)

# The marts' full rebuild, DataFusion in process vs Trino (one node, `make trino`), release build, RUNS
# runs per history: `make bench-trino HISTORIES=100000,1000000 RUNS=3`. Results in bench/results/rebuild.md.
# 10 M events need a larger Trino than the default: `dev/down trino`, then
# `STACK_TRINO_HEAP=-Xmx8g STACK_TRINO_QUERY_MEMORY=5GB make bench-trino` (README, Trino).
RUNS ?= 3
# Commit time against a table's age, without and with lake maintenance (release build): `make bench-aging COMMITS=20000`.
COMMITS ?= 1000
PLAIN_COMMITS ?= 1000
bench-aging: up bench-build ## commit time at commit N vs commit 100 of one table, without and with maintenance (release)
	$(BENCH) aging --commits $(COMMITS) --plain-commits $(PLAIN_COMMITS)

bench-trino: up-with-trino bench-build ## marts full rebuild, DataFusion vs Trino, on HISTORIES events: median of RUNS, spread, peak memory (release)
	$(BENCH) rebuild --histories $(HISTORIES) --runs $(RUNS)

# wrk against the API (needs rankings published in ClickHouse `marts`: `dev/app up`): release builds of
# the API and of the bench, whose own hello-world poem endpoint is the baseline. WRK_SECONDS per endpoint.
WRK_SECONDS ?= 20
API_RUNS ?= 3
bench-api: up bench-build ## wrk: rankings endpoints served from memory vs read from ClickHouse vs a hello-world poem endpoint, and a 304; API_RUNS rounds, median and spread
	$(BENCH) api --seconds $(WRK_SECONDS) --runs $(API_RUNS)

# The API while AS_OF_CLIENTS clients keep asking for rankings computed from a lake of LAKE_HISTORIES events (`as_of`,
# every one computed: the API's as_of cache is off): its RSS and the latest ranking's p99 beside the same alone
# (needs rankings published in ClickHouse `marts`: `dev/app up`). Results in bench/results/api-lake.md.
LAKE_HISTORIES ?= 1000000,10000000
AS_OF_CLIENTS ?= 16
bench-api-lake: up bench-build ## the API under AS_OF_CLIENTS concurrent lake-computed as_of requests on LAKE_HISTORIES-event lakes: RSS, ranking p99 vs alone (release)
	$(BENCH) api-lake --histories $(LAKE_HISTORIES) --clients $(AS_OF_CLIENTS) --seconds $(WRK_SECONDS) --runs $(API_RUNS)

# CDC end to end (Postgres → Debezium → lander → API) at CDC_RATES changes/s, CDC_SECONDS each, in its own
# source database, Debezium connector and services (release builds of the services, with their default settings).
CDC_RATES ?= 1000,5000
CDC_SECONDS ?= 45
CDC_RUNS ?= 3
bench-cdc: up bench-build ## CDC rate through Debezium + lander vs Debezium alone, freshness p50/p95/p99, CPU, peak RSS; CDC_RUNS windows per rate, median and spread
	$(BENCH) cdc --rates $(CDC_RATES) --seconds $(CDC_SECONDS) --runs $(CDC_RUNS)

# The seeded load generator into the running pipeline (`dev/app up`): salesdb, .stack/inbox, the ERP simulator.
LOAD_RATE ?= 100
LOAD_SECONDS ?= 30
SEED ?= 1
bench-load: up build ## seeded sales workload (80/15/5 ins/upd/del, skewed) at LOAD_RATE changes/s into all three sources
	"$${CARGO_TARGET_DIR:-target}/debug/tributary-bench" load --rate $(LOAD_RATE) --seconds $(LOAD_SECONDS) --seed $(SEED)

# The soak (bench/src/soak.rs): the demo's pipeline (debug builds, as `make demo` runs it) with
# maintenance and retention shortened so their windows fill within the run, SOAK_RATE changes/s over
# the three sources for SOAK_MINUTES; results in bench/results/soak.{md,json,svg}. The services are
# restarted with the soak's settings first and with the defaults after.
# The first window compared starts once every retention window is full: the longest the soak sets is
# 10 minutes (the lake's thinned history, lineage events, a publication's 10-minute lake window).
SOAK_RATE ?= 500
SOAK_MINUTES ?= 30
SOAK_WARMUP_MINUTES ?= 10
SOAK_LAKE_ENV := TRIBUTARY_MAINTENANCE__INTERVAL_S=60 TRIBUTARY_MAINTENANCE__TARGET_FILE_BYTES=8388608 TRIBUTARY_MAINTENANCE__SNAPSHOT_RETENTION_S=120 TRIBUTARY_MAINTENANCE__HISTORY_RETENTION_S=600 TRIBUTARY_MAINTENANCE__HISTORY_GRANULARITY_S=60 TRIBUTARY_MAINTENANCE__ORPHAN_GRACE_S=120
SOAK_MARTS_ENV := TRIBUTARY_RETENTION__INTERVAL_S=30 TRIBUTARY_RETENTION__PUBLICATIONS_S=300
SOAK_FILES_ENV := TRIBUTARY_FILES__PROCESSED_RETENTION_S=300 TRIBUTARY_FILES__SWEEP_INTERVAL_S=60
SOAK_API_ENV := TRIBUTARY_LINEAGE__RETENTION_S=600 TRIBUTARY_LINEAGE__PRUNE_INTERVAL_S=60
soak: up ## the whole pipeline at SOAK_RATE changes/s for SOAK_MINUTES with maintenance on: commit, run and request times, bytes, RSS over time (bench/results/soak.*)
	$(CARGO) build --workspace --bins
	dev/app down
	APP_ENV_LAKE="$(SOAK_LAKE_ENV)" APP_ENV_MARTS="$(SOAK_MARTS_ENV)" APP_ENV_INGEST_FILES="$(SOAK_FILES_ENV)" APP_ENV_API="$(SOAK_API_ENV)" dev/app up
	"$${CARGO_TARGET_DIR:-target}/debug/tributary-bench" soak --rate $(SOAK_RATE) --minutes $(SOAK_MINUTES) --warmup-minutes $(SOAK_WARMUP_MINUTES); \
	  status=$$?; dev/app down; dev/app up; exit $$status

# Trino reads the lake (e2e/tests/it/interop.rs): tables, every snapshot's row count, time travel, both
# rankings in Trino SQL, and `tributary-marts run-once --rebuild --engine trino` row for row.
interop: trino build-services ## Trino against the lake: every snapshot read, rankings and the Trino rebuild equal ours
	$(CARGO) test --workspace --test it -- interop:: --test-threads=1

# The oracle test (e2e/tests/it/oracle.rs) over many seeds: `make oracle SEEDS=50 ROUNDS=8`.
# Seeds are 1..SEEDS, so a failure names a seed anyone can replay (ORACLE_SEED=n). `--workspace`
# keeps the feature set of `make build`: `-p tributary-e2e` alone would rebuild the dependencies.
SEEDS ?= 20
ROUNDS ?= 5
oracle: ## the randomized oracle test over SEEDS seeds of ROUNDS rounds (stack up, binaries built)
	@for seed in $$(seq 1 $(SEEDS)); do \
	  echo "oracle: seed $$seed of $(SEEDS), $(ROUNDS) rounds"; \
	  ORACLE_SEED=$$seed ORACLE_ROUNDS=$(ROUNDS) $(CARGO) test -q --workspace --test it -- oracle::random_workload --test-threads=1 || exit 1; \
	done

# Each cargo-fuzz target of fuzz/ (nightly; fuzz/README.md) for FUZZ_SECONDS; `make test` runs each
# for 20 s.
FUZZ_SECONDS ?= 20
fuzz: ## each fuzz target (CSV/JSON/NDJSON files, SOAP, Debezium records, OpenLineage events) for FUZZ_SECONDS
	dev/fuzz $(FUZZ_SECONDS)

# The chaos test (e2e/tests/it/oracle.rs): the oracle's workload while our services and the stack's
# (Postgres, Kafka, Connect, ClickHouse, the object store) are SIGKILLed at seeded random moments,
# then the lake checked against Kafka offset by offset. `make test` runs it once (2 rounds, 3 kills
# of ours and 1 of the stack's a round); this runs CHAOS_SEEDS seeds of CHAOS_ROUNDS rounds.
CHAOS_SEEDS ?= 5
CHAOS_ROUNDS ?= 4
CHAOS_KILLS ?= 4
CHAOS_STACK_KILLS ?= 2
chaos: ## the chaos test over CHAOS_SEEDS seeds: services SIGKILLed while the workload runs; nothing lost, nothing twice
	@for seed in $$(seq 1 $(CHAOS_SEEDS)); do \
	  echo "chaos: seed $$seed of $(CHAOS_SEEDS), $(CHAOS_ROUNDS) rounds, $(CHAOS_KILLS) kills of ours and $(CHAOS_STACK_KILLS) of the stack's a round"; \
	  CHAOS_SEED=$$seed CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_KILLS=$(CHAOS_KILLS) CHAOS_STACK_KILLS=$(CHAOS_STACK_KILLS) $(CARGO) test -q --workspace --test it -- oracle::services_killed --test-threads=1 --nocapture || exit 1; \
	done
