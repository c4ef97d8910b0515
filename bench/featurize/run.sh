#!/usr/bin/env bash
# kiln-featurize vs what users do today, side by side in one run, on
# 5,000 symbols x 750 trading days (3.5 M rows) preheated by kiln-preheat:
#   kiln          kiln-featurize, every symbol computed into an empty cache
#   pandas        a loop over symbols: read_parquet, rolling/ewm, to_parquet
#   talib-pandas  the same loop with TA-Lib for the indicators it has
# then peak RSS as the input grows (--limit), and the nightly case: one new
# day for every symbol, preheated and featurized incrementally.
#
#   bench/featurize/run.sh          # needs `make build`
#   SYMBOLS=5000 DAYS=750 ROUNDS=3 bench/featurize/run.sh   # ~12 min on 2 cores
set -euo pipefail
cd "$(dirname "$0")/../.."
symbols="${SYMBOLS:-5000}"
days="${DAYS:-750}"
rounds="${ROUNDS:-3}"
py="$(scripts/python-env.sh bench)"
work="target/bench/featurize/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$work"

# Wall seconds and peak RSS (MiB) of one command, from /usr/bin/time -v.
measure() {
  local name=$1; shift
  local log="$work/$name.time"
  # What earlier contenders left unwritten goes to disk first: else a tool
  # that syncs its output (kiln's stages do, pandas does not) waits for the
  # previous one's writeback too.
  sync
  /usr/bin/time -v "$@" > "$work/$name.out" 2> "$log"
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(grep "Maximum resident set size" "$log" | awk '{printf "%.0f", $NF/1024}')
  printf "%-34s %8.2f s %8s MiB\n" "$name" "$wall" "$rss" | tee -a "$work/results.txt"
}

# Klines for DAYS+3 days; the cache starts with every symbol's last three
# days left out, which three nights then add one by one.
./target/release/kiln-gen klines --symbols "$symbols" --days "$((days + 3))" --out "$work/klines-all.csv"
# The dump without each symbol's last K rows (it is grouped by symbol).
trim() {
  awk -F, -v k="$1" 'NR == FNR { if (FNR > 1) n[$1]++; next }
    FNR == 1 { print; next } { if (++i[$1] <= n[$1] - k) print }' "$2" "$2"
}
trim 3 "$work/klines-all.csv" > "$work/klines.csv"
./target/release/kiln-preheat --source "$work/klines.csv" --out "$work/kline" -q
echo "input: $(./target/release/kiln-preheat info --out "$work/kline" | head -1)" | tee -a "$work/results.txt"
cat "$work/kline"/*.parquet > /dev/null   # every contender reads from the page cache

# Each contender writes into a directory of its own, and nothing is deleted
# until the end: ext4's inode allocation slows down for minutes after mass
# deletes, which would tax whoever runs next.
# Alternating rounds: the VM's speed drifts by tens of percent within
# minutes, so the contenders share each stretch of it; medians are compared.
for r in $(seq 1 "$rounds"); do
  measure "kiln-featurize-$r" ./target/release/kiln-featurize --input "$work/kline" --out "$work/kiln-$r" -q
  measure "pandas-rolling-ewm-$r" "$py" bench/featurize/pandas_features.py "$work/kline" "$work/pandas-$r"
  measure "talib-pandas-$r" "$py" bench/featurize/pandas_features.py "$work/kline" "$work/talib-$r" --talib
done
median() { grep "^$1-[0-9]* " "$work/results.txt" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
kiln=$(median kiln-featurize)
for other in pandas-rolling-ewm talib-pandas; do
  awk -v k="$kiln" -v o="$(median "$other")" -v n="$other" \
    'BEGIN {printf "%-34s %8.2f s median; kiln-featurize (%.2f s) is %.1fx faster\n", n, o, k, o / k}' | tee -a "$work/results.txt"
done

# Peak RSS as the input grows: flat is the product.
for n in 500 1000 2500 "$symbols"; do
  measure "kiln-featurize-rss-$n-symbols" ./target/release/kiln-featurize --input "$work/kline" --out "$work/kiln-rss-$n" --limit "$n" -q
done

# Nightly: one new day for every symbol, preheated then featurized, three
# nights in a row (the dump keeps its path: a cache refuses another source).
# The first night after a full run writes new files; from the second on,
# the version before last (kept as the spare) is rewritten in place.
for night in 1 2 3; do
  trim "$((3 - night))" "$work/klines-all.csv" > "$work/klines.csv"
  measure "kiln-preheat-night-$night" ./target/release/kiln-preheat --source "$work/klines.csv" --out "$work/kline" --ttl 0s -q
  measure "kiln-featurize-night-$night" ./target/release/kiln-featurize --input "$work/kline" --out "$work/kiln-1" --json -q
  grep -E '"(computed_incremental|computed_full|rows_computed)"' "$work/kiln-featurize-night-$night.out" | tr -d ' ,' | tr '\n' ' '; echo
done
echo "results: $work/results.txt"
