#!/usr/bin/env bash
# The Python side of the benchmarks: a virtual environment outside the repository with
# - tensorflow-cpu==2.21.0, the same TensorFlow that tfjs-node runs on here
#   (scripts/setup-tensorflow.sh), so that Keras and our trainer run the same kernels
#   (bench/training-throughput.ts, and the TF graph floor of bench/inference.ts);
# - onnxruntime==1.30.0, the version of onnxruntime-node in package.json, so that Python's
#   onnxruntime runs the same runtime on the same model.onnx (the floor of bench/inference.ts).
# Prints the venv's python on stdout. Idempotent: a second run checks the versions and returns in
# about two seconds; a venv with only TensorFlow gets onnxruntime added.
#
# Environment: COMPOFA_CACHE_DIR   cache root (default ${XDG_CACHE_HOME:-~/.cache}/compofa-operator)
#              COMPOFA_BENCH_VENV  the venv (default $COMPOFA_CACHE_DIR/bench-venv)
#              COMPOFA_TF_WHEEL    a tensorflow_cpu-2.21.0 wheel already on disk (skips the download)
#              PYTHON              the Python that creates the venv (default python3; 3.10-3.13)
set -euo pipefail

TF_VERSION=2.21.0
ORT_VERSION=1.30.0
log() { printf '[setup-keras] %s\n' "$*" >&2; }
die() { printf '\n[setup-keras] ERROR: %s\n\n' "$*" >&2; exit 1; }

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
venv="${COMPOFA_BENCH_VENV:-$cache_root/bench-venv}"
python="${PYTHON:-python3}"

installed_version() {
  "$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true
}

if [[ -x "$venv/bin/python" && "$(installed_version tensorflow-cpu)" == "$TF_VERSION" &&
  "$(installed_version onnxruntime)" == "$ORT_VERSION" ]]; then
  log "tensorflow-cpu $TF_VERSION and onnxruntime $ORT_VERSION already in $venv"
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
pip_install() {
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
}
if [[ "$(installed_version tensorflow-cpu)" != "$TF_VERSION" ]]; then
  requirement="tensorflow-cpu==$TF_VERSION"
  [[ -n "${COMPOFA_TF_WHEEL:-}" ]] && requirement="$COMPOFA_TF_WHEEL"
  log "installing $requirement into $venv (about 270 MB; pip's cache is reused)"
  pip_install "$requirement" ||
    die "pip could not install $requirement: pip needs a package index that serves TensorFlow wheels, or set COMPOFA_TF_WHEEL to a downloaded tensorflow_cpu-$TF_VERSION wheel."
fi
if [[ "$(installed_version onnxruntime)" != "$ORT_VERSION" ]]; then
  log "installing onnxruntime==$ORT_VERSION into $venv (about 17 MB)"
  pip_install "onnxruntime==$ORT_VERSION" ||
    die "pip could not install onnxruntime==$ORT_VERSION (it needs a package index that serves onnxruntime wheels)."
fi
found="$(installed_version tensorflow-cpu)"
[[ "$found" == "$TF_VERSION" ]] || die "expected tensorflow-cpu $TF_VERSION in $venv, found '${found:-none}'"
found="$(installed_version onnxruntime)"
[[ "$found" == "$ORT_VERSION" ]] || die "expected onnxruntime $ORT_VERSION in $venv, found '${found:-none}'"
TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" -c 'import keras, onnxruntime, tensorflow as tf; print(f"[setup-keras] TensorFlow {tf.__version__}, Keras {keras.__version__}, onnxruntime {onnxruntime.__version__}")' >&2
echo "$venv/bin/python"
