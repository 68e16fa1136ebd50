# Sourced by scripts/build-control-plane.sh and scripts/build-node-tools.sh: builds Kubernetes
# commands from the Go module proxy. The caller defines log, die, GO, K8S_VERSION and ETCD_VERSION,
# and may set GO_HINT (what to do instead when Go is missing).
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/...@vX` is refused because kubernetes'
# go.mod replaces its staging modules with local folders. The wrapper requires k8s.io/kubernetes
# and replaces each staging module with its published version instead.

# Builds the given commands (k8s.io/kubernetes/cmd/<name>, or etcd) into the folder $1, atomically.
build_kubernetes_commands() {
  local dest="$1"; shift
  command -v "$GO" >/dev/null || die "Go (>= 1.26) is needed to build $*${GO_HINT:+; $GO_HINT}"
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  local parent work started=$SECONDS
  parent="$(dirname "$dest")"
  mkdir -p "$parent"
  work="$(mktemp -d "$parent/.build-XXXXXX")"
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
  # The module's source folder: the node tools' pause image is built from its build/pause.
  KUBERNETES_MODULE_DIR="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$download")"
  local staging
  staging=($(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$k8s_mod"))
  (( ${#staging[@]} > 0 )) || die "found no staging replacements in $k8s_mod"
  local staging_version="v0.${K8S_VERSION#v1.}" module cmd
  {
    echo "module compofa.local/kubernetes-build"
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
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for cmd in "$@"; do
      if [[ $cmd == etcd ]]; then printf '\t_ "go.etcd.io/etcd/server/v3"\n'
      else printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; fi
    done
    printf ')\n'
  } >"$work/tools.go"
  log "resolving ${#staging[@]} staging modules at $staging_version and etcd $ETCD_VERSION"
  (cd "$work" && "$GO" mod tidy -e >/dev/null 2>"$work/tidy.log") || { cat "$work/tidy.log" >&2; die "go mod tidy failed"; }

  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  mkdir -p "$work/bin"
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
