#!/usr/bin/env bash
# Build crane (go-containerregistry's registry client) from the Go module proxy, once, into a
# cache directory outside the repository, and print the path of the binary.
#
# crane is a second reference client for the build benchmark (beside skopeo). It is optional:
# `make bench` builds it; the quick benchmark in CI uses it only when a build is already cached.
set -euo pipefail

CRANE_VERSION="${CRANE_VERSION:-0.22.1}"
cache_root="${ECI_IMAGECACHE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eci-imagecache}"
bin="$cache_root/crane-$CRANE_VERSION/bin"

if [[ -x "$bin/crane" ]]; then
  echo "$bin/crane"
  exit 0
fi
command -v go >/dev/null || { echo "install-crane: Go is required to build crane" >&2; exit 1; }

# Module and build caches are shared with the Pulumi CLI build.
export GOMODCACHE="${GOMODCACHE:-$cache_root/go/mod}"
export GOCACHE="${GOCACHE:-$cache_root/go/build}"
export GOFLAGS="-buildvcs=false"
export CGO_ENABLED=0
mkdir -p "$bin"
echo "install-crane: building crane v$CRANE_VERSION" >&2
GOBIN="$bin" go install -trimpath "github.com/google/go-containerregistry/cmd/crane@v$CRANE_VERSION" >&2
echo "$bin/crane"
