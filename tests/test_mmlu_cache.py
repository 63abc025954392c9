"""Tests of the cais/mmlu cache builder (rolevec_lmeval/mmlu_cache.py); nothing is ever downloaded."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402

from rolevec_lmeval import mmlu_cache  # noqa: E402
from rolevec_lmeval.cli import main  # noqa: E402
from rolevec_lmeval.errors import RoleVecError  # noqa: E402
from rolevec_lmeval.mmlu_cache import (  # noqa: E402
    SUBJECT_COUNTS,
    build_mmlu_cache,
    check_mmlu_cache,
)

SHARED_MMLU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mmlu"
needs_shared = pytest.mark.skipif(not (SHARED_MMLU / "anatomy").is_dir(),
                                  reason=f"shared MMLU copy not found at {SHARED_MMLU}")
ROW = {"question": "What is 1+1?", "choices": ["1", "2", "3", "4"], "answer": 1}


def write_parquet(root: Path, subject: str, n: int = 3, override: dict | None = None) -> Path:
    """A tiny cais/mmlu-layout subject; ``override`` replaces whole columns (e.g. answer=["B"] * n)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"question": [f"{ROW['question']} #{i}" for i in range(n)], "subject": [subject] * n,
            "choices": [ROW["choices"]] * n, "answer": [ROW["answer"]] * n, **(override or {})}
    (root / subject).mkdir(parents=True, exist_ok=True)
    for split in mmlu_cache.SPLITS:
        pq.write_table(pa.table(cols), root / subject / f"{split}-00000-of-00001.parquet")
    return root


