#!/usr/bin/env bash
# The Python side of the training-throughput benchmark (bench/training-throughput.ts): a virtual
# environment outside the repository with tensorflow-cpu==2.21.0, the same TensorFlow that
# tfjs-node runs on here (scripts/setup-tensorflow.sh), so that Keras and our trainer run the same
# kernels. Prints the venv's python on stdout. Idempotent: a second run checks the version and
# returns in about two seconds.
#
# Environment: COMPOFA_CACHE_DIR   cache root (default ${XDG_CACHE_HOME:-~/.cache}/compofa-operator)
#              COMPOFA_BENCH_VENV  the venv (default $COMPOFA_CACHE_DIR/bench-venv)
#              COMPOFA_TF_WHEEL    a tensorflow_cpu-2.21.0 wheel already on disk (skips the download)
#              PYTHON              the Python that creates the venv (default python3; 3.10-3.13)
set -euo pipefail

TF_VERSION=2.21.0
log() { printf '[setup-keras] %s\n' "$*" >&2; }
die() { printf '\n[setup-keras] ERROR: %s\n\n' "$*" >&2; exit 1; }

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
venv="${COMPOFA_BENCH_VENV:-$cache_root/bench-venv}"
python="${PYTHON:-python3}"

installed_version() {
  "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))' 2>/dev/null || true
}

if [[ -x "$venv/bin/python" && "$(installed_version)" == "$TF_VERSION" ]]; then
  log "tensorflow-cpu $TF_VERSION already in $venv"
  echo "$venv/bin/python"
  exit 0
fi

command -v "$python" >/dev/null || die "Python 3 is needed (set PYTHON to a python3 with venv and pip)."
if [[ ! -x "$venv/bin/python" ]]; then
  log "creating $venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv" ||
    die "'$python -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)."
fi
requirement="tensorflow-cpu==$TF_VERSION"
[[ -n "${COMPOFA_TF_WHEEL:-}" ]] && requirement="$COMPOFA_TF_WHEEL"
log "installing $requirement into $venv (about 270 MB; pip's cache is reused)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement" >&2 ||
  die "pip could not install $requirement: pip needs a package index that serves TensorFlow wheels, or set COMPOFA_TF_WHEEL to a downloaded tensorflow_cpu-$TF_VERSION wheel."
found="$(installed_version)"
[[ "$found" == "$TF_VERSION" ]] || die "expected tensorflow-cpu $TF_VERSION in $venv, found '${found:-none}'"
"$venv/bin/python" -c 'import keras, tensorflow as tf; print(f"[setup-keras] TensorFlow {tf.__version__}, Keras {keras.__version__}")' >&2
echo "$venv/bin/python"
