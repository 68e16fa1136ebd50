#!/usr/bin/env bash
# Builds the tools that check the Helm chart (charts/compofa), and the Prometheus server that the
# tests of operator/monitoring run, from the Go module proxy into a per-version cache outside the
# repository, and prints the folder that holds them:
#
#   helm                 helm.sh/helm/v3/cmd/helm (lint, template)
#   promtool             github.com/prometheus/prometheus/cmd/promtool (check rules, test rules),
#                        built with -tags remove_all_sd,enable_kubernetes_sd: Kubernetes service
#                        discovery (what the local cluster's Prometheus scrapes pods with) and no
#                        cloud service discovery, half the build
#   prometheus           github.com/prometheus/prometheus/cmd/prometheus of the same module version
#                        and tags (no web UI assets, the HTTP API only); it reuses most of
#                        promtool's compiled packages
#   argocd-health        a small runner of Argo CD health checks on github.com/yuin/gopher-lua, the
#                        Lua that Argo CD embeds, set up as Argo CD sets it up (util/lua/lua.go)
#   prometheus-operator-crds/
#                        the ServiceMonitor, PodMonitor and PrometheusRule CRDs of the
#                        github.com/prometheus-operator/prometheus-operator module, for the
#                        API-server dry run of the chart's monitoring objects
#
# Reuses the cache when it is complete (every tool above present: a cache from before a tool was
# added is rebuilt, quickly from Go's build cache); one build at a time per cache (flock). A cold
# build takes a few minutes on 2 cores (mostly helm, promtool and prometheus); later runs take well
# under a second.
#
# Environment: COMPOFA_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/compofa-operator),
#              COMPOFA_HELM_VERSION, COMPOFA_PROMETHEUS_VERSION (a Go module version: v0.316.0 is
#              Prometheus 3.16.0), COMPOFA_PROMETHEUS_OPERATOR_VERSION, COMPOFA_GOPHER_LUA_VERSION,
#              GO (the go command, default go).
set -euo pipefail

HELM_VERSION="${COMPOFA_HELM_VERSION:-v3.22.0}"
PROMETHEUS_VERSION="${COMPOFA_PROMETHEUS_VERSION:-v0.316.0}"
PROMETHEUS_OPERATOR_VERSION="${COMPOFA_PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
# The version Argo CD v3.6 requires.
GOPHER_LUA_VERSION="${COMPOFA_GOPHER_LUA_VERSION:-v1.1.2}"
# Bump when the argocd-health runner below changes, so that caches rebuild it.
RUNNER_REVISION=1
# Service discovery built into promtool and prometheus: Kubernetes only (the tag names of
# prometheus/plugins/*.go).
PROMETHEUS_TAGS=remove_all_sd,enable_kubernetes_sd
GO="${GO:-go}"
TOOLS=(helm promtool prometheus argocd-health)
MONITORING_CRDS=(servicemonitors podmonitors prometheusrules)

log() { printf '[chart-tools] %s\n' "$*" >&2; }
die() { printf '[chart-tools] error: %s\n' "$*" >&2; exit 1; }

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
dest="$cache_root/chart-tools/helm-$HELM_VERSION-prometheus-$PROMETHEUS_VERSION-operator-$PROMETHEUS_OPERATOR_VERSION-gopherlua-$GOPHER_LUA_VERSION-r$RUNNER_REVISION-sd-kubernetes"

complete() {
  local tool crd
  for tool in "${TOOLS[@]}"; do [[ -x "$dest/$tool" ]] || return 1; done
  for crd in "${MONITORING_CRDS[@]}"; do
    [[ -s "$dest/prometheus-operator-crds/monitoring.coreos.com_$crd.yaml" ]] || return 1
  done
}

if complete; then
  log "cached: $dest"
  printf '%s\n' "$dest"
  exit 0
fi

mkdir -p "$cache_root/chart-tools"
# One build at a time: a second caller waits, then finds the cache complete.
exec 9>"$cache_root/.chart-tools.lock"
flock 9
if complete; then
  log "cached: $dest"
  printf '%s\n' "$dest"
  exit 0
fi

command -v "$GO" >/dev/null ||
  die "Go (>= 1.26) is needed to build helm $HELM_VERSION, promtool, prometheus and the Argo CD health runner (https://go.dev/dl/)"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
started=$SECONDS
work="$(mktemp -d "$cache_root/chart-tools/.build-XXXXXX")"
trap "rm -rf '$work'" EXIT
mkdir -p "$work/out"

# Prints the folder of module $1 in the module cache, downloading it first.
module_dir() {
  local download dir reason proxy
  if ! download="$("$GO" mod download -json "$1" 2>&1)"; then
    reason="$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$download")"
    proxy="$("$GO" env GOPROXY | sed -E 's#//[^@/]*@#//***@#g')"
    die "could not download $1 from the Go module proxy ($proxy): ${reason:-$download}"
  fi
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$download")"
  [[ -d "$dir" ]] || die "go mod download gave no folder for $1"
  printf '%s\n' "$dir"
}