def write_csv(root: Path, subject: str, rows: list[list[str]]) -> Path:
    for d in ("dev", "val", "test"):
        (root / "data" / d).mkdir(parents=True, exist_ok=True)
        with open(root / "data" / d / f"{subject}_{d}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return root


def cache_entries(cache: Path) -> list[str]:
    """Everything under the cais___mmlu folder (hidden temp dirs included)."""
    root = cache / mmlu_cache.DATASET_DIR
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_standard_counts():
    assert len(SUBJECT_COUNTS) == 57
    assert mmlu_cache.TOTALS == {"test": 14042, "validation": 1531, "dev": 285}


@needs_shared
def test_build_shared_subjects_idempotent(tmp_path):
    subjects = ["anatomy", "college_chemistry"]
    report = build_mmlu_cache(SHARED_MMLU, tmp_path, subjects)
    assert report.ok and report.built == subjects and not report.cached
    assert report.rows == {s: SUBJECT_COUNTS[s] for s in subjects}
    out = tmp_path / "cais___mmlu" / "anatomy" / "0.0.0" / "local"
    assert {p.name for p in out.iterdir()} == {"dataset_info.json", "mmlu-test.arrow",
                                               "mmlu-validation.arrow", "mmlu-dev.arrow"}
    assert not [e for e in cache_entries(tmp_path) if e.startswith(".") or "lock" in e]
    stamp = (out / "mmlu-test.arrow").stat().st_mtime_ns
    again = build_mmlu_cache(SHARED_MMLU, tmp_path, subjects)
    assert again.cached == subjects and not again.built
    assert (out / "mmlu-test.arrow").stat().st_mtime_ns == stamp
    forced = build_mmlu_cache(SHARED_MMLU, tmp_path, ["anatomy"], force=True)
    assert forced.built == ["anatomy"] and (out / "mmlu-test.arrow").is_file()
    assert check_mmlu_cache(tmp_path, subjects).cached == subjects


@needs_shared
def test_standard_load_dataset_offline(tmp_path):
    """The unmodified ``load_dataset("cais/mmlu", subject)`` finds the cache with the hub unreachable."""
    build_mmlu_cache(SHARED_MMLU, tmp_path, ["college_chemistry"])
    code = ("import datasets; d = datasets.load_dataset('cais/mmlu', 'college_chemistry'); "
            "print({k: v.num_rows for k, v in d.items()}, d['test'].features['answer'].names)")
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "{'test': 100, 'validation': 8, 'dev': 5} ['A', 'B', 'C', 'D']" in done.stdout


def test_csv_layout(tmp_path):
    import datasets

    rows = [["Multi-line,\nquestion?", "a", "b", "c", "d", "C"], ["Q2", "e", "f", "g", "h", "A"]]
    src = write_csv(tmp_path / "src", "virology", rows)
    report = build_mmlu_cache(src, tmp_path / "cache", ["virology"], check_counts=False)
    assert report.built == ["virology"] and report.source.startswith("csv")
    out = tmp_path / "cache" / "cais___mmlu" / "virology" / "0.0.0" / "local"
    test = datasets.Dataset.from_file(str(out / "mmlu-test.arrow"))
    assert test["question"] == ["Multi-line,\nquestion?", "Q2"] and test["answer"] == [2, 0]
    assert test["choices"][0] == ["a", "b", "c", "d"] and test["subject"] == ["virology"] * 2
    # the data/ folder itself is accepted too
    assert build_mmlu_cache(src / "data", tmp_path / "cache", ["virology"], check_counts=False).cached


@pytest.mark.parametrize(("override", "message"), [
    ({"answer": ["B"] * 3}, "'answer' holds letter strings"),
    ({"answer": [4] * 3}, "'answer' ranges 4..4"),
    ({"choices": [["x", "y", "z"]] * 3}, "'choices' lists have 3..3 items"),
    ({"question": [1, 2, 3]}, "'question' has type int64"),
    ({"subject": ["anatomy"] * 3}, "'subject' is 'anatomy'"),
    ({"extra": [0] * 3}, "columns are question, subject, choices, answer, extra"),
])
def test_wrong_schema_refused_nothing_written(tmp_path, override, message):
    src = write_parquet(tmp_path / "src", "virology")
    write_parquet(src, "astronomy", override=override)  # the bad one sorts first: "virology" would be valid
    with pytest.raises(RoleVecError, match="astronomy") as err:
        build_mmlu_cache(src, tmp_path / "cache", check_counts=False)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert cache_entries(tmp_path / "cache") == []  # not even the valid subject


def test_failed_build_leaves_no_partial_subject(tmp_path, monkeypatch):
    src = write_parquet(tmp_path / "src", "virology")

    def broken_write(table, where, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("pyarrow.parquet.write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        build_mmlu_cache(src, tmp_path / "cache", ["virology"], check_counts=False)
    assert cache_entries(tmp_path / "cache") == []


def test_replaces_a_stale_subject(tmp_path):
    src = write_parquet(tmp_path / "src", "virology", n=3)
    build_mmlu_cache(src, tmp_path / "cache", check_counts=False)
    write_parquet(src, "virology", n=4)
    report = build_mmlu_cache(src, tmp_path / "cache", check_counts=False)
    assert report.built == ["virology"] and report.rows["virology"]["test"] == 4
    assert cache_entries(tmp_path / "cache")[0] == "virology"  # no temp dir left


def test_row_counts_checked(tmp_path):
    src = write_parquet(tmp_path / "src", "virology")
    with pytest.raises(RoleVecError, match="virology has test 3, validation 3, dev 3, expected test 166"):
        build_mmlu_cache(src, tmp_path / "cache")
    assert cache_entries(tmp_path / "cache") == []


def test_missing_subjects_reported(tmp_path):
    src = write_parquet(tmp_path / "src", "virology")
    report = build_mmlu_cache(src, tmp_path / "cache", check_counts=False)
    assert not report.ok and len(report.missing) == 56 and "virology" not in report.missing
    assert "MISSING from the source: abstract_algebra, anatomy" in report.summary()
    assert check_mmlu_cache(tmp_path / "cache").missing == report.missing


@pytest.mark.parametrize(("make", "subjects", "message"), [
    (lambda p: (p.mkdir(), p)[1], None, "no MMLU data in"),
    (lambda p: p / "nope", None, "is not a directory"),
    (lambda p: write_parquet(p, "virology"), ["virologie"], "--subjects: unknown MMLU subject(s) virologie"),
    (lambda p: write_parquet(p, "virology"), ["anatomy"], "--subjects: not in"),
    (lambda p: write_csv(p, "virology", [["q", "a", "b", "c", "d", "E"]]), None, "virology_test.csv:1:"),
])
def test_bad_input(tmp_path, make, subjects, message):
    with pytest.raises(RoleVecError, match=re.escape(message)):
        build_mmlu_cache(make(tmp_path / "src"), tmp_path / "cache", subjects, check_counts=False)


def test_incomplete_subject_refused(tmp_path):
    src = write_parquet(tmp_path / "src", "virology")
    (src / "virology" / "dev-00000-of-00001.parquet").unlink()
    with pytest.raises(RoleVecError, match="subject virology has no dev split"):
        build_mmlu_cache(src, tmp_path / "cache", check_counts=False)


def test_cli(tmp_path, capsys):
    src = write_parquet(tmp_path / "src", "virology")
    cache = tmp_path / "cache"
    args = ["data", "mmlu", "--from", str(src), "--cache-dir", str(cache), "--no-count-check"]
    assert main([*args, "--subjects", "virology"]) == 0
    out = capsys.readouterr().out
    assert "1 built" in out and f"HF_DATASETS_CACHE={cache}" in out
    assert main(args) == 1  # the other 56 subjects are missing
    assert "56 missing" in capsys.readouterr().out
    assert main(["data", "mmlu", "--check", "--cache-dir", str(cache), "--subjects", "virology"]) == 0
    assert main(["data", "mmlu", "--from", str(src), "--cache-dir", str(cache)]) == 2  # row counts
    err = capsys.readouterr().err.strip()
    assert err.startswith("rolevec data: error: --from: row counts differ") and "\n" not in err
