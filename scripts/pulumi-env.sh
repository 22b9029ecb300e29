# Source this file to run the project's stacks offline with the project's venv and Pulumi CLI:
#   source scripts/pulumi-env.sh && pulumi preview
# A Pulumi CLI already on PATH is used as is; otherwise the one scripts/install-pulumi-cli.sh built.
_eci_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v pulumi >/dev/null 2>&1 || [[ -n "${ECI_USE_BUILT_PULUMI:-}" ]]; then
  PATH="$("$_eci_root/scripts/install-pulumi-cli.sh"):$PATH"
fi
# The stack's Python (with pulumi and eci_imagecache) must come first: the language host and the
# dynamic-provider plugin run `python3` from PATH.
export PATH="$_eci_root/.venv/bin:$PATH"
if [[ -z "${PULUMI_BACKEND_URL:-}" ]]; then
  export PULUMI_BACKEND_URL="file://$_eci_root/.pulumi-state"
  mkdir -p "$_eci_root/.pulumi-state"
fi
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-quickstart}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
unset _eci_root
