#!/usr/bin/env bash
# kiln-split side by side with DuckDB, Polars and pandas on a >= 1 GB
# date-major CSV (2,000 keys x 2,700 days x 20 features + 2 sparse targets),
# then kiln-split alone on growing inputs to show its peak RSS stays flat.
#
#   make bench-split                  # builds, sets up the venv, runs this
#   ROUNDS=5 bench/split/run.sh       # more alternating rounds (default 3)
#   SKIP_PANDAS=1 bench/split/run.sh  # pandas needs ~3 GB RAM and ~40 s
#
# Wall time and peak RSS come from /usr/bin/time -v. The tools run in
# alternating rounds (kiln, duckdb, polars, kiln, …) and the median wall time
# is reported, because a shared VM's CPU speed drifts by tens of percent over
# minutes. Runs are warm-cache (the input is read once before timing).
# Results: target/bench/split/results.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${KILN_BENCH_DIR:-$root/target/bench/split}
rounds=${ROUNDS:-3}
py=$("$root/scripts/python-env.sh" bench)
gen=$root/target/release/kiln-gen
split=$root/target/release/kiln-split
[ -x "$split" ] || (cd "$root" && cargo build --release -p kiln-split -p kiln-testkit)
mkdir -p "$work"
results=$work/results.md

dataset() { # keys days -> path
  local f=$work/daily-$1x$2.csv
  [ -f "$f" ] || "$gen" keyed --keys "$1" --days "$2" --out "$f" >&2
  cat "$f" > /dev/null
  echo "$f"
}

seconds() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; printf "%.2f", s}' "$1"; }
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
maxof() { tr ' ' '\n' | grep . | sort -g | tail -1; }

declare -A walls rsss files sizes
run_once() { # name out -- command...
  local name=$1 out=$2; shift 3
  rm -rf "$out"
  local t=$work/time-$name.txt
  if ! /usr/bin/time -v -o "$t" "$@" > "$work/log-$name.txt" 2>&1; then
    echo "$name failed, see $work/log-$name.txt" >&2
    walls[$name]+="nan "; return
  fi
  walls[$name]+="$(seconds "$t") "
  rsss[$name]+="$(rss_mib "$t") "
  files[$name]=$(find "$out" -name '*.parquet' | wc -l)
  sizes[$name]=$(du -sm "$out" | cut -f1)
  rm -rf "$out"
}
row() { # name
  local n=$1
  printf '| %s | %s | %s | %s | %s | %s MiB |\n' "$n" "$(echo "${walls[$n]}" | median)" "${walls[$n]% }" \
    "$(echo "${rsss[$n]}" | maxof)" "${files[$n]:-}" "${sizes[$n]:-}" | tee -a "$results"
}

big=$(dataset 2000 2700)
size_mib=$(( $(stat -c %s "$big") / 1048576 ))
{
  echo "## kiln-split vs the alternatives — $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo
  echo "Input: $(basename "$big"), ${size_mib} MiB, 5,400,000 rows, 2,000 keys, date-major."
  echo "$rounds alternating rounds; wall = median (all runs listed); RSS = max over runs."
  echo
  echo "| tool | wall s (median) | wall s (runs) | peak RSS MiB | parquet files | output |"
  echo "|---|---|---|---|---|---|"
} | tee "$results"
for r in $(seq "$rounds"); do
  run_once kiln-split "$work/out-kiln" -- "$split" "$big" --key COMID --date date --out "$work/out-kiln" --quiet
  run_once duckdb "$work/out-duckdb" -- "$py" "$root/bench/split/duckdb_split.py" "$big" "$work/out-duckdb" COMID
  run_once polars "$work/out-polars" -- "$py" "$root/bench/split/polars_split.py" "$big" "$work/out-polars" COMID
done
if [ -z "${SKIP_PANDAS:-}" ]; then
  run_once pandas "$work/out-pandas" -- "$py" "$root/bench/split/pandas_split.py" "$big" "$work/out-pandas" COMID date
fi
for n in kiln-split duckdb polars pandas; do [ -n "${walls[$n]:-}" ] && row "$n"; done
k=$(echo "${walls[kiln-split]}" | median); d=$(echo "${walls[duckdb]}" | median)
echo | tee -a "$results"
echo "kiln-split / DuckDB wall (medians): $(awk -v k="$k" -v d="$d" 'BEGIN {printf "%.2f", k/d}')x" | tee -a "$results"

{
  echo
  echo "### kiln-split peak RSS as the input grows (default --memory 256MiB)"
  echo
  echo "| input | wall s | wall s (runs) | peak RSS MiB | parquet files | output |"
  echo "|---|---|---|---|---|---|"
} | tee -a "$results"
for shape in "500 2700" "2000 2700" "4000 2700" "8000 2700" "100000 50"; do
  set -- $shape
  f=$(dataset "$1" "$2")
  name="${1} keys x ${2} days ($(( $(stat -c %s "$f") / 1048576 )) MiB)"
  run_once "$name" "$work/out-scale" -- "$split" "$f" --key COMID --date date --out "$work/out-scale" --quiet
  row "$name"
done
echo
echo "results: $results"
