#!/usr/bin/env bash
# Makes @tensorflow/tfjs-node (or, with --gpu, @tensorflow/tfjs-node-gpu) run on native TensorFlow
# 2.21 from the pip wheel, because the package's own install script downloads libtensorflow 2.9.1
# from a storage bucket that no longer serves it (tensorflow/tfjs#8742).
#
#   1. `pip download` the TensorFlow wheel (tensorflow-cpu, or tensorflow plus its CUDA 12 runtime
#      wheels for --gpu) and extract the C API (libtensorflow_cc.so.2, libtensorflow_framework.so.2,
#      headers) into a cache outside node_modules;
#   2. link those libraries into the package's deps/ under the names its binding.gyp links against;
#   3. build the N-API addon with node-gyp once, cache it, and copy it in on later runs.
# Idempotent: after `npm ci` wipes node_modules, a rerun takes seconds.
#
# Options: --gpu             set up @tensorflow/tfjs-node-gpu instead
#          --copy            copy the libraries instead of symlinking them (container images)
#          --force           download, extract and build again even when cached
# Environment: COMPOFA_CACHE_DIR  cache root (default ${XDG_CACHE_HOME:-~/.cache}/compofa-operator)
#              COMPOFA_TF_WHEEL   a TensorFlow wheel already on disk (skips the download)
#              PYTHON             the Python whose pip downloads the wheels (default python3)
set -euo pipefail

TF_VERSION=2.21.0
flavour=cpu link_mode=symlink force=0
for arg in "$@"; do
  case "$arg" in
    --gpu) flavour=gpu ;;
    --copy) link_mode=copy ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup-tensorflow: unknown option '$arg' (expected --gpu, --copy, --force)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup-tensorflow] %s\n' "$*" >&2; }
die() { printf '\n[setup-tensorflow] ERROR: %s\n\n' "$*" >&2; exit 1; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $flavour == gpu ]]; then package=tfjs-node-gpu wheel_name=tensorflow; else package=tfjs-node wheel_name=tensorflow-cpu; fi
pkg_dir="$repo/node_modules/@tensorflow/$package"
[[ -f "$pkg_dir/package.json" ]] ||
  die "node_modules/@tensorflow/$package is missing: run 'npm ci' first$([[ $flavour == gpu ]] && echo " and 'npm install --no-save @tensorflow/$package@4.22.0'")"
tfjs_version="$(node -p "require('$pkg_dir/package.json').version")"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=manylinux_2_27_x86_64 arch=x86_64 ;;
  Linux-aarch64) [[ $flavour == cpu ]] && wheel_name=tensorflow; platform=manylinux_2_27_aarch64 arch=aarch64 ;;
  *) die "native TensorFlow for tfjs-node is set up here for Linux x86_64 and aarch64 only, not $(uname -s)-$(uname -m)" ;;
esac

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
tf_dir="$cache_root/tensorflow/$wheel_name-$TF_VERSION-$platform"
python="${PYTHON:-python3}"

# Downloads wheels with pip into $1; the remaining arguments are requirement specifiers.
pip_download() {
  local into="$1"; shift
  command -v "$python" >/dev/null ||
    die "Python 3 with pip is needed to download the $wheel_name==$TF_VERSION wheel. Install python3 and python3-pip (Debian/Ubuntu: apt-get install python3-pip), or set COMPOFA_TF_WHEEL to a downloaded $wheel_name-$TF_VERSION wheel."
  "$python" -m pip --version >/dev/null 2>&1 ||
    die "'$python -m pip' does not work. Install pip (Debian/Ubuntu: apt-get install python3-pip), or set COMPOFA_TF_WHEEL to a downloaded $wheel_name-$TF_VERSION wheel."
  # With --platform, pip matches each tag exactly: name every manylinux tag these wheels use.
  local tags=() tag
  for tag in manylinux_2_27 manylinux_2_28 manylinux_2_24 manylinux_2_17 manylinux2014; do tags+=(--platform "${tag}_$arch"); done
  if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --implementation cp "${tags[@]}" -d "$into" "$@" >&2; then
    die "pip could not download $*. pip needs a package index that serves TensorFlow wheels (check 'pip config list' and your proxy), or set COMPOFA_TF_WHEEL to a downloaded $wheel_name-$TF_VERSION wheel."
  fi
}

