#!/usr/bin/env bash
# Run a command (usually cargo) with libtorch available to tch's build:
# installs torch==2.11.0 into Kiln's cache once (scripts/libtorch-env.sh),
# then puts that venv first on PATH with LIBTORCH_USE_PYTORCH=1, which is how
# torch-sys finds headers and libraries. kiln-train's build.rs records an
# rpath, so the built binary itself needs none of this at run time.
#
#   scripts/with-libtorch.sh cargo build -p kiln-train
set -euo pipefail
python="$("$(dirname "$0")/libtorch-env.sh")"
venv="$(dirname "$(dirname "$python")")"
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
exec "$@"
