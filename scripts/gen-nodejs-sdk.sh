#!/usr/bin/env bash
# Generate the TypeScript SDK of the provider plugin from its schema, into OUT_DIR/nodejs:
#   scripts/gen-nodejs-sdk.sh examples/typescript/sdk
#
# `pulumi package gen-sdk --language nodejs` would ask the Node.js language host, and the one
# this project builds (sdk/v3 v3.68) answers "method GeneratePackage not implemented"; so Pulumi's
# own generator (pkg/v3/codegen/nodejs, at the CLI's version) runs from a small Go program
# (scripts/gen-nodejs-sdk), built once into the CLI's cache. The schema is the one the CLI gets
# from the plugin on PATH.
set -euo pipefail
out="${1:?usage: gen-nodejs-sdk.sh OUT_DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
bin="$("$here/install-pulumi-cli.sh")"
cache_root="$(dirname "$(dirname "$bin")")"
export GOMODCACHE="${GOMODCACHE:-$cache_root/go/mod}"
export GOCACHE="${GOCACHE:-$cache_root/go/build}"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
if [[ ! -x "$bin/gen-nodejs-sdk" || "$here/gen-nodejs-sdk/main.go" -nt "$bin/gen-nodejs-sdk" ]]; then
  (cd "$here/gen-nodejs-sdk" && go build -trimpath -tags osusergo,grpcnotrace -o "$bin/gen-nodejs-sdk" .)
fi
plugin="$(command -v pulumi-resource-eci-imagecache)" || {
  echo "gen-nodejs-sdk: pulumi-resource-eci-imagecache is not on PATH (the venv's bin/)" >&2
  exit 1
}
schema="$(mktemp)"
trap 'rm -f "$schema"' EXIT
"$bin/pulumi" package get-schema "$plugin" > "$schema"
rm -rf "$out/nodejs"
"$bin/gen-nodejs-sdk" "$schema" "$out/nodejs"
echo "$out/nodejs"