# Extracts the C API from the TensorFlow wheel $1 into $2: tensorflow/*.so.2 and the headers
# tfjs-node's binding includes.
extract_c_api() {
  "$python" - "$@" <<'PY'
import sys, zipfile, os, shutil
wheel, out, expected_name, expected_version = sys.argv[1:5]
wanted_libs = {"tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2"}
header_roots = ("tensorflow/include/tensorflow/c/", "tensorflow/include/tensorflow/core/platform/ctstring",
                "tensorflow/include/tsl/platform/ctstring", "tensorflow/include/xla/tsl/c/")
found = set()
with zipfile.ZipFile(wheel) as z:
    meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
    fields = dict(line.split(": ", 1) for line in z.read(meta).decode().splitlines() if ": " in line) if meta else {}
    found_name = fields.get("Name", "?").lower().replace("_", "-")
    if found_name != expected_name or fields.get("Version") != expected_version:
        sys.exit(f"{wheel} is {found_name} {fields.get('Version', '?')}, not the {expected_name}=={expected_version} wheel this set-up needs")
    for info in z.infolist():
        name = info.filename
        if name in wanted_libs:
            dest = os.path.join(out, "lib", os.path.basename(name)); found.add(name)
        elif name.startswith(header_roots) and not name.endswith("/"):
            dest = os.path.join(out, "include", name[len("tensorflow/include/"):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
missing = wanted_libs - found
if missing:
    sys.exit(f"{wheel} has no {', '.join(sorted(missing))}: TensorFlow wheels before 2.12 keep the C API inside the Python extension and cannot be used")
PY
}

# Extracts nvidia/<name>/lib/*.so* from the CUDA runtime wheels in $1 into $2/nvidia, where the
# RUNPATH entries of the tensorflow wheel's libraries ($ORIGIN/../nvidia/*/lib) look for them.
extract_cuda_libs() {
  "$python" - "$1" "$2" <<'PY'
import sys, zipfile, os, shutil, glob
src_dir, out = sys.argv[1], sys.argv[2]
for wheel in sorted(glob.glob(os.path.join(src_dir, "nvidia_*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            parts = info.filename.split("/")
            if parts[0] == "nvidia" and "lib" in parts and ".so" in parts[-1]:
                dest = os.path.join(out, info.filename)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with z.open(info) as s, open(dest, "wb") as d:
                    shutil.copyfileobj(s, d, 1 << 20)
PY
}

ensure_tensorflow_cache() {
  [[ $force == 1 ]] && rm -rf "$tf_dir"
  if [[ -f "$tf_dir/.complete" ]]; then log "cached: $tf_dir"; return; fi
  rm -rf "$tf_dir".partial-*
  mkdir -p "$(dirname "$tf_dir")"
  local staging; staging="$(mktemp -d "$tf_dir.partial-XXXXXX")"
  trap "rm -rf '$staging'" EXIT
  local wheel="${COMPOFA_TF_WHEEL:-}"
  if [[ -z $wheel ]]; then
    log "downloading $wheel_name==$TF_VERSION ($platform) with pip"
    pip_download "$staging/wheels" "$wheel_name==$TF_VERSION"
    wheel="$(ls "$staging"/wheels/*.whl)"
  fi
  [[ -f $wheel ]] || die "COMPOFA_TF_WHEEL=$wheel is not a file"
  log "extracting the C API from $(basename "$wheel")"
  extract_c_api "$wheel" "$staging" "$wheel_name" "$TF_VERSION" || die "could not extract the C API from $wheel (see above)"
  if [[ $flavour == gpu ]]; then
    # The CUDA 12 runtime wheels are the wheel's own "and-cuda" extra: read the list from it.
    mapfile -t cuda_reqs < <("$python" - "$wheel" <<'PY'
import sys, zipfile, re
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        m = re.match(r"Requires-Dist: (nvidia-[^;]+?)\s*;\s*extra == .and-cuda.", line)
        if m: print(m.group(1).replace(" ", ""))
PY
)
    (( ${#cuda_reqs[@]} > 0 )) || die "$(basename "$wheel") names no CUDA runtime wheels (extra 'and-cuda')"
    log "downloading ${#cuda_reqs[@]} CUDA 12 runtime wheels"
    pip_download "$staging/cuda-wheels" "${cuda_reqs[@]}"
    extract_cuda_libs "$staging/cuda-wheels" "$staging"
  fi
  rm -rf "$staging/wheels" "$staging/cuda-wheels"
  printf '%s %s\n' "$wheel_name" "$TF_VERSION" >"$staging/.complete"
  rm -rf "$tf_dir" && mv -T "$staging" "$tf_dir"
  trap - EXIT
}

# Puts the cached libraries and headers where binding.gyp and the addon's RUNPATH
# ($ORIGIN/../../deps/lib) expect them. A deps/ already made from the same cache is left alone, so
# that a rerun never rewrites files a running process has loaded; otherwise the new deps/ is made
# beside it and swapped in.
link_into_package() {
  local deps="$pkg_dir/deps" stamp="$tf_dir $link_mode" put
  if [[ -f "$deps/.compofa-source" && "$(cat "$deps/.compofa-source")" == "$stamp" && -e "$deps/lib/libtensorflow_cc.so.2" ]]; then
    return
  fi
  local next="$pkg_dir/.deps.new"
  rm -rf "$next" && mkdir -p "$next/lib"
  if [[ $link_mode == copy ]]; then put="cp -f"; else put="ln -sfn"; fi
  $put "$tf_dir/lib/libtensorflow_cc.so.2" "$next/lib/libtensorflow_cc.so.2"
  $put "$tf_dir/lib/libtensorflow_framework.so.2" "$next/lib/libtensorflow_framework.so.2"
  ln -sfn libtensorflow_cc.so.2 "$next/lib/libtensorflow.so"
  ln -sfn libtensorflow_framework.so.2 "$next/lib/libtensorflow_framework.so"
  # The package's install.js treats this name as "libtensorflow already downloaded".
  ln -sfn libtensorflow_cc.so.2 "$next/lib/libtensorflow.so.2.9.1"
  if [[ $link_mode == copy ]]; then cp -r "$tf_dir/include" "$next/include"; else ln -sfn "$tf_dir/include" "$next/include"; fi
  if [[ -d "$tf_dir/nvidia" ]]; then
    # RUNPATH of the tensorflow libraries: $ORIGIN/../nvidia/<name>/lib
    if [[ $link_mode == copy ]]; then cp -r "$tf_dir/nvidia" "$next/nvidia"; else ln -sfn "$tf_dir/nvidia" "$next/nvidia"; fi
  fi
  printf '%s' "$stamp" >"$next/.compofa-source"
  rm -rf "$pkg_dir/.deps.old"
  [[ -e $deps ]] && mv -T "$deps" "$pkg_dir/.deps.old"
  mv -T "$next" "$deps"
  rm -rf "$pkg_dir/.deps.old"
}

# tfjs-node loads lib/napi-v<N> for the highest N in its package.json's binary.napi_versions that
# this Node supports.
napi_version="$(node -p "const v = require('$pkg_dir/package.json').binary.napi_versions.filter((n) => n <= Number(process.versions.napi)); Math.max(...v)")"
addon_rel="lib/napi-v$napi_version/tfjs_binding.node"
addon_cache="$tf_dir/addon/$package-$tfjs_version-napi-v$napi_version-$(node -p 'process.platform + "-" + process.arch')/tfjs_binding.node"

build_addon() {
  local node_root; node_root="$(dirname "$(dirname "$(command -v node)")")"
  # node-gyp would download Node's headers; use the ones installed with node when present.
  if [[ -f "$node_root/include/node/node_api.h" ]]; then export npm_config_nodedir="$node_root"; fi
  local gyp="$repo/node_modules/node-gyp/bin/node-gyp.js"
  [[ -f $gyp ]] || die "node-gyp is missing from node_modules: run 'npm ci' (it is a devDependency)"
  log "building the $package N-API addon against TensorFlow $TF_VERSION (node-gyp)"
  (
    cd "$pkg_dir"
    rm -rf build lib
    node "$gyp" rebuild --napi_build_version="$napi_version" --module_name=tfjs_binding \
      --module_path="$pkg_dir/lib/napi-v$napi_version" >"$tf_dir/addon-build.log" 2>&1
  ) || { tail -n 30 "$tf_dir/addon-build.log" >&2; die "building the addon failed; the whole log is $tf_dir/addon-build.log"; }
  [[ -f "$pkg_dir/$addon_rel" ]] || die "node-gyp finished but $pkg_dir/$addon_rel is missing"
  mkdir -p "$(dirname "$addon_cache")"
  cp -f "$pkg_dir/$addon_rel" "$addon_cache.tmp.$$" && mv -f "$addon_cache.tmp.$$" "$addon_cache"
}

# One set-up at a time per cache: two cold runs would otherwise replace each other's libraries.
mkdir -p "$cache_root"
exec 9>"$cache_root/.setup-tensorflow.lock"
flock 9
ensure_tensorflow_cache
link_into_package
if [[ $force == 0 && -f $addon_cache ]]; then
  if cmp -s "$addon_cache" "$pkg_dir/$addon_rel"; then
    log "addon in place: $pkg_dir/$addon_rel"
  else
    # A new inode through rename: a process that has the old addon loaded keeps it intact.
    mkdir -p "$(dirname "$pkg_dir/$addon_rel")"
    cp -f "$addon_cache" "$pkg_dir/$addon_rel.tmp.$$" && mv -f "$pkg_dir/$addon_rel.tmp.$$" "$pkg_dir/$addon_rel"
    log "addon from cache: $addon_cache"
  fi
else
  build_addon
fi

# Prove it: the backend loads and reports the TensorFlow version we linked.
cd "$repo"
TF_CPP_MIN_LOG_LEVEL=2 node -e "
  const tf = require('@tensorflow/$package');
  const version = tf.backend().binding.TF_Version;
  if (tf.getBackend() !== 'tensorflow' || version !== '$TF_VERSION') {
    console.error('expected backend tensorflow with TF $TF_VERSION, got ' + tf.getBackend() + ' with TF ' + version);
    process.exit(1);
  }
  console.error('[setup-tensorflow] @tensorflow/$package $tfjs_version: backend tensorflow, TensorFlow ' + version);
" || die "@tensorflow/$package did not load native TensorFlow $TF_VERSION (see above; its libraries come from $tf_dir, and --force sets it up again)"
