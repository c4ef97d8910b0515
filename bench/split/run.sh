#!/usr/bin/env bash
# kiln-split side by side with pandas, DuckDB and Polars on a >= 1 GB
# date-major CSV (2,000 keys x 2,700 days x 20 features + 2 sparse targets),
# then kiln-split alone on growing inputs to show its peak RSS stays flat.
#
#   make bench-split                 # builds, sets up the venv, runs this
#   SKIP_PANDAS=1 bench/split/run.sh # pandas needs ~10 GB RAM and minutes
#
# Wall time and peak RSS come from /usr/bin/time -v. Runs are warm-cache
# (the input is read once before timing). Results: target/bench/split/results.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${KILN_BENCH_DIR:-$root/target/bench/split}
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

measure() { # name input out -- command...
  local name=$1 input=$2 out=$3; shift 4
  rm -rf "$out"
  local t=$work/time-$name.txt
  if ! /usr/bin/time -v -o "$t" "$@" > "$work/log-$name.txt" 2>&1; then
    echo "| $name | failed (see $work/log-$name.txt) | | | |" | tee -a "$results"
    return
  fi
  local files; files=$(find "$out" -name '*.parquet' | wc -l)
  local size; size=$(du -sm "$out" | cut -f1)
  printf '| %s | %s | %s | %s | %s MiB |\n' "$name" "$(seconds "$t")" "$(rss_mib "$t")" "$files" "$size" | tee -a "$results"
}

big=$(dataset 2000 2700)
size_mib=$(( $(stat -c %s "$big") / 1048576 ))
{
  echo "## kiln-split vs the alternatives — $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo
  echo "Input: $(basename "$big"), ${size_mib} MiB, 5,400,000 rows, 2,000 keys, date-major."
  echo
  echo "| tool | wall s | peak RSS MiB | parquet files | output |"
  echo "|---|---|---|---|---|"
} | tee "$results"
measure kiln-split "$big" "$work/out-kiln" -- "$split" "$big" --key COMID --date date --out "$work/out-kiln" --quiet
measure duckdb "$big" "$work/out-duckdb" -- "$py" "$root/bench/split/duckdb_split.py" "$big" "$work/out-duckdb" COMID
measure polars "$big" "$work/out-polars" -- "$py" "$root/bench/split/polars_split.py" "$big" "$work/out-polars" COMID
if [ -z "${SKIP_PANDAS:-}" ]; then
  measure pandas "$big" "$work/out-pandas" -- "$py" "$root/bench/split/pandas_split.py" "$big" "$work/out-pandas" COMID date
fi

{
  echo
  echo "### kiln-split peak RSS as the input grows (default --memory 256MiB)"
  echo
  echo "| tool | wall s | peak RSS MiB | parquet files | output |"
  echo "|---|---|---|---|---|"
} | tee -a "$results"
for shape in "500 2700" "2000 2700" "4000 2700" "100000 50"; do
  set -- $shape
  f=$(dataset "$1" "$2")
  measure "kiln-split ${1}x${2} ($(( $(stat -c %s "$f") / 1048576 )) MiB)" "$f" "$work/out-scale" -- \
    "$split" "$f" --key COMID --date date --out "$work/out-scale" --quiet
done
rm -rf "$work/out-scale"
echo
echo "results: $results"
