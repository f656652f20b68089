# Sourced by .ci/run and scripts/test: how busy a phase kept the cores.
# cpu: the busy and total jiffies so far, all cores (/proc/stat's first line; busy is all but
# idle and iowait, guest time being in user time already).
cpu() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
# busy_pct B0 N0 B1 N1: the percentage of the cores busy between two `cpu` readings.
busy_pct() { echo $((100 * ($3 - $1) / ($4 - $2 > 0 ? $4 - $2 : 1))); }
