"""Tests for rolevec_lmeval.check (runs built with test_results.write_run, the lm_eval 0.4.13 layout)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_results import write_run

from rolevec_lmeval.check import compare, paired_test
from rolevec_lmeval.cli import main
from rolevec_lmeval.results import load_run

STEERED = {"role": "chemist", "layer": 12, "alpha": 3}
GROUPS = {"g": ["mmlu_a", "mmlu_b"]}


def check(tmp_path: Path, base: dict, new: dict, *extra: str, base_args=STEERED, new_args=STEERED,
          samples: bool = True, groups=None) -> int:
    b = write_run(tmp_path / "base", base, base_args, samples=samples, groups=groups)
    n = write_run(tmp_path / "new", new, new_args, samples=samples, groups=groups)
    return main(["check", "--baseline", str(b), "--results", str(n.parent), *extra])


def test_identical_and_better_results_pass(tmp_path: Path, capsys) -> None:
    scores = {"mmlu_a": [1, 1, 0, 1, 0, 1]}
    assert check(tmp_path, scores, scores) == 0
    out = capsys.readouterr().out
    assert "| mmlu_a " in out and "| ok " in out and "0 regression(s) in 1 task(s)" in out
    assert check(tmp_path, {"mmlu_a": [0] * 6}, scores) == 0
    assert "better" in capsys.readouterr().out


def test_significant_paired_drop_fails(tmp_path: Path, capsys) -> None:
    base = {"mmlu_a": [1] * 4 + [0] * 4, "mmlu_b": [1] * 4 + [0] * 4}
    new = {"mmlu_a": [0] * 8, "mmlu_b": [0] * 8}
    assert check(tmp_path, base, new, groups=GROUPS) == 1
    out = capsys.readouterr().out
    table = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "drop, n.s." in table["mmlu_a"] and "0.0625" in table["mmlu_a"]  # 4 discordant: p = 1/16
    assert "REGRESSION" in table["g"] and "McNemar" in table["g"]  # pooled, 8 discordant: p = 1/256
    assert "1 regression(s) in 3 task(s)" in out and ": g" in out


def test_max_drop_and_alpha(tmp_path: Path) -> None:
    base, new = {"mmlu_a": [1] * 10 + [0] * 90}, {"mmlu_a": [0] * 100}  # -10 points, p = 1/1024
    assert check(tmp_path, base, new) == 1
    assert check(tmp_path, base, new, "--max-drop", "10") == 0
    assert check(tmp_path, base, new, "--alpha", "0.0005") == 0


def test_without_samples_uses_standard_errors(tmp_path: Path, capsys) -> None:
    base, new = {"mmlu_a": [1] * 60 + [0] * 40}, {"mmlu_a": [1] * 40 + [0] * 60}  # -20 points, z ~ 2.9
    assert check(tmp_path, base, new, samples=False) == 1
    assert "z (stderr)" in capsys.readouterr().out
    base, new = {"mmlu_a": [1, 0, 1, 0]}, {"mmlu_a": [1, 0, 0, 0]}  # -25 points, but only 4 questions
    assert check(tmp_path, base, new, samples=False) == 0
    assert "drop, n.s." in capsys.readouterr().out
    base, new = {"mmlu_a": [1]}, {"mmlu_a": [0]}  # --limit 1: no standard error, the drop alone decides
    assert check(tmp_path, base, new, samples=False) == 1
    assert "| none " in capsys.readouterr().out


def test_paired_test_kinds() -> None:
    a, b = pd.Series([0.2, 0.4, 0.6, 0.8]), pd.Series([0.1, 0.3, 0.5, 0.75])
    p, test = paired_test(a, b, higher_is_better=True)
    assert test == "paired t" and p < 0.01
    assert paired_test(a, b, higher_is_better=False)[0] > 0.99
    assert paired_test(pd.Series([1.0, 0.0]), pd.Series([1.0, 0.0]), True) == (1.0, "McNemar")
    assert paired_test(pd.Series([0.5, 0.5]), pd.Series([0.25, 0.25]), True) == (0.0, "paired t")


def test_lower_is_better_metric(tmp_path: Path) -> None:
    kw = dict(metric="word_perplexity", higher_is_better=False)
    b = load_run(write_run(tmp_path / "b", {"t": [1.0, 2.0, 3.0]}, **kw))
    n = load_run(write_run(tmp_path / "n", {"t": [2.0, 3.0, 4.0]}, **kw))
    row = compare(b, n, "word_perplexity").iloc[0]
    assert row["drop"] == pytest.approx(100) and row.verdict == "REGRESSION" and row.test == "paired t"
    assert compare(n, b, "word_perplexity").iloc[0].verdict == "better"


def test_different_limits_compare_common_questions(tmp_path: Path, capsys) -> None:
    assert check(tmp_path, {"mmlu_a": [1, 1, 0, 0]}, {"mmlu_a": [1, 1, 0, 0, 0, 0, 0, 0]}) == 0
    out = capsys.readouterr().out
    assert "4 vs 8 questions (--limit differs)" in out and "| mmlu_a |   4 |" in out


def test_unusable_input_exits_2(tmp_path: Path, capsys) -> None:
    scores = {"mmlu_a": [1, 0]}
    assert check(tmp_path, scores, scores, new_args={**STEERED, "pretrained": "Qwen/Qwen2.5-0.5B"}) == 2
    err = capsys.readouterr().err
    assert "is model 'smollm2-135m-instruct' but --results" in err and "'qwen2.5-0.5b'" in err
    assert check(tmp_path / "x", scores, {"mmlu_b": [1, 0]}) == 2
    assert "lacks baseline tasks (or their 'acc,none'): mmlu_a" in capsys.readouterr().err
    assert check(tmp_path / "y", scores, scores, "--metric", "acc_norm") == 2
    assert "no task has metric 'acc_norm,none'" in capsys.readouterr().err
    write_run(tmp_path / "two", scores, date="2026-02-02T00-00-00.000000")
    write_run(tmp_path / "two", scores)
    assert main(["check", "--baseline", str(tmp_path / "two"), "--results", str(tmp_path / "two")]) == 2
    assert "holds 2 results files" in capsys.readouterr().err
    old = write_run(tmp_path / "old", scores)
    data = json.loads(old.read_text())
    del data["lm_eval_version"]
    old.write_text(json.dumps(data))
    assert main(["check", "--baseline", str(old), "--results", str(old)]) == 2
    assert f"{old}: missing field 'lm_eval_version'" in capsys.readouterr().err
    assert main(["check", "--baseline", str(tmp_path / "nope"), "--results", str(old)]) == 2
    assert "--baseline: " in capsys.readouterr().err
    assert main(["check", "--baseline", str(old), "--results", str(old), "--max-drop", "-1"]) == 2


def test_steering_differences_are_noted(tmp_path: Path, capsys) -> None:
    scores = {"mmlu_a": [1, 0]}
    assert check(tmp_path, scores, scores, new_args={**STEERED, "layer": 14}) == 0
    assert "note: steering differs: baseline chemist L12 a=3 add, results chemist L14 a=3 add" in \
        capsys.readouterr().out
