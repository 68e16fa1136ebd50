#!/usr/bin/env bash
# Builds BuildKit's buildkitd and buildctl from the Go module proxy into a per-version cache outside
# the repository, and prints that folder. Reuses the cache when it is complete. The local cluster
# builds the Dockerfile's images with them (test/harness/images.ts), with no Docker engine and no
# registry.
#
# Why not `go install ...@version`: BuildKit's go.mod has `exclude` directives, which go refuses
# for a module that is not the main one. So the module's own source is copied and built as the
# main module. CGO is off, as upstream builds it (the seccomp profile is pure Go; runc applies it).
#
# Environment: COMPOFA_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/compofa-operator),
#              COMPOFA_BUILDKIT_VERSION, GO (the go command, default go).
set -euo pipefail

VERSION="${COMPOFA_BUILDKIT_VERSION:-v0.34.2}"
GO="${GO:-go}"
log() { printf '[buildkit] %s\n' "$*" >&2; }
die() { printf '[buildkit] error: %s\n' "$*" >&2; exit 1; }

cache_root="${COMPOFA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/compofa-operator}"
dest="$cache_root/buildkit/$VERSION"
if [[ -x $dest/buildkitd && -x $dest/buildctl ]]; then
  log "cached: $dest"
  printf '%s\n' "$dest"
  exit 0
fi
command -v "$GO" >/dev/null || die "Go (>= 1.26) is needed to build BuildKit $VERSION"
command -v runc >/dev/null || die "runc is needed to run BuildKit's workers (Debian: apt-get install runc)"
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$cache_root/buildkit"
work="$(mktemp -d "$cache_root/buildkit/.build-XXXXXX")"
trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT
started=$SECONDS
log "downloading github.com/moby/buildkit@$VERSION"
if ! download="$("$GO" mod download -json "github.com/moby/buildkit@$VERSION" 2>&1)"; then
  reason="$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$download")"
  die "could not download github.com/moby/buildkit@$VERSION from the Go module proxy: ${reason:-$download}"
fi
source_dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$download")"
[[ -d $source_dir ]] || die "go mod download gave no source folder for github.com/moby/buildkit@$VERSION"
cp -r "$source_dir" "$work/src"
chmod -R u+w "$work/src"
log "building buildkitd and buildctl (a cold build takes minutes on 2 cores)"
mkdir -p "$work/bin"
(cd "$work/src" && GOFLAGS=-mod=mod "$GO" build -trimpath \
  -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$VERSION" \
  -o "$work/bin/" ./cmd/buildkitd ./cmd/buildctl)
rm -rf "$dest"
mv -T "$work/bin" "$dest"
log "built in $((SECONDS - started)) s: $dest"
printf '%s\n' "$dest"
