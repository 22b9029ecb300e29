#!/usr/bin/env bash
# Build the official Go and Node SDK clients that tests/conformance runs against the emulator,
# once per version of their sources, into a cache directory outside the repository, and print
# where they are:
#   go=<the Go client binary>
#   node_modules=<the Node SDK's node_modules>
# Go modules come from the Go module proxy, npm packages from the npm registry (versions pinned
# by tests/conformance/goclient/go.sum and tests/conformance/nodeclient/package-lock.json).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
source "$repo/scripts/go-env.sh"
log() { echo "install-conformance-clients: $*" >&2; }
command -v go >/dev/null || { log "Go is required to build the Go SDK client"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null \
  || { log "Node.js and npm are required to install the Node SDK"; exit 1; }

fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

# The Go client: module and build caches shared with the Pulumi CLI build.
goclient="$repo/tests/conformance/goclient"
go_bin="$cache_root/conformance/goclient-$(fingerprint "$goclient"/go.mod "$goclient"/go.sum "$goclient"/*.go)"
if [[ ! -x "$go_bin" ]]; then
  log "building the Go SDK client (first build takes a few minutes)"
  mkdir -p "$(dirname "$go_bin")"
  # Built as locked by go.sum (readonly), unlike the wrappers of the other builds.
  (cd "$goclient" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -o "$go_bin.tmp" . >&2)
  mv "$go_bin.tmp" "$go_bin"
fi

# The Node SDK, installed exactly as locked.
nodeclient="$repo/tests/conformance/nodeclient"
node_dir="$cache_root/conformance/node-$(fingerprint "$nodeclient"/package.json "$nodeclient"/package-lock.json)"
if [[ ! -f "$node_dir/.installed" ]]; then
  log "installing the Node SDK"
  mkdir -p "$node_dir"
  cp "$nodeclient"/package.json "$nodeclient"/package-lock.json "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$node_dir/.installed"
fi

echo "go=$go_bin"
echo "node_modules=$node_dir/node_modules"
