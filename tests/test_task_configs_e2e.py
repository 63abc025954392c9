"""End to end: lm_eval runs the task_configs/ groups offline from a cais/mmlu cache built by rolevec.

Both tests run ``python -m lm_eval ... --include_path task_configs`` in a subprocess with
``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1`` and a session cache built from <repo>/../shared/data/mmlu.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402

from rolevec_lmeval.mmlu_cache import build_mmlu_cache  # noqa: E402
from rolevec_lmeval.tasks import task_table  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SHARED_MMLU = REPO.parent / "shared" / "data" / "mmlu"


@pytest.fixture(scope="session")
def mmlu_cache_dir(tmp_path_factory) -> Path:
    """A datasets cache holding only the subjects of the chemist groups (in- and off-domain)."""
    if not (SHARED_MMLU / "college_chemistry").is_dir():
        pytest.skip(f"shared MMLU copy not found at {SHARED_MMLU}")
    chemist = next(row for row in task_table() if row.role == "chemist")
    cache = tmp_path_factory.mktemp("hf-datasets")
    report = build_mmlu_cache(SHARED_MMLU, cache, [*chemist.subjects, *chemist.off_subjects])
    assert report.ok and len(report.built) == 26
    return cache


def run_lm_eval(cache: Path, out: Path, *args: str, timeout: int = 900) -> dict:
    """Run lm_eval offline with our task_configs; return its results JSON."""
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "lm_eval", *args, "--include_path", "task_configs",
           "--output_path", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    [results] = out.glob("**/results_*.json")
    return json.loads(results.read_text())


def test_pair_group_resolves_dummy_model(mmlu_cache_dir, tmp_path):
    """Task resolution and grouping (the dummy model answers at random)."""
    res = run_lm_eval(mmlu_cache_dir, tmp_path, "--model", "dummy", "--tasks", "rolevec_chemist_pair",
                      "--limit", "2")
    chemist = next(row for row in task_table() if row.role == "chemist")
    subtasks = res["group_subtasks"]
    assert subtasks["rolevec_chemist_pair"] == ["rolevec_chemist", "rolevec_chemist_off"]
    assert subtasks["rolevec_chemist"] == [f"mmlu_{s}" for s in chemist.subjects]
    assert sorted(subtasks["rolevec_chemist_off"]) == sorted(f"mmlu_{s}" for s in chemist.off_subjects)
    for group, n_subjects in (("rolevec_chemist", 6), ("rolevec_chemist_off", 20)):
        assert res["results"][group]["sample_count"] == {"acc,none": 2 * n_subjects}
        assert 0 <= res["results"][group]["acc,none"] <= 1
    assert res["n-samples"]["mmlu_high_school_chemistry"] == {"original": 203, "effective": 2}


@pytest.mark.skipif(importlib.util.find_spec("rolevec_lmeval.model") is None,
                    reason="rolevec_hf (rolevec_lmeval/model.py) is not implemented yet")
def test_rolevec_hf_chemist(mmlu_cache_dir, tmp_path):
    """The issue's CI command: lm_eval --model rolevec_hf --tasks rolevec_chemist --limit 3 (embedded)."""
    res = run_lm_eval(mmlu_cache_dir, tmp_path, "--model", "rolevec_hf", "--tasks", "rolevec_chemist",
                      "--limit", "3")
    group = res["results"]["rolevec_chemist"]
    assert group["sample_count"] == {"acc,none": 18} and 0 <= group["acc,none"] <= 1
    assert len(res["group_subtasks"]["rolevec_chemist"]) == 6
