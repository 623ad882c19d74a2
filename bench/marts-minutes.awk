# Per minute of a marts.log: published runs, events per run (mean, max), means of load, fold,
# the wait for commits (commit), the landed commits' own seconds (commit_behind), sales queued.
/published rankings/ {
  m = substr($1, 12, 5)
  ev = 0; if (match($0, /events_in=[0-9]+/)) ev = substr($0, RSTART + 10, RLENGTH - 10) + 0
  q = -1; if (match($0, /sales_queued=[0-9]+/)) q = substr($0, RSTART + 13, RLENGTH - 13) + 0
  split("load fold commit commit_behind publish", names, " ")
  for (i in names) {
    v = 0
    if (match($0, " " names[i] ": [0-9.e-]+")) { s = substr($0, RSTART, RLENGTH); sub(/.*: /, "", s); v = s + 0 }
    sum[m, names[i]] += v
  }
  if (!(m in runs)) order[++n] = m
  runs[m]++; evs[m] += ev; if (ev > evmax[m]) evmax[m] = ev
  if (q > qmax[m]) qmax[m] = q
}
END {
  for (k = 1; k <= n; k++) {
    m = order[k]; r = runs[m]
    printf "%s runs=%d events/run mean=%d max=%d load_s=%.3f fold_s=%.3f wait_s=%.3f commits_landed_s=%.3f publish_s=%.3f queued_max=%d\n", m, r, evs[m]/r, evmax[m], sum[m,"load"]/r, sum[m,"fold"]/r, sum[m,"commit"]/r, sum[m,"commit_behind"]/r, sum[m,"publish"]/r, qmax[m]
  }
}
