from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import random_vectors
from test_judge import ChatServer, closed_port_url

from rolevec_lmeval import scope
from rolevec_lmeval.cli import main
from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.judge import JudgeError, LexiconJudge, OpenAIJudge
from rolevec_lmeval.store import VectorStore


@pytest.fixture
def setup(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    vecs = tmp_path / "vecs"
    for i, role in enumerate(["doctor", "chemist"]):
        random_vectors(vecs, role, 4, 64, seed=i)
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    return model, tok, VectorStore(vecs), vecs


def test_plan_uses_index_configs_else_layers(setup):
    model, _, store, vecs = setup
    with pytest.raises(RoleVecError, match=r"--layers is required \(no index.json config for 'doctor'\)"):
        scope.plan_jobs(model, store, ["doctor"], None, None, None, "tiny")
    (vecs / "index.json").write_text(json.dumps({"roles": {"doctor": {"layer": 3, "method": "centered"}}}))
    [job] = scope.plan_jobs(model, store, ["doctor"], None, None, None, "tiny")
    assert (job.layer, job.source, job.method, job.position) == (3, "index", "centered", -1)
    assert job.unit.norm().item() == pytest.approx(1.0)
    jobs = scope.plan_jobs(model, store, ["doctor", "chemist"], "1-2", 0, None, "tiny")
    assert [(j.role, j.layer, j.source, j.position) for j in jobs] == [
        ("doctor", 1, "arg", 0), ("doctor", 2, "arg", 0), ("chemist", 1, "arg", 0), ("chemist", 2, "arg", 0)]
    with pytest.raises(RoleVecError, match="layer 4 is out of range; valid: 0..3"):
        scope.plan_jobs(model, store, ["doctor"], "4", None, None, "tiny")


def test_patches_are_scaled_to_the_residual_norm(setup, tmp_path, monkeypatch):
    model, tok, store, _ = setup
    seen = []
    real = scope.patched_generate

    def spy(model, ids, position, layer, patches, n):
        if patches is not None:
            seen.append((layer, patches.norm(dim=-1)))
        return real(model, ids, position, layer, patches, n)

    monkeypatch.setattr(scope, "patched_generate", spy)
    jobs = scope.plan_jobs(model, store, ["doctor", "chemist"], "1,3", None, None, "tiny")
    rows = scope.run_scope(model, tok, jobs, [0.5, 2.0], LexiconJudge(), tmp_path / "out", "tiny",
                           max_new_tokens=3, batch_size=3)
    norms = scope.residual_norms(model, tok, [1, 3])
    assert len(rows) == 8 and [len(p) for _, p in seen] == [3, 1, 3, 1]  # batches never mix layers
    for layer, sizes in seen:
        for size in sizes:
            assert min(abs(size / norms[layer] - s) for s in (0.5, 2.0)) < 1e-4


def read_rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_cli_scope_writes_tables_and_summary(setup, tiny_llama_dir, tmp_path, capsys):
    _, _, _, vecs = setup
    out = tmp_path / "out"
    rc = main(["scope", "--model", str(tiny_llama_dir), "--vectors", str(vecs), "--layers", "1,2",
               "--scales", "1,4", "--max-new-tokens", "4", "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    rows = read_rows(out / "scope.csv")
    assert len(rows) == 8 and rows[0].keys() == set(scope.COLUMNS)
    assert {(r["role"], r["layer"], r["scale"]) for r in rows} == {
        (role, layer, scale) for role in ("doctor", "chemist") for layer in "12" for scale in ("1.0", "4.0")}
    assert all(r["judge"] == "lexicon" and r["aligned"] in ("True", "False") for r in rows)
    summary = (out / "summary.md").read_text()
    assert "of 2 roles**" in summary and "| doctor | 1,2 (arg) |" in summary and "Judge: `lexicon`" in summary
    table = (out / "scope.md").read_text().splitlines()
    assert sum(line.startswith(("| doctor |", "| chemist |")) for line in table) == 8


def test_cli_scope_bad_input(setup, tiny_llama_dir, tmp_path, capsys):
    _, _, _, vecs = setup
    base = ["scope", "--model", str(tiny_llama_dir), "--vectors", str(vecs), "--out", str(tmp_path / "o")]
    assert main([*base, "--layers", "9"]) == 2
    assert "rolevec scope: error: layers: layer 9 is out of range; valid: 0..3" in capsys.readouterr().err
    assert main([*base, "--layers", "1", "--scales", "1,inf"]) == 2
    assert "scales='1,inf' must be non-zero finite numbers" in capsys.readouterr().err
    assert main([*base, "--layers", "1", "--roles", "astronaut"]) == 2
    assert "role='astronaut' is unknown" in capsys.readouterr().err


def test_unreachable_judge_keeps_partial_table(setup, tiny_llama_dir, tmp_path, capsys, monkeypatch):
    _, _, _, vecs = setup
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    out = tmp_path / "out"
    rc = main(["scope", "--model", str(tiny_llama_dir), "--vectors", str(vecs), "--layers", "1,2",
               "--max-new-tokens", "3", "--out", str(out), "--judge", "openai", "--judge-model", "m",
               "--judge-url", closed_port_url(), "--judge-timeout", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "is unreachable" in err and "partial table (6 rows) kept in" in err
    rows = read_rows(out / "scope.csv")
    assert len(rows) == 6 and {r["layer"] for r in rows} == {"1"}  # the first layer's batch only
    assert all(r["aligned"] == "" and r["judge"] == "openai" and r["generation"] is not None for r in rows)
    assert "not judged" in (out / "summary.md").read_text()


def test_judge_failing_midway_keeps_judged_rows(setup, tmp_path, monkeypatch):
    model, tok, store, _ = setup
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ChatServer(["YES", "NO", (503, "overloaded")])
    try:
        jobs = scope.plan_jobs(model, store, ["doctor", "chemist"], "1,2", None, None, "tiny")
        with pytest.raises(JudgeError, match=r"HTTP 503: overloaded; partial table \(4 rows\) kept"):
            scope.run_scope(model, tok, jobs, [1.0, 2.0], OpenAIJudge("m", server.url, 5), tmp_path, "tiny",
                            max_new_tokens=2)
    finally:
        server.close()
    rows = read_rows(tmp_path / "scope.csv")
    assert [r["aligned"] for r in rows] == ["True", "False", "", ""]
    assert [r["judge_answer"] for r in rows] == ["YES", "NO", "", ""]
    summary = (tmp_path / "summary.md").read_text()
    assert "| doctor | 1 (arg) | L1×1 |" in summary and "**1 of 2 roles**" in summary


@pytest.mark.slow
def test_scope_on_the_embedded_model(embedded_dir, tmp_path, capsys):
    """Real model; a shipped vector when there is one, else a random one of the right shape."""
    from rolevec_lmeval.store import default_store

    store = default_store(embedded_dir)
    if store is not None and store.roles():
        vectors, role = store.path, ("doctor" if "doctor" in store.roles() else store.roles()[0])
    else:
        vectors, role = tmp_path / "vecs", "doctor"
        random_vectors(vectors, role, 30, 576, n_positions=1)
    out = tmp_path / "out"
    rc = main(["scope", "--vectors", str(vectors), "--roles", role, "--layers", "9", "--scales", "1,4",
               "--max-new-tokens", "8", "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    rows = read_rows(out / "scope.csv")
    assert [(r["role"], r["layer"], r["scale"]) for r in rows] == [(role, "9", "1.0"), (role, "9", "4.0")]
    assert all(r["generation"].strip() for r in rows)
    summary = (out / "summary.md").read_text()
    assert "Unpatched description of the placeholder" in summary and "L9: " in summary
