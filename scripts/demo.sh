#!/usr/bin/env bash
# Set up the environment, load the demo catalogue into the embedded database (./data) and serve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/marketplace db upgrade
.venv/bin/marketplace demo
exec .venv/bin/marketplace serve "$@"
