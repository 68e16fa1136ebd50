#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl) and etcd from the Go module proxy into a per-version cache outside the repository, and
# prints the folder that holds them. Reuses the cache when it is complete.
#
# KUBEBUILDER_ASSETS=<dir> (the envtest convention) uses binaries that are already there. A
# setup-envtest folder holds etcd, kube-apiserver and kubectl but no kube-controller-manager or
# kube-scheduler: those two are then built (Go needed, once) or taken from a folder that has them,
# and the printed folder links all of them together.
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/...@vX` is refused because kubernetes'
# go.mod replaces its staging modules with local folders. The wrapper requires k8s.io/kubernetes
# and replaces each staging module with its published version instead.
#
# Environment: COMPOFA_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/compofa-operator),
#              COMPOFA_K8S_VERSION, COMPOFA_ETCD_VERSION, GO (the go command, default go).
set -euo pipefail

K8S_VERSION="${COMPOFA_K8S_VERSION:-v1.36.3}"
# Kubernetes v1.36.3 pins go.etcd.io/etcd/server/v3 v3.6.8 itself; building etcd from the same
# module graph keeps client and server on one version.
ETCD_VERSION="${COMPOFA_ETCD_VERSION:-v3.6.8}"
GO="${GO:-go}"
CONTROLLERS=(kube-controller-manager kube-scheduler)

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] error: %s\n' "$*" >&2; exit 1; }
executable_all() { local dir="$1" bin; shift; for bin in "$@"; do [[ -x "$dir/$bin" ]] || return 1; done; }

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
full="$cache_root/control-plane/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"
controllers_only="$cache_root/control-plane/kubernetes-$K8S_VERSION-controllers"

# Builds the given commands (k8s.io/kubernetes/cmd/<name>, or etcd) into the folder $1, atomically.
build() {
  local dest="$1"; shift
  command -v "$GO" >/dev/null ||
    die "Go (>= 1.26) is needed to build $*; or set KUBEBUILDER_ASSETS to a folder with etcd, kube-apiserver, kube-controller-manager and kube-scheduler $K8S_VERSION binaries (a Kubernetes server release has the last three)"
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  mkdir -p "$cache_root/control-plane"
  local work started=$SECONDS
  work="$(mktemp -d "$cache_root/control-plane/.build-XXXXXX")"
  trap "rm -rf '$work'" EXIT

  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  local download k8s_mod
  # With -json, go reports a failure only inside the JSON on stdout.
  if ! download="$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>&1)"; then
    local reason proxy
    reason="$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$download")"
    proxy="$("$GO" env GOPROXY | sed -E 's#//[^@/]*@#//***@#g')"
    die "could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy ($proxy): ${reason:-$download}"
  fi
  k8s_mod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$download")"
  [[ -f "$k8s_mod" ]] || die "go mod download gave no go.mod for k8s.io/kubernetes@$K8S_VERSION"
  local staging
  staging=($(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$k8s_mod"))
  (( ${#staging[@]} > 0 )) || die "found no staging replacements in $k8s_mod"
  local staging_version="v0.${K8S_VERSION#v1.}" module
  {
    echo "module compofa.local/control-plane"
    echo
    echo "go $("$GO" env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')"
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
  log "resolving ${#staging[@]} staging modules at $staging_version and etcd $ETCD_VERSION"
  (cd "$work" && "$GO" mod tidy -e >/dev/null 2>"$work/tidy.log") || { cat "$work/tidy.log" >&2; die "go mod tidy failed"; }

  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  mkdir -p "$work/bin"
  local cmd
  for cmd in "$@"; do
    log "building $cmd (a cold build takes minutes on 2 cores)"
    if [[ $cmd == etcd ]]; then
      (cd "$work" && "$GO" build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3)
    else
      (cd "$work" && "$GO" build -trimpath -ldflags "$ldflags" -o "$work/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    fi
  done
  rm -rf "$dest"
  mv -T "$work/bin" "$dest"
  rm -rf "$work"
  trap - EXIT
  log "built in $((SECONDS - started)) s: $dest"
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  assets="$KUBEBUILDER_ASSETS"
  executable_all "$assets" etcd kube-apiserver ||
    die "KUBEBUILDER_ASSETS=$assets must hold executable etcd and kube-apiserver (setup-envtest use <version> prints such a folder)"
  if executable_all "$assets" "${CONTROLLERS[@]}"; then
    log "using KUBEBUILDER_ASSETS=$assets (no build)"
    printf '%s\n' "$assets"
    exit 0
  fi
  # setup-envtest ships no controller-manager or scheduler: take them from the full cache, or build just those.
  if executable_all "$full" "${CONTROLLERS[@]}"; then
    controllers="$full"
  else
    executable_all "$controllers_only" "${CONTROLLERS[@]}" || build "$controllers_only" "${CONTROLLERS[@]}"
    controllers="$controllers_only"
  fi
  assembled="$cache_root/control-plane/assembled-$(printf '%s' "$(cd "$assets" && pwd -P)" | sha256sum | cut -c1-12)"
  mkdir -p "$assembled"
  for bin in etcd kube-apiserver kubectl; do
    if [[ -x "$assets/$bin" ]]; then ln -sfn "$assets/$bin" "$assembled/$bin"; else rm -f "$assembled/$bin"; fi
  done
  for bin in "${CONTROLLERS[@]}"; do ln -sfn "$controllers/$bin" "$assembled/$bin"; done
  log "using etcd and kube-apiserver from KUBEBUILDER_ASSETS=$assets, ${CONTROLLERS[*]} $K8S_VERSION from $controllers"
  printf '%s\n' "$assembled"
  exit 0
fi

if executable_all "$full" etcd kube-apiserver "${CONTROLLERS[@]}" kubectl; then
  log "cached: $full"
else
  build "$full" kube-apiserver "${CONTROLLERS[@]}" kubectl etcd
fi
printf '%s\n' "$full"
