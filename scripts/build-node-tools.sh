#!/usr/bin/env bash
# Makes what a real node of the local cluster runs, and prints the folder of the built binaries:
# - kubelet and kube-proxy, built from the Go module proxy (scripts/lib/kubernetes-build.sh) into a
#   per-version cache outside the repository;
# - the pod sandbox ("pause") binary, compiled statically from the same Kubernetes module's
#   build/pause/linux/pause.c, so that no image is pulled from a registry;
# - containerd, runc, the CNI plugins, iptables and conntrack from Debian's packages, installed with
#   apt-get when missing (their .deb files are kept in the cache, by name and version).
# Reuses the cache when it is complete. Needs root, as a kubelet does.
#
# Environment: COMPOFA_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/compofa-operator),
#              COMPOFA_K8S_VERSION, GO (the go command, default go), CC (default gcc),
#              COMPOFA_NO_APT=1 (never install packages: only say which are missing).
set -euo pipefail

K8S_VERSION="${COMPOFA_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${COMPOFA_ETCD_VERSION:-v3.6.8}"
GO="${GO:-go}"
CC="${CC:-gcc}"

log() { printf '[node-tools] %s\n' "$*" >&2; }
die() { printf '[node-tools] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/kubernetes-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kubernetes-build.sh"

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
dest="$cache_root/node/kubernetes-$K8S_VERSION"

# Debian package => a file it installs that the nodes use.
declare -A PACKAGE_FILES=(
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [iptables]=/usr/sbin/iptables
  [conntrack]=/usr/sbin/conntrack
  [util-linux]=/usr/bin/unshare
  [iproute2]=/usr/sbin/ip
  # The tests' small image (sh, httpd, nc).
  [busybox-static]=/bin/busybox
  # The Debian root filesystem of the images' base (test/harness/base-image.ts).
  [debootstrap]=/usr/sbin/debootstrap
)

[[ $(id -u) == 0 ]] || die "real nodes need root (a kubelet and containerd manage mounts, cgroups and network namespaces); run as root"

missing=()
for package in "${!PACKAGE_FILES[@]}"; do
  [[ -x ${PACKAGE_FILES[$package]} ]] || missing+=("$package")
done
if (( ${#missing[@]} > 0 )); then
  IFS=$'\n' missing=($(sort <<<"${missing[*]}")); unset IFS
  if [[ ${COMPOFA_NO_APT:-} == 1 ]] || ! command -v apt-get >/dev/null; then
    die "missing packages: ${missing[*]}; install them (Debian: apt-get install --no-install-recommends ${missing[*]})"
  fi
  archives="$cache_root/debs"
  mkdir -p "$archives/partial"
  log "installing ${missing[*]} from Debian's packages (kept in $archives)"
  apt_log="$cache_root/debs/apt-get.log"
  # The package lists may be missing or stale on a fresh machine; update once if the install fails.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o Dir::Cache::archives="$archives" "${missing[@]}" >"$apt_log" 2>&1; then
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      -o Dir::Cache::archives="$archives" "${missing[@]}"; } >>"$apt_log" 2>&1 ||
      die "apt-get install ${missing[*]} failed; see $apt_log"
  fi
fi

if [[ -x $dest/kubelet && -x $dest/kube-proxy ]]; then
  log "cached: $dest"
else
  GO_HINT="or put kubelet and kube-proxy $K8S_VERSION binaries (from a Kubernetes node release) into $dest"
  build_kubernetes_commands "$dest" kubelet kube-proxy
fi

if [[ ! -x $dest/pause ]]; then
  command -v "$CC" >/dev/null || die "a C compiler ($CC) is needed to build the pod sandbox binary from Kubernetes' pause.c"
  source_dir="$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  pause_c="$source_dir/build/pause/linux/pause.c"
  [[ -f $pause_c ]] || die "no $pause_c in the k8s.io/kubernetes@$K8S_VERSION module"
  # Static, so that the image needs no C library; the version string is what `pause -v` prints.
  "$CC" -Os -Wall -static -DVERSION="$K8S_VERSION-compofa" -o "$dest/.pause.tmp" "$pause_c" ||
    die "compiling $pause_c failed (a static build needs libc6-dev)"
  strip "$dest/.pause.tmp"
  mv "$dest/.pause.tmp" "$dest/pause"
  log "built the pod sandbox binary: $dest/pause"
fi
printf '%s\n' "$dest"