# go install $2 (a package@version) into the build folder; $1 names it in messages.
go_install() {
  local name="$1" package="$2"; shift 2
  local began=$SECONDS
  log "building $name ($package; a cold build takes minutes on 2 cores)"
  GOBIN="$work/out" "$GO" install -trimpath "$@" "$package" ||
    die "building $name failed (go install $package): see the messages above"
  log "built $name in $((SECONDS - began)) s"
}

# helm: the Makefile's version stamps, and the Kubernetes version of its client-go (v0.37 -> 1.37)
# as the default of `helm template` and `helm lint` (tests pass --kube-version anyway).
helm_dir="$(module_dir "helm.sh/helm/v3@$HELM_VERSION")"
client_go="$(sed -n 's#^[[:space:]]*k8s\.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$helm_dir/go.mod" | head -n1)"
[[ -n $client_go ]] || die "found no k8s.io/client-go in $helm_dir/go.mod"
helm_flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/chartutil pkg/lint/rules; do
  helm_flags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$client_go"
done
go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" -ldflags "$helm_flags"

prometheus_dir="$(module_dir "github.com/prometheus/prometheus@$PROMETHEUS_VERSION")"
prometheus_release="$(cat "$prometheus_dir/VERSION" 2>/dev/null || echo "${PROMETHEUS_VERSION#v}")"
go_install promtool "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" -tags "$PROMETHEUS_TAGS" \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$prometheus_release"
# The same tags and flags as promtool, so that the shared packages come from Go's build cache.
go_install prometheus "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" -tags "$PROMETHEUS_TAGS" \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$prometheus_release"

# The Argo CD health runner: a module of its own, built from this heredoc.
mkdir -p "$work/argocd-health"
cat >"$work/argocd-health/main.go" <<'GO'
// argocd-health runs an Argo CD resource health check (Lua) the way Argo CD's util/lua does:
// gopher-lua without its standard libraries except package, base and table, the resource as the
// global `obj` (JSON numbers as Lua numbers, arrays and maps as tables), a one second limit, and
// the returned table read as {status, message}, an unknown status becoming Unknown.
//
//	argocd-health SCRIPT < objects.json   (a JSON array of resources)
//
// prints a JSON array of {"status", "message"} in the same order; exits 1 when the script fails.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func decode(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(decode(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), decode(l, item))
		}
		return t
	}
	return lua.LNil
}

func run(script string, object map[string]any) (health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decode(l, object))
	if err := l.DoString(script); err != nil {
		return health{}, err
	}
	returned := l.Get(-1)
	if returned.Type() == lua.LTNil {
		return health{}, nil
	}
	table, ok := returned.(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	status, _ := table.RawGetString("status").(lua.LString)
	message, _ := table.RawGetString("message").(lua.LString)
	switch string(status) {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return health{Status: string(status), Message: string(message)}, nil
	}
	return health{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var objects []map[string]any
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintln(os.Stderr, "stdin must be a JSON array of objects:", err)
		os.Exit(2)
	}
	results := make([]health, 0, len(objects))
	for i, object := range objects {
		result, err := run(string(script), object)
		if err != nil {
			fmt.Fprintf(os.Stderr, "object %d: %v\n", i, err)
			os.Exit(1)
		}
		results = append(results, result)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
GO
{
  echo "module compofa.local/argocd-health"
  echo
  echo "go $("$GO" env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')"
  echo
  echo "require github.com/yuin/gopher-lua $GOPHER_LUA_VERSION"
} >"$work/argocd-health/go.mod"
log "building argocd-health (gopher-lua $GOPHER_LUA_VERSION)"
(cd "$work/argocd-health" && "$GO" mod tidy >"$work/tidy.log" 2>&1) ||
  { cat "$work/tidy.log" >&2; die "go mod tidy of the argocd-health runner failed"; }
(cd "$work/argocd-health" && "$GO" build -trimpath -ldflags "-s -w" -o "$work/out/argocd-health" .) ||
  die "building argocd-health failed"

operator_dir="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
mkdir -p "$work/out/prometheus-operator-crds"
for crd in "${MONITORING_CRDS[@]}"; do
  source="$operator_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml"
  [[ -s $source ]] || die "the prometheus-operator module $PROMETHEUS_OPERATOR_VERSION has no $source"
  cp "$source" "$work/out/prometheus-operator-crds/"
done
cp "$operator_dir/LICENSE" "$work/out/prometheus-operator-crds/LICENSE"
chmod -R u+w "$work/out/prometheus-operator-crds"
printf 'github.com/prometheus-operator/prometheus-operator@%s example/prometheus-operator-crd/\n' \
  "$PROMETHEUS_OPERATOR_VERSION" >"$work/out/prometheus-operator-crds/SOURCE"

"$work/out/helm" version --short >&2 || die "the built helm does not run"
"$work/out/promtool" --version 2>&1 | head -n1 >&2 || die "the built promtool does not run"
"$work/out/prometheus" --version 2>&1 | head -n1 >&2 || die "the built prometheus does not run"

rm -rf "$dest"
mv -T "$work/out" "$dest"
rm -rf "$work"
trap - EXIT
log "built in $((SECONDS - started)) s: $dest"
printf '%s\n' "$dest"
