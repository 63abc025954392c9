#!/usr/bin/env bash
# The main job on the embedded model: a chemist role vector on the standard MMLU high-school chemistry task.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/lm_eval --model rolevec_hf --model_args role=chemist,layer=12,alpha=3 \
  --tasks mmlu_high_school_chemistry --batch_size 8 "$@"
