#!/bin/bash
# Used for bench/results/cdc-2026-12-06-aedc870-10k-10min-state-unlogged.md: run beside
# `tributary-bench cdc --rates 10000 --seconds 600 --runs 1`, it made the run's kept state UNLOGGED
# (no write-ahead log) before the load began (11:37:22, the load from 11:37:32). Not a setting of Tributary.
# It takes the first state schema of a cdc bench it finds: run it when no other is left (the first try
# found one a `--keep` run had left and was run again after that schema was dropped).
# Experiment: turn the marts' kept state of the running cdc bench UNLOGGED once it exists.
PG="host=127.0.0.1 user=tributary password=tributary dbname=tributary"
for i in $(seq 1 600); do
  s=$(psql "$PG" -Atc "select n.nspname from pg_namespace n join pg_class c on c.relnamespace=n.oid where n.nspname like 'marts_state_bench_%' and c.relname='cell' limit 1")
  if [ -n "$s" ]; then
    echo "$(date -u +%T) state schema $s: setting UNLOGGED"
    psql "$PG" -c "ALTER TABLE $s.sale SET UNLOGGED" -c "ALTER TABLE $s.cell SET UNLOGGED" -c "ALTER TABLE $s.checkpoint SET UNLOGGED"
    psql "$PG" -Atc "select relname, relpersistence from pg_class where relnamespace='$s'::regnamespace and relkind in ('r','i')"
    exit 0
  fi
  sleep 1
done
echo "no state schema appeared"; exit 1
