#!/usr/bin/env bash
# Build the Pulumi CLI and its Python language host from the Go module proxy, once, into a cache
# directory outside the repository, and print the directory to put on PATH.
#
# No Pulumi binary can be downloaded on the machines we target, so the CLI is compiled with the
# ordinary Go tooling. Nothing is built when a cached build of the pinned version exists.
# Users who already have a Pulumi CLI skip this script entirely: see README.md.
set -euo pipefail

PULUMI_CLI_VERSION="${PULUMI_CLI_VERSION:-3.274.1}"
# The Python language host is a separate Go module with no tags of its own; the last sdk/v3 release
# that carries it as a package (and that the proxy serves) is used. It speaks the stable
# language-host protocol, which newer CLIs keep accepting.
LANGUAGE_HOST_SDK_VERSION="${LANGUAGE_HOST_SDK_VERSION:-3.68.0}"

source "$(dirname "$0")/go-env.sh"
prefix="$cache_root/pulumi-$PULUMI_CLI_VERSION"
bin="$prefix/bin"

if [[ -x "$bin/pulumi" && -x "$bin/pulumi-language-python" && -x "$bin/pulumi-resource-pulumi-python" \
      && -x "$bin/pulumi-language-python-exec" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "install-pulumi-cli: Go is required to build the Pulumi CLI" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"
start=$(date +%s)
log() { echo "install-pulumi-cli: $*" >&2; }

# 1. The CLI itself: a throw-away wrapper module, because `go install pkg@version` refuses
#    modules whose go.mod has replace directives.
log "building pulumi v$PULUMI_CLI_VERSION (first build takes 10-20 minutes)"
mkdir -p "$work/cli" && cd "$work/cli"
go mod init eci-imagecache/pulumi-cli >/dev/null 2>&1
cat > tools.go <<GO
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
go get "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_CLI_VERSION" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_CLI_VERSION" >&2
# pkg/v3 replaces the clipboard module with a fork; a replace only applies in the main module.
clip=$(go mod edit -json "$(go list -m -f '{{.GoMod}}' github.com/pulumi/pulumi/pkg/v3)" \
  | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["Old"]["Path"]=="github.com/atotto/clipboard" and r["New"].get("Version"):
        print(r["New"]["Path"]+"@"+r["New"]["Version"])')
if [[ -n "$clip" ]]; then go mod edit -replace "github.com/atotto/clipboard=$clip"; fi
go mod tidy >&2
go build "${build_flags[@]}" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_CLI_VERSION" \
  -o "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
sdk_dir=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
# Shell shims shipped in the SDK module: the dynamic-provider plugin and the program launcher.
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin/"
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin/"

# 2. The Python language host.
log "building pulumi-language-python (sdk v$LANGUAGE_HOST_SDK_VERSION)"
mkdir -p "$work/host" && cd "$work/host"
go mod init eci-imagecache/pulumi-language-python >/dev/null 2>&1
cat > tools.go <<GO
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
GO
go get "github.com/pulumi/pulumi/sdk/v3@v$LANGUAGE_HOST_SDK_VERSION" >&2
go mod tidy >&2
go build "${build_flags[@]}" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$LANGUAGE_HOST_SDK_VERSION" \
  -o "$bin/pulumi-language-python" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python

log "done in $(( $(date +%s) - start ))s; $(du -sh "$cache_root" | cut -f1) in $cache_root"
echo "$bin"
