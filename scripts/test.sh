#!/usr/bin/env bash
# The test suite (what CI runs): setup, lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check rolevec_lmeval tests bench scripts
.venv/bin/python -m pytest -q --durations=15 "$@"
