#!/usr/bin/env bash
# Install (once) libtorch for kiln-train: torch==2.11.0 from PyPI into a venv
# in Kiln's shared cache, so fresh clones and CI reuse it. Prints the venv's
# python; build with LIBTORCH_USE_PYTORCH=1 and that python first on PATH
# (the Makefile does this). tch 0.24.0 is built against exactly this torch.
#
# The PyPI wheel is the CUDA build; its nvidia-* dependencies are what
# libtorch_cuda.so loads, so they are installed too (a few GB, once). On a
# machine without a GPU the same libraries simply find no device.
set -euo pipefail
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
venv="$cache/torch-2.11.0"
want="$(dirname "$0")/python-requirements-torch.txt"
stamp="$venv/.kiln-$(sha256sum "$want" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  mkdir -p "$cache"
  # Another make (or a CI job) may be installing at the same time.
  exec 9>"$cache/.torch.lock"
  flock 9
  if [ ! -f "$stamp" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$want" >&2
    touch "$stamp"
  fi
fi
echo "$venv/bin/python"
