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
# The build itself (a wrapper module over k8s.io/kubernetes) is in scripts/lib/kubernetes-build.sh.
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
GO_HINT="or set KUBEBUILDER_ASSETS to a folder with etcd, kube-apiserver, kube-controller-manager and kube-scheduler $K8S_VERSION binaries (a Kubernetes server release has the last three)"
# shellcheck source=lib/kubernetes-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kubernetes-build.sh"

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] error: %s\n' "$*" >&2; exit 1; }
executable_all() { local dir="$1" bin; shift; for bin in "$@"; do [[ -x "$dir/$bin" ]] || return 1; done; }

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
full="$cache_root/control-plane/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"
controllers_only="$cache_root/control-plane/kubernetes-$K8S_VERSION-controllers"

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
    executable_all "$controllers_only" "${CONTROLLERS[@]}" || build_kubernetes_commands "$controllers_only" "${CONTROLLERS[@]}"
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
  build_kubernetes_commands "$full" kube-apiserver "${CONTROLLERS[@]}" kubectl etcd
fi
printf '%s\n' "$full"
