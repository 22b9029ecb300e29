#!/usr/bin/env bash
# The main job: start the demo registry (generated images on 127.0.0.1:5055), then deploy the
# quickstart stack (repository root) on the embedded local backend.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pulumi-env.sh
mkdir -p .pulumi-state  # the registry log lives there, whatever the state backend
port="${DEMO_REGISTRY_PORT:-5055}"
# Images of about 100 MiB (a 64 MiB base layer): big enough that pulling one takes a noticeable
# share of a start-up, as the vendor's 386 MB flink image does in the cloud.
.venv/bin/eci-imagecache registry serve --port "$port" --layer-mib "${DEMO_LAYER_MIB:-64}" \
  > .pulumi-state/registry.log 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do grep -q "^registry at" .pulumi-state/registry.log && break; sleep 0.2; done
grep -q "^registry at" .pulumi-state/registry.log || { cat .pulumi-state/registry.log; exit 1; }

stack="${STACK:-dev}"
pulumi stack select "$stack" --non-interactive 2>/dev/null || pulumi stack init "$stack" --non-interactive
pulumi config set registry "127.0.0.1:$port" --stack "$stack"
pulumi config set serverPort "${DEMO_SERVER_PORT:-8080}" --stack "$stack"
pulumi up --yes --non-interactive --stack "$stack"
echo
.venv/bin/eci-imagecache caches list
.venv/bin/eci-imagecache groups list
# The headline: the same image started with the cache and without it.
echo
pulumi stack output startup --stack "$stack"
# The web server the stack started, answering on its address.
address="$(pulumi stack output web_address --stack "$stack")"
echo "GET http://$address/"
.venv/bin/python - "$address" <<'PY'
import sys, time, httpx
for _ in range(100):
    try:
        page = httpx.get(f"http://{sys.argv[1]}/", timeout=2)
        break
    except httpx.TransportError:
        time.sleep(0.1)
else:
    sys.exit(f"nothing answers at {sys.argv[1]}")
print(page.status_code, page.text.strip())
PY
