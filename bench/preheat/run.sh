#!/usr/bin/env bash
# kiln-preheat vs what users do today, side by side in one run, on
# 5,000 symbols x 750 trading days in MariaDB (3.5 M rows):
#   raw     `mariadb --quick` ordered scan to /dev/null (the floor)
#   kiln    kiln-preheat, full preheat into an empty cache
#   cx      ConnectorX -> Arrow, pyarrow writes one file per symbol
#   pandas  read_sql per symbol + to_parquet (the seed's script)
# then the nightly case: one new day for every symbol, kiln-preheat
# refreshing the cache incrementally (--ttl 0s).
#
#   bench/preheat/run.sh            # needs `make build` and MariaDB
#   KILN_BENCH_URL=mysql://root@127.0.0.1:3306/test SYMBOLS=5000 DAYS=750 ROUNDS=1
set -euo pipefail
cd "$(dirname "$0")/../.."
url="${KILN_BENCH_URL:-mysql://root@127.0.0.1:3306/test}"
symbols="${SYMBOLS:-5000}"
days="${DAYS:-750}"
rounds="${ROUNDS:-1}"
table="bench_kline_${symbols}x${days}"
py="$(scripts/python-env.sh bench)"
work="target/bench/preheat/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$work"
host=$(echo "$url" | sed -E 's|mysql://[^@]*@([^:/]+).*|\1|')
port=$(echo "$url" | sed -E 's|.*:([0-9]+)/.*|\1|')
db="${url##*/}"
sql() { mariadb -h"$host" -P"$port" -uroot "$db" -N -e "$1"; }

rows=$(sql "SELECT COUNT(*) FROM $table" 2>/dev/null || echo 0)
if [ "$rows" = "0" ]; then
  echo "loading $table ..." >&2
  ./target/release/kiln-gen klines --symbols "$symbols" --days "$days" --mysql "$url" --table "$table" --replace
fi
# Index statistics, as any table has some time after its load: without them
# MariaDB lists the symbols (SELECT DISTINCT) by scanning the whole primary
# key (1.5 s) instead of one dive per symbol (0.01-0.04 s).
sql "ANALYZE TABLE $table" > /dev/null
sql "SELECT COUNT(*) FROM $table" > /dev/null
echo "table $table: $(sql "SELECT COUNT(*) FROM $table") rows" >&2

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
  printf "%-28s %8.2f s %8s MiB\n" "$name" "$wall" "$rss" | tee -a "$work/results.txt"
}

# Warm the buffer pool once so every contender reads from memory.
sql "SELECT * FROM $table ORDER BY symbol, trade_date" > /dev/null
for r in $(seq 1 "$rounds"); do
  measure "raw-scan-$r" mariadb -h"$host" -P"$port" -uroot --quick "$db" -e "SELECT * FROM $table ORDER BY symbol, trade_date"
  # Each contender writes into a directory of its own that nothing was
  # deleted from recently (ext4 inode allocation slows down after mass deletes).
  measure "kiln-preheat-$r" ./target/release/kiln-preheat --url "$url" --table "$table" --out "$work/kiln-$r" -q
  measure "connectorx-pyarrow-$r" "$py" bench/preheat/connectorx_preheat.py "$url" "$table" "$work/cx-$r"
done
measure "pandas-read_sql-per-symbol" "$py" bench/preheat/pandas_preheat.py "$url" "$table" "$work/pandas"

# The new day settled on disk, as it would be hours after the vendor's load:
# InnoDB's dirty pages written out (else its page cleaner writes them during
# the run, and kiln-preheat's syncfs, which flushes the whole filesystem
# that MariaDB's datadir shares here, waits for them too), its purge done,
# then `sync`.
settle() {
  local pct
  pct=$(sql "SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
  sql "SET GLOBAL innodb_max_dirty_pages_pct = 0"
  for _ in $(seq 1 150); do
    [ "$(sql "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | awk '{print $2}')" = 0 ] && break
    sleep 0.2
  done
  sql "SET GLOBAL innodb_max_dirty_pages_pct = $pct"
  # ... and InnoDB's purge done (a loose index scan for the symbol list
  # walks delete-marked rows until then: 0.26 s instead of 0.01 s).
  for _ in $(seq 1 150); do
    sql "SHOW ENGINE INNODB STATUS" | grep -q "History list length 0" && break
    sleep 0.2
  done
  sync
}

# Nightly: one new trading day for every symbol, five nights in a row. The
# new day walks on from the symbol's last row (close within ±2 %, open
# within ±1 % of the last close, high/low around them, volume ×0.5–1.5),
# from a hash of symbol and date: a copy of the last row would compress
# unlike real days (snappy shrinks a run of equal rows). The first refresh
# after a full preheat writes new files; from the second on, the version
# before last (kept as the spare) is updated in place — the steady state
# of a nightly job.
last=$(sql "SELECT MAX(trade_date) FROM $table")
added=()
cleanup() { for d in "${added[@]}"; do sql "DELETE FROM $table WHERE trade_date = '$d'"; done; }
trap cleanup EXIT
# One new day in the table, settled, then a refresh measured as `$1`.
new_day_and_refresh() {
  local next
  next=$(sql "SELECT DATE_ADD('$last', INTERVAL IF(DAYOFWEEK('$last') = 6, 3, 1) DAY)")
  r() { echo "CRC32(CONCAT(k.symbol, '$next', '$1')) / 4294967295"; }
  sql "INSERT INTO $table
       WITH k AS (SELECT k.*, $(r c) AS rc, $(r o) AS ro, $(r h) AS rh, $(r l) AS rl, $(r v) AS rv
                  FROM $table k JOIN (SELECT symbol, MAX(trade_date) d FROM $table GROUP BY symbol) m
                  ON k.symbol = m.symbol AND k.trade_date = m.d),
            p AS (SELECT symbol, ROUND(close * (0.98 + 0.04 * rc), 2) AS c, ROUND(close * (0.99 + 0.02 * ro), 2) AS o,
                         rh, rl, ROUND(volume * (0.5 + rv)) AS v, turnover FROM k)
       SELECT symbol, '$next', o, ROUND(GREATEST(o, c) * (1 + 0.01 * rh), 2), ROUND(LEAST(o, c) * (1 - 0.01 * rl), 2),
              c, v, ROUND(v * c, 2), turnover, '$next 16:00:00' FROM p"
  added+=("$next")
  settle
  last=$next
  refresh "$1"
}
# -v: the phases' timestamps land in the .time file beside the timing.
refresh() {
  measure "$1" ./target/release/kiln-preheat --url "$url" --table "$table" --out "$work/kiln-1" --ttl 0s --json -q -v
  grep -E '"(fetched_incremental|unchanged|rows_fetched|files_written)"' "$work/$1.out" | tr -d ' ,' | tr '\n' ' '; echo
}
for night in $(seq 1 "${NIGHTS:-5}"); do
  new_day_and_refresh "kiln-preheat-refresh-night-$night"
done
# A weekend: two nightly runs that find nothing new, then a night with a
# new day again (its spare must still be updatable in place).
refresh kiln-preheat-quiet-night-1
refresh kiln-preheat-quiet-night-2
new_day_and_refresh kiln-preheat-refresh-after-quiet-nights
# Each night against the median full preheat.
full=$(grep '^kiln-preheat-[0-9]' "$work/results.txt" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
grep '^kiln-preheat-refresh' "$work/results.txt" | awk -v full="$full" \
  '{printf "%-34s %5.1f %% of the median full preheat (%.2f s)\n", $1, 100 * $2 / full, full}' | tee -a "$work/results.txt"
echo "results: $work/results.txt"
