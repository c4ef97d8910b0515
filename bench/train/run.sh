#!/usr/bin/env bash
# bench/train — kiln-train's data path and training, measured.
#
# (1) Loader only, no model step: window 10 over 2,000 keys x 10 years
#     (20 features, 2 sparse targets), kiln's loader side by side with a
#     pandas reimplementation of the seed's iterator (load 200 per-key
#     parquet files, concat, sliding windows, scale), alternating rounds.
#     Then kiln's loader alone on 500 / 1,000 / 2,000 / 4,000 keys: peak RSS
#     must stay flat.
# (2) Full training (1 epoch) over a dataset >= 2 GB on disk: peak RSS and
#     the share of time the model waits for data (metrics.csv).
#
#   make bench-train                   # builds, sets up the venv, runs this
#   ROUNDS=5 bench/train/run.sh        # more alternating rounds (default 3)
#   SKIP_FULL=1 bench/train/run.sh     # only part (1); SKIP_LOADER=1: only (2)
#
# The loader is measured through `loader_bench` (kiln-train-data's example,
# the same code as `kiln-train scan`) so the number is the loader's, not
# libtorch's: kiln-train itself maps ~400 MiB of libtorch + CUDA libraries
# whatever the data (its own line in the table). Results:
# target/bench/train/results.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${KILN_BENCH_DIR:-$root/target/bench/train}
rounds=${ROUNDS:-3}
py=$("$root/scripts/python-env.sh" bench)
rel=$root/target/release
[ -x "$rel/examples/loader_bench" ] && [ -x "$rel/kiln-train" ] ||
  (cd "$root" && scripts/with-libtorch.sh cargo build --release -p kiln-split -p kiln-testkit -p kiln-train \
    && cargo build --release -p kiln-train-data --example loader_bench)
mkdir -p "$work"
results=$work/results.md
features=$(seq -f 'feat_%02g' 1 20 | paste -sd,)
targets=target_1,target_2

dataset() { # keys days -> split dataset dir (CSV generated, split, CSV removed)
  local ds=$work/split-$1x$2
  if [ ! -f "$ds/_dataset.json" ]; then
    local csv=$work/daily-$1x$2.csv
    "$rel/kiln-gen" keyed --keys "$1" --days "$2" --out "$csv" >&2
    "$rel/kiln-split" "$csv" --key COMID --date date --out "$ds" --force -q >&2
    rm -f "$csv"
  fi
  echo "$ds"
}

config=$work/loader.yaml
cat > "$config" <<YAML
features: [$features]
targets: [$targets]
window: 10
batch_size: 256
keys_per_load: 200
split: key:0.8,0.2
YAML

seconds() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; printf "%.2f", s}' "$1"; }
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
maxof() { tr ' ' '\n' | grep . | sort -g | tail -1; }
jsonval() { "$py" -c "import json,sys; print(round(json.load(open(sys.argv[1]))[sys.argv[2]], 2))" "$1" "$2"; }

{
  echo "# bench/train — $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo
} > "$results"

