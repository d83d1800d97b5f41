#!/usr/bin/env bash
# Set up the environment and run the whole test suite (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure-postgres.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/pytest "$@"
