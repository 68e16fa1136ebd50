#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl) and etcd from the Go module proxy into a per-version cache outside the repository, and
# prints the folder that holds them. Reuses the cache when it is complete.
#
# KUBEBUILDER_ASSETS=<dir with etcd, kube-apiserver, ...> (the envtest convention) skips the build,
# so a user who already has setup-envtest binaries needs no Go.
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/...@vX` is refused because kubernetes'
# go.mod replaces its staging modules with local folders. The wrapper requires k8s.io/kubernetes
# and replaces each staging module with its published version instead.
set -euo pipefail

K8S_VERSION="${COMPOFA_K8S_VERSION:-v1.36.3}"
# Kubernetes v1.36.3 pins go.etcd.io/etcd/server/v3 v3.6.8 itself; building etcd from the same
# module graph keeps client and server on one version.
ETCD_VERSION="${COMPOFA_ETCD_VERSION:-v3.6.8}"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] error: %s\n' "$*" >&2; exit 1; }

has_all_binaries() {
  local dir="$1" bin
  for bin in "${BINARIES[@]:0:4}"; do [[ -x "$dir/$bin" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  has_all_binaries "$KUBEBUILDER_ASSETS" ||
    die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS must hold executable etcd, kube-apiserver, kube-controller-manager and kube-scheduler"
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS (no build)"
  printf '%s\n' "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
dest="$cache_root/control-plane/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"
if has_all_binaries "$dest" && [[ -x "$dest/kubectl" ]]; then
  log "cached: $dest"
  printf '%s\n' "$dest"
  exit 0
fi

command -v go >/dev/null ||
  die "Go is needed to build the control plane (Go >= 1.26), or set KUBEBUILDER_ASSETS to a folder with etcd and kube-apiserver binaries (setup-envtest use $K8S_VERSION)"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

mkdir -p "$cache_root/control-plane"
work="$(mktemp -d "$cache_root/control-plane/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

log "resolving k8s.io/kubernetes@$K8S_VERSION"
k8s_mod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[[ -f "$k8s_mod" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy ($(go env GOPROXY))"
staging=($(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$k8s_mod"))
(( ${#staging[@]} > 0 )) || die "found no staging replacements in $k8s_mod"
staging_version="v0.${K8S_VERSION#v1.}"

{
  echo "module compofa.local/control-plane"
  echo
  echo "go $(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $K8S_VERSION"
  echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo ")"
  echo
  echo "replace ("
  for module in "${staging[@]}"; do echo "	$module => $module $staging_version"; done
  echo ")"
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO

cd "$work"
log "resolving ${#staging[@]} staging modules at $staging_version and etcd $ETCD_VERSION"
go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; die "go mod tidy failed"; }

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
mkdir -p "$work/bin"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  log "building $cmd (a cold build takes many minutes on 2 cores)"
  go build -trimpath -ldflags "$ldflags" -o "$work/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
log "building etcd $ETCD_VERSION"
go build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3

rm -rf "$dest"
mv "$work/bin" "$dest"
log "built in $((SECONDS - started)) s: $dest"
printf '%s\n' "$dest"