if [ -z "${SKIP_LOADER:-}" ]; then
ds=$(dataset 2000 3650)
ds_mib=$(du -sm "$ds" | cut -f1)
cat "$ds"/*.parquet > /dev/null
declare -A wps rss
for r in $(seq 1 "$rounds"); do
  /usr/bin/time -v -o "$work/time-kiln.txt" "$rel/examples/loader_bench" "$ds" "$config" > "$work/kiln.json" 2> "$work/log-kiln.txt"
  wps[kiln]+="$(jsonval "$work/kiln.json" windows_per_s) "; rss[kiln]+="$(rss_mib "$work/time-kiln.txt") "
  /usr/bin/time -v -o "$work/time-pandas.txt" "$py" "$root/bench/train/pandas_iterator.py" "$ds" 10 200 "$features" "$targets" \
    > "$work/pandas.json" 2> "$work/log-pandas.txt"
  wps[pandas]+="$(jsonval "$work/pandas.json" windows_per_s) "; rss[pandas]+="$(rss_mib "$work/time-pandas.txt") "
  echo "round $r: kiln ${wps[kiln]} / pandas ${wps[pandas]} windows/s" >&2
done
kiln_windows=$("$py" -c "import json; print(json.load(open('$work/kiln.json'))['windows'])")
pandas_windows=$("$py" -c "import json; print(json.load(open('$work/pandas.json'))['windows'])")
/usr/bin/time -v -o "$work/time-scan.txt" "$rel/kiln-train" scan "$ds" --config "$config" --json > "$work/scan.json" 2> "$work/log-scan.txt"
{
  echo "## (1) Loader only: window 10, 2,000 keys x 3,650 days, 20 features ($ds_mib MiB on disk)"
  echo
  echo "Windows with an observed target: kiln $kiln_windows, pandas $pandas_windows. Median of $rounds alternating rounds."
  echo
  echo "| loader | windows/s (median) | per round | peak RSS (max) |"
  echo "|---|---|---|---|"
  for n in kiln pandas; do
    printf '| %s | %s | %s | %s MiB |\n' "$n" "$(echo "${wps[$n]}" | median)" "${wps[$n]% }" "$(echo "${rss[$n]}" | maxof)"
  done
  printf '| kiln-train scan (same loader inside the libtorch binary) | %s | | %s MiB |\n' \
    "$(jsonval "$work/scan.json" windows_per_s)" "$(rss_mib "$work/time-scan.txt")"
  k=$(echo "${wps[kiln]}" | median); p=$(echo "${wps[pandas]}" | median)
  echo
  echo "kiln / pandas = $(awk -v k="$k" -v p="$p" 'BEGIN {printf "%.1f", k/p}')x"
  echo
  echo "### Loader peak RSS as the dataset grows (keys x 3,650 days)"
  echo
  echo "| keys | on disk | windows | windows/s | peak RSS |"
  echo "|---|---|---|---|---|"
} >> "$results"
for keys in 500 1000 2000 4000; do
  d=$(dataset "$keys" 3650)
  /usr/bin/time -v -o "$work/time-grow.txt" "$rel/examples/loader_bench" "$d" "$config" > "$work/grow.json" 2> /dev/null
  printf '| %s | %s MiB | %s | %s | %s MiB |\n' "$keys" "$(du -sm "$d" | cut -f1)" \
    "$("$py" -c "import json; print(json.load(open('$work/grow.json'))['windows'])")" \
    "$(jsonval "$work/grow.json" windows_per_s)" "$(rss_mib "$work/time-grow.txt")" >> "$results"
done
fi

if [ -z "${SKIP_FULL:-}" ]; then
  big_keys=${BIG_KEYS:-4500}
  big=$(dataset "$big_keys" 3650)
  run=$work/run-full
  rm -rf "$run"
  /usr/bin/time -v -o "$work/time-fit.txt" "$rel/kiln-train" fit "$big" --run "$run" --config "$config" \
    --epochs "${EPOCHS:-1}" --hidden-size 64 --device cpu --json > "$work/fit.json" 2> "$work/log-fit.txt"
  {
    echo
    echo "## (2) Full training: $big_keys keys x 3,650 days ($(du -sm "$big" | cut -f1) MiB on disk), hidden 64, CPU"
    echo
    echo "| epoch | train windows/s | data wait share | epoch seconds | peak RSS |"
    echo "|---|---|---|---|---|"
    "$py" - "$run/metrics.csv" "$(rss_mib "$work/time-fit.txt")" <<'PY'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    print(f"| {r['epoch']} | {float(r['windows_per_s']):.0f} | {100*float(r['data_wait_share']):.1f} % | {float(r['seconds']):.0f} | {sys.argv[2]} MiB (whole process, /usr/bin/time) |")
PY
  } >> "$results"
fi
cat "$results"
