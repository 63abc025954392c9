"""Tests for rolevec_lmeval.report (runs built with test_results.write_run, the lm_eval 0.4.13 layout)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from test_results import write_run

from rolevec_lmeval.cli import main
from rolevec_lmeval.report import cross_model, leaderboard, merge, stars, write_report
from rolevec_lmeval.results import load_runs

N, RIGHT = 20, 8  # questions per subject; right answers of every unsteered run
DOMAINS = {"natural_science": ["mmlu_college_chemistry", "mmlu_high_school_biology"],
           "econ": ["mmlu_econometrics"], "law": ["mmlu_international_law"]}
# questions gained over the unsteered run, per role and domain (natural_science, econ, law)
GAINS = {"chemist": (6, 1, -1), "economist": (0, 5, 2), "lawyer": (-2, 3, 7)}


def answers(gain: int) -> list[int]:
    """RIGHT + gain right answers; the changed questions are the ones right after the first RIGHT."""
    right = RIGHT + gain
    return [1] * right + [0] * (N - right)


def scores(gains: tuple[int, ...]) -> dict[str, list[int]]:
    return {t: answers(g) for g, subjects in zip(gains, DOMAINS.values(), strict=True) for t in subjects}


def make_runs(root: Path, model: str, sign: int = 1, samples: bool = True) -> None:
    args = {"pretrained": f"org/{model}"}
    base = scores((0, 0, 0))
    split = list(base)
    write_run(root / model / "base1", {t: base[t] for t in split[:2]}, args, samples=samples)
    write_run(root / model / "base2", {t: base[t] for t in split[2:]}, args, samples=samples)
    write_run(root / model / "persona", scores((2, 0, 0)), {**args, "persona": "chemist"}, samples=samples)
    for role, gains in GAINS.items():
        write_run(root / model / role, scores(tuple(sign * g for g in gains)),
                  {**args, "role": role, "layer": 10, "alpha": 4}, samples=samples)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    make_runs(tmp_path, "m-a")
    make_runs(tmp_path, "m-b")
    make_runs(tmp_path, "m-c", sign=-1, samples=False)
    return tmp_path


def row(df: pd.DataFrame, model: str, role: str, domain: str) -> pd.Series:
    (i,) = df.index[(df.model == model) & (df.role == role) & (df.domain == domain)]
    return df.loc[i]


def test_leaderboard_numbers(results_dir: Path) -> None:
    df = leaderboard(merge(load_runs([results_dir])))
    assert len(merge(load_runs([results_dir / "m-a"]))) == 5  # the two base files are merged into one entry
    r = row(df, "m-a", "chemist", "natural_science")
    assert r.in_domain and r.kind == "steered" and r.config == "L10 a=4 add" and r.n == 2 * N
    assert r.score == pytest.approx(100 * (RIGHT + 6) / N)
    assert r.d_base == pytest.approx(100 * 6 / N) and r.rel_base_pct == pytest.approx(100 * 6 / RIGHT)
    assert r.d_persona == pytest.approx(100 * 4 / N)
    assert r.score_lo < r.score < r.score_hi and r.d_base_lo <= r.d_base <= r.d_base_hi <= 100
    r = row(df, "m-a", "lawyer", "econ")
    assert not r.in_domain and r.d_base == pytest.approx(15) and math.isnan(r.d_persona)
    r = row(df, "m-c", "lawyer", "law")  # no samples logged: deltas from the scores, no intervals
    assert r.d_base == pytest.approx(-35) and math.isnan(r.d_base_lo) and math.isnan(r.score_lo)
    base = row(df, "m-a", "-", "econ")
    assert base.kind == "base" and math.isnan(base.d_base)
    assert row(df, "m-a", "persona:chemist", "natural_science").d_base == pytest.approx(10)


def test_cross_model_spearman(results_dir: Path) -> None:
    # A second, worse chemist config of m-a: the cross-model view uses the best in-domain one.
    write_run(results_dir / "m-a" / "chemist-L5", scores((1, 0, 0)),
              {"pretrained": "org/m-a", "role": "chemist", "layer": 5, "alpha": 4})
    cm = cross_model(leaderboard(merge(load_runs([results_dir])))).set_index(["model_a", "model_b"])
    assert cm.loc[("m-a", "m-b")].rho == pytest.approx(1.0) and cm.loc[("m-a", "m-b")].stars == "***"
    assert cm.loc[("m-a", "m-c")].rho == pytest.approx(-1.0) and cm.loc[("m-a", "m-c")].n == 9
    assert [stars(p) for p in (0.0005, 0.001, 0.01, 0.04, 0.05, 0.051)] == ["***", "***", "**", "*", "*", ""]


def test_write_report_files(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    files = write_report([str(results_dir)], out)
    names = sorted(f.name for f in files)
    assert names == sorted(["leaderboard.csv", "leaderboard.md", "cross_model.csv", "cross_model.png",
                            "heatmap_m-a.png", "heatmap_m-b.png", "heatmap_m-c.png"])
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "leaderboard.md").read_text()
    assert "**70.0 [54.6, 81.9]**" in md and "**+30.0 [15.2, 44.8]**" in md  # in-domain cells are bold
    assert re.search(r"\| m-c +\| lawyer +\| L10 a=4 add +\| -15.0 +\| \*\*-35.0\*\* +\| \+10.0 +\|", md)
    persona = md.split("## Δ vs the model's persona run")[1].split("##")[0]
    assert "chemist" in persona and "lawyer" not in persona  # only roles that have a persona run
    assert "![heatmap_m-a](heatmap_m-a.png)" in md
    assert re.search(r"\| m-a +\| m-c +\| 9 +\| -1.00 +\| 0 +\| \*\*\* +\|", md)
    csv = pd.read_csv(out / "leaderboard.csv")
    assert {"model", "role", "config", "domain", "score", "d_base", "d_persona", "rel_base_pct"} <= set(csv)
    # Sorted leaderboard: per model base, persona, then roles by their in-domain gain.
    order = csv.drop_duplicates(["model", "role"])
    expected = ["-", "persona:chemist", "lawyer", "chemist", "economist"]
    assert list(order[order.model == "m-a"].role) == expected


def test_cli_single_model_and_errors(tmp_path: Path, capsys) -> None:
    make_runs(tmp_path / "runs", "m-a")
    assert main(["report", str(tmp_path / "runs"), "-o", str(tmp_path / "out")]) == 0
    assert "leaderboard.md" in capsys.readouterr().out
    assert not (tmp_path / "out" / "cross_model.csv").exists()
    write_run(tmp_path / "other", {"hellaswag": [1, 0]})
    assert main(["report", str(tmp_path / "other"), "-o", str(tmp_path / "o2")]) == 2
    assert "no run has an MMLU subject task" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "runs"), "--confidence", "95"]) == 2
