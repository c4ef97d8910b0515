#!/usr/bin/env bash
# "Is anything stale?" on what a nightly job holds: 5,000 per-symbol kline
# files (kiln-preheat's cache) feeding 5,000 feature files (kiln-featurize),
# asked of kiln-pipeline, DVC (content hashes) and make (mtimes), side by
# side in one run:
#   noop        nothing changed since the last run
#   touched     every kline file's mtime changed, same bytes (a restore from
#               backup, a copy without -p, a checkout — a few seconds before
#               the check): only the bytes may decide
#   touched-2   the check after that: cheap again?
# Before each make, `make -q` says whether make would rerun featurize.
# Each contender runs its own check-and-run command; the featurize it starts
# (when it decides to) is part of its time.
#
#   bench/pipeline/run.sh           # needs `make build`; DVC into ~/.cache/kiln/dvc-venv
#   SYMBOLS=5000 DAYS=750 bench/pipeline/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
symbols="${SYMBOLS:-5000}"
days="${DAYS:-750}"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
dvc_venv="$cache/dvc-venv"
if [ ! -x "$dvc_venv/bin/dvc" ]; then
  python3 -m venv "$dvc_venv"
  "$dvc_venv/bin/pip" install --quiet --disable-pip-version-check "dvc==3.67.1"
fi
dvc="$dvc_venv/bin/dvc"
bin="$root/target/release"
work="$root/target/bench/pipeline/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$work"

measure() {
  local name=$1; shift
  local log="$work/$name.time"
  /usr/bin/time -v bash -c "$1" > "$work/$name.out" 2> "$log" || { cat "$log" >&2; exit 1; }
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(grep "Maximum resident set size" "$log" | awk '{printf "%.0f", $NF/1024}')
  printf "%-28s %8.2f s %8s MiB\n" "$name" "$wall" "$rss" | tee -a "$work/results.txt"
}

"$bin/kiln-gen" klines --symbols "$symbols" --days "$days" --out "$work/klines.csv"
"$bin/kiln-preheat" --source "$work/klines.csv" --out "$work/kline" -q
echo "input: $(du -sh "$work/kline" | cut -f1) in $(ls "$work/kline" | wc -l) files" | tee -a "$work/results.txt"

# Three copies of the same project, one per contender.
for who in kiln dvc make; do
  mkdir -p "$work/$who"
  cp -a "$work/kline" "$work/$who/kline"
done

cat > "$work/kiln/p.yaml" <<EOF
name: bench
stages:
  featurize:
    cmd: $bin/kiln-featurize --input kline --out features --ttl never -q
    deps: [kline]
    outs: [features]
EOF
(cd "$work/dvc" && git init -q && "$dvc" init -q && "$dvc" config core.analytics false &&
  "$dvc" stage add -q -n featurize -d kline -o features \
    "$bin/kiln-featurize --input kline --out features --ttl never -q")
cat > "$work/make/Makefile" <<EOF
features/_index.parquet: \$(wildcard kline/*.parquet)
	$bin/kiln-featurize --input kline --out features --ttl never -q
EOF

kiln_run="cd '$work/kiln' && '$bin/kiln-pipeline' run p.yaml -q --json > '$work/kiln-last.json'"
dvc_run="cd '$work/dvc' && '$dvc' repro -q"
make_run="make -s -C '$work/make'"
# What kiln-pipeline decided and what it read to decide it.
kiln_said() {
  python3 - "$work/kiln-last.json" <<'PY' | tee -a "$work/results.txt"
import json, sys
r = json.load(open(sys.argv[1]))
s, f = r["stages"][0], r["fingerprints"]
print(f"    kiln-pipeline: {s['status']} ({s['reason'] or 'up to date'}); "
      f"{f['files_stat']} files stat, {f['files_hashed']} hashed, {f['bytes_hashed'] / 2**20:.0f} MiB read")
PY
}

measure first-kiln-pipeline "$kiln_run"
measure first-dvc-repro "$dvc_run"
measure first-make "$make_run"
sleep 2   # past kiln-pipeline's racy window: stats are trusted from here on
measure settle-kiln-pipeline "$kiln_run"

for round in noop touched touched-2; do
  if [ "$round" = touched ]; then
    for who in kiln dvc make; do find "$work/$who/kline" -type f -exec touch {} +; done
    sleep 2
  fi
  measure "$round-kiln-pipeline" "$kiln_run"
  kiln_said
  measure "$round-dvc-repro" "$dvc_run"
  if make -q -C "$work/make" 2>/dev/null; then
    echo "    make: up to date" | tee -a "$work/results.txt"
  else
    echo "    make: reruns featurize" | tee -a "$work/results.txt"
  fi
  measure "$round-make" "$make_run"
done
# The three project copies hold ~4.5 GB (DVC's cache holds the outs twice).
rm -rf "$work/kiln" "$work/dvc" "$work/make" "$work/kline" "$work/klines.csv"
echo "results: $work/results.txt"
