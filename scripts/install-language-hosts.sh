#!/usr/bin/env bash
# Build the YAML and Node.js language hosts from the Go module proxy, once, beside the Pulumi CLI
# (scripts/install-pulumi-cli.sh) in the same cache, and print the directory to put on PATH.
#
# The provider plugin (pulumi-resource-eci-imagecache) serves YAML, Go and TypeScript programs;
# the CLI runs them through these hosts (Go programs run through the Automation API and need
# none). Nothing is built when both are in the cache.
set -euo pipefail

PULUMI_CLI_VERSION="${PULUMI_CLI_VERSION:-3.274.1}"
# pulumi-yaml's newest release on the proxy, built with the pkg/sdk modules it was released with
# (v3.206): it does not compile against the CLI's v3.274 (the plugin loader's API changed). It
# speaks the stable language-host protocol, which the CLI keeps accepting.
PULUMI_YAML_VERSION="${PULUMI_YAML_VERSION:-1.25.0}"
# The Node.js host lives in sdk/v3 until v3.68 (as the Python host does): see
# install-pulumi-cli.sh for why that release.
LANGUAGE_HOST_SDK_VERSION="${LANGUAGE_HOST_SDK_VERSION:-3.68.0}"

source "$(dirname "$0")/go-env.sh"
bin="$cache_root/pulumi-$PULUMI_CLI_VERSION/bin"

if [[ -x "$bin/pulumi-language-yaml" && -x "$bin/pulumi-language-nodejs" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "install-language-hosts: Go is required" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"
start=$(date +%s)
log() { echo "install-language-hosts: $*" >&2; }

# A throw-away module that imports the host's package, so `go build` can name it.
wrapper() {
  local dir="$1" package="$2"
  mkdir -p "$dir" && cd "$dir"
  go mod init "eci-imagecache/$(basename "$dir")" >/dev/null 2>&1
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" > tools.go
}

if [[ ! -x "$bin/pulumi-language-yaml" ]]; then
  log "building pulumi-language-yaml v$PULUMI_YAML_VERSION"
  wrapper "$work/yaml" github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml
  go get "github.com/pulumi/pulumi-yaml@v$PULUMI_YAML_VERSION" >&2
  # pkg/v3 replaces the clipboard module with a fork; a replace only applies in the main module.
  clip=$(go mod edit -json "$(go list -m -f '{{.GoMod}}' github.com/pulumi/pulumi/pkg/v3)" \
    | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["Old"]["Path"]=="github.com/atotto/clipboard" and r["New"].get("Version"):
        print(r["New"]["Path"]+"@"+r["New"]["Version"])')
  if [[ -n "$clip" ]]; then go mod edit -replace "github.com/atotto/clipboard=$clip"; fi
  go mod tidy >&2
  go build "${build_flags[@]}" \
    -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=v$PULUMI_YAML_VERSION" \
    -o "$bin/pulumi-language-yaml" github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml
fi

if [[ ! -x "$bin/pulumi-language-nodejs" ]]; then
  log "building pulumi-language-nodejs (sdk v$LANGUAGE_HOST_SDK_VERSION)"
  wrapper "$work/nodejs" github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs
  go get "github.com/pulumi/pulumi/sdk/v3@v$LANGUAGE_HOST_SDK_VERSION" >&2
  go mod tidy >&2
  go build "${build_flags[@]}" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$LANGUAGE_HOST_SDK_VERSION" \
    -o "$bin/pulumi-language-nodejs" github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs
fi

log "done in $(( $(date +%s) - start ))s"
echo "$bin"
