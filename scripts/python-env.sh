#!/usr/bin/env bash
# Create (once) the Python venv that Kiln's tests and benchmarks use, in a
# shared cache so that fresh clones and CI reuse it. Prints the venv's python.
#
#   scripts/python-env.sh            # test needs: pyarrow, duckdb
#   scripts/python-env.sh bench      # + pandas, polars (benchmark baselines)
set -euo pipefail
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
venv="$cache/venv"
want="$(dirname "$0")/python-requirements-${1:-test}.txt"
# The stamp covers the file and what it includes (-r), so a changed test
# list also reaches a venv made for the benchmarks.
stamp="$venv/.kiln-$(cat "$want" "$(dirname "$0")/python-requirements-test.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  mkdir -p "$cache"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$want" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
