"""This repo's own steering regression check: lm_eval with the embedded model steered, then ``rolevec check``
against the committed baseline in tests/regression/ (see docs/ci-regression.md).

The steering vector is not a role vector: it is the embedded model's (tied) embedding row of the answer
token " D", normalised, at every layer (role name ``answer_d``), built here from the model weights, so it is
deterministic and no binary is committed. Unsteered, the model answers "A" to all 10 questions of the
``rolevec_regression`` group (tests/regression/tasks: the first 5 of high_school_statistics and management,
mostly "D"), 0/10 right; steered at layer 26 with alpha 100 it answers "D", 6/10 right. If steering silently
stops working (hooks not attached, vectors or model_args ignored, wrong layer...), accuracy falls back to 0
and the exact McNemar test on the 6 changed questions (p = 0.016) makes ``rolevec check`` exit 1. A real role
vector's effect is far too small to detect on 10 questions, and a random one lowers accuracy (breaking it
would look like an improvement), hence this synthetic direction.

After an intended change: ROLEVEC_UPDATE_BASELINE=1 pytest -m slow tests/test_regression.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED

from rolevec_lmeval.cli import main

HERE = REPO / "tests" / "regression"
BASELINE, UNSTEERED, TASKS = HERE / "baseline", HERE / "unsteered", HERE / "tasks"
SUBJECTS = ["high_school_statistics", "management"]
LAYER, ALPHA, LIMIT = 26, 100, 5


def answer_vector(out: Path) -> Path:
    """``answer_d.safetensors``: the normalised embedding row of " D" at every layer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolevec_lmeval.embedded import EMBEDDED_SLUG, embedded_model_dir
    from rolevec_lmeval.vectors import RoleVector

    path = embedded_model_dir()
    token = AutoTokenizer.from_pretrained(path).encode(" D")[-1]
    model = AutoModelForCausalLM.from_pretrained(path)
    row = model.get_input_embeddings().weight[token].detach().float()
    directions = (row / row.norm()).expand(1, model.config.num_hidden_layers, -1).contiguous()
    meta = {"model_slug": EMBEDDED_SLUG, "note": "synthetic ' D' answer direction (tests/test_regression.py)"}
    return RoleVector("answer_d", directions, None, ["Answer:"], meta).save(out / "answer_d.safetensors")


def store_baseline(run_dir: Path, dest: Path) -> None:
    """Copy one lm_eval run into ``dest``, minus bulky fields (environment dump, prompts, documents)."""
    [results] = run_dir.glob("**/results_*.json")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    data = json.loads(results.read_text())
    data.pop("pretty_env_info", None)
    for args in [data["config"]["model_args"], *(c.get("metadata", {}) for c in data["configs"].values())]:
        if "vectors" in args:  # a temporary path: keep the file name only
            args["vectors"] = Path(args["vectors"]).name
    (dest / results.name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    for file in results.parent.glob("samples_*.jsonl"):
        lines = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        for rec in lines:
            for key in ("doc", "arguments", "resps"):
                rec.pop(key, None)
        (dest / file.name).write_text("".join(json.dumps(rec) + "\n" for rec in lines))


def test_unsteered_run_fails_the_check(capsys) -> None:
    """The committed unsteered run is what broken steering produces: the check must exit 1."""
    assert main(["check", "--baseline", str(BASELINE), "--results", str(UNSTEERED)]) == 1
    out = capsys.readouterr().out
    assert "| rolevec_regression " in out and "REGRESSION" in out
    assert main(["check", "--baseline", str(BASELINE), "--results", str(BASELINE)]) == 0


@pytest.mark.slow
def test_steering_matches_committed_baseline(tmp_path: Path, capsys) -> None:
    if not (SHARED / "mmlu" / SUBJECTS[0]).is_dir():
        pytest.skip(f"shared MMLU copy not found at {SHARED / 'mmlu'}")
    from rolevec_lmeval.mmlu_cache import build_mmlu_cache

    cache = tmp_path / "hf-datasets"
    assert build_mmlu_cache(SHARED / "mmlu", cache, SUBJECTS).ok
    vector = answer_vector(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "rolevec_hf",
           "--model_args", f"role=answer_d,layer={LAYER},alpha={ALPHA},vectors={vector}",
           "--include_path", str(TASKS), "--tasks", "rolevec_regression", "--limit", str(LIMIT),
           "--batch_size", "16", "--output_path", str(out), "--log_samples"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    if os.environ.get("ROLEVEC_UPDATE_BASELINE"):
        store_baseline(out, BASELINE)
        pytest.skip(f"baseline rewritten in {BASELINE}: review and commit it")
    code = main(["check", "--baseline", str(BASELINE), "--results", str(out)])
    report = capsys.readouterr().out
    assert code == 0, report
