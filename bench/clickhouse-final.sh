#!/usr/bin/env bash
# Times reading one whole publication's ranking tables from ClickHouse with and without FINAL
# (what the API does when a new publication appears: rankings/src/store/clickhouse/mod.rs,
# `whole_table`). Usage: bench/clickhouse-final.sh DATABASE [ROUNDS] > bench/results/FILE.md
set -euo pipefail
db=$1; runs=${2:-7}
ch(){ curl -sS 'http://127.0.0.1:8123/' --data-binary "$1"; }
P=$(ch "SELECT publication_id FROM $db.publications FINAL ORDER BY version DESC LIMIT 1")
echo "# Reading a whole publication: FINAL on the server vs none"
echo
echo "$(date -u +%FT%TZ), commit \`$(git rev-parse HEAD)\`, ClickHouse $(ch 'SELECT version()'), database \`$db\`, publication \`$P\`; $runs rounds of each query in turn, \`curl\` wall time, output \`FORMAT RowBinary\` discarded. Command: \`bash $0 $*\`."
echo
echo "| table | rows | with FINAL, median [min–max] s | without, median [min–max] s |"
echo "|---|---:|---:|---:|"
for t in city_ranking city_salesman_ranking salesman_ranking; do
  rows=$(ch "SELECT count() FROM $db.$t WHERE publication_id = '$P'")
  a=(); b=()
  for i in $(seq "$runs"); do
    a+=("$( { /usr/bin/time -f %e curl -sS -o /dev/null 'http://127.0.0.1:8123/' --data-binary "SELECT * FROM $db.$t FINAL WHERE publication_id = '$P' FORMAT RowBinary"; } 2>&1 )")
    b+=("$( { /usr/bin/time -f %e curl -sS -o /dev/null 'http://127.0.0.1:8123/' --data-binary "SELECT * FROM $db.$t WHERE publication_id = '$P' FORMAT RowBinary"; } 2>&1 )")
  done
  stat(){ printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{printf "%.3f [%.3f–%.3f]", v[int((NR+1)/2)], v[1], v[NR]}'; }
  echo "| $t | $rows | $(stat "${a[@]}") | $(stat "${b[@]}") |"
done
