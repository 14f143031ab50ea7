#!/usr/bin/env bash
# Installs libtorch 2.13.0 (the PyPI wheel torch==2.13.0 with its dependencies) into a
# per-user cache outside the clone, once, and links it into the repository as `.libtorch`,
# which `.cargo/config.toml` hands to tch's build as LIBTORCH.
#
# Idempotent: a second run finds the finished install and only refreshes the link.
# Cache: $COUPLET_CACHE, else $XDG_CACHE_HOME/couplet, else ~/.cache/couplet.
# A LIBTORCH or LIBTORCH_USE_PYTORCH that you export yourself still wins (cargo's [env]
# never overrides the caller's environment).
#
#   bash scripts/setup-libtorch.sh                    # install libtorch, link it into this clone
#   bash scripts/setup-libtorch.sh --for PATH/TO/CRATE
#
# `--for` then also sets up a crate of yours that depends on couplet, so that plain
# `cargo build`/`cargo test`/`cargo run` inside it need no exported variable and its binaries,
# tests and examples need no LD_LIBRARY_PATH (see scripts/setup-crate.sh for each edit).
set -euo pipefail

for_crate=
while [ $# -gt 0 ]; do
  case "$1" in
    --for) [ $# -ge 2 ] || { echo "[setup-libtorch] error: --for needs a crate folder" >&2; exit 2; }
           for_crate=$2; shift 2 ;;
    --for=*) for_crate=${1#--for=}; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "[setup-libtorch] error: unknown argument '$1' (expected --for PATH/TO/CRATE)" >&2; exit 2 ;;
  esac
done
if [ -n "$for_crate" ] && [ ! -f "$for_crate/Cargo.toml" ]; then
  echo "[setup-libtorch] error: $for_crate/Cargo.toml does not exist: --for takes the folder of a Cargo package (cargo new NAME makes one)" >&2
  exit 2
fi

TORCH_VERSION=2.13.0
SAFETENSORS_VERSION=0.8.0
NUMPY_VERSION=2.4.6
TENSORBOARD_VERSION=2.21.0

# `pwd -P`: the physical path, the one cargo sees as its current directory (it resolves
# `.cargo/config.toml`'s relative LIBTORCH against it); setup-crate.sh must write the same string.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cache=${COUPLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/couplet}
prefix="$cache/torch-$TORCH_VERSION"
venv="$prefix/venv"
marker="$prefix/.complete"

say() { printf '[setup-libtorch] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [ ! -f "$marker" ]; then
  python=${PYTHON:-}
  if [ -z "$python" ]; then
    for candidate in python3 python; do
      if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
    done
  fi
  [ -n "$python" ] || die "no python3 found on PATH. Install Python 3.10-3.13 with pip and venv (Debian: apt-get install python3 python3-venv python3-pip), or set PYTHON=/path/to/python3."
  "$python" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 14) else 1)' \
    || die "$python is $("$python" --version 2>&1); torch $TORCH_VERSION wheels need Python 3.10-3.14."
  "$python" -m venv --help >/dev/null 2>&1 \
    || die "$python has no venv module (Debian: apt-get install python3-venv)."

  say "installing torch==$TORCH_VERSION with its CUDA runtime dependencies (about 4.7 GB) into $prefix"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  "$python" -m venv "$venv" || die "could not create a virtual environment in $venv"
  "$venv/bin/python" -m pip --version >/dev/null 2>&1 \
    || die "the virtual environment has no pip (Debian: apt-get install python3-pip python3-venv)."
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar on \
      "torch==$TORCH_VERSION" "safetensors==$SAFETENSORS_VERSION" "numpy==$NUMPY_VERSION" \
    || die "pip could not install torch==$TORCH_VERSION (see pip's message above)."
  "$venv/bin/python" -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '$TORCH_VERSION' else 1)" \
    || die "the installed torch is not $TORCH_VERSION."
  touch "$marker"
  say "done"
fi

# TensorBoard's reader, for the summary writer's tests (also in venvs made before it was added).
if ! "$venv/bin/python" -c "import tensorboard, sys; sys.exit(0 if tensorboard.__version__ == '$TENSORBOARD_VERSION' else 1)" >/dev/null 2>&1; then
  say "installing tensorboard==$TENSORBOARD_VERSION into $venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "tensorboard==$TENSORBOARD_VERSION" \
    || die "pip could not install tensorboard==$TENSORBOARD_VERSION (see pip's message above)."
fi

libtorch=$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
[ -f "$libtorch/lib/libtorch_cpu.so" ] || die "$libtorch/lib/libtorch_cpu.so is missing; delete $prefix and run again."
ln -sfn "$libtorch" "$repo/.libtorch"
ln -sfn "$venv" "$repo/.venv"
say "libtorch $TORCH_VERSION ready: $repo/.libtorch -> $libtorch"

if [ -n "$for_crate" ]; then
  bash "$repo/scripts/setup-crate.sh" "$repo" "$for_crate"
fi
