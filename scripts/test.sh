#!/usr/bin/env bash
# Run the test suite (sets up .venv first if needed). Slow checks: add --runslow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"
