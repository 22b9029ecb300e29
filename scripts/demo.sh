#!/usr/bin/env bash
# The main job: deploy the quickstart stack (repository root) on the embedded local backend.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pulumi-env.sh
stack="${STACK:-dev}"
pulumi stack select "$stack" --non-interactive 2>/dev/null || pulumi stack init "$stack" --non-interactive
pulumi up --yes --non-interactive --stack "$stack"
pulumi stack output --stack "$stack"
