"""`rolevec sweep` end to end on a tiny Llama: outputs, resume, shards + merge, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import random_vectors

from rolevec_lmeval.cli import main

GRID = ["--layers", "1:4:2", "--positions", "-1,-2", "--alphas", "1,4", "--interventions", "add,ablate"]
N_RECORDS = 3 + 1 + 2 * 2 * 2 + 2 * 2  # base per task, persona, add, ablate


@pytest.fixture(scope="module")
def vecdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-cli-vecs")
    random_vectors(out, "chemist", 4, 64, scale=3.0)
    random_vectors(out, "nurse", 4, 64, scale=3.0, seed=1)
    return out


def sweep(tiny, vecdir, out, *extra, grid=GRID):
    argv = ["sweep", "--model", str(tiny), "--vectors", str(vecdir), "--role", "chemist", *grid,
            "--limit", "2", "--tasks", "college_chemistry", "--off-tasks", "econometrics,management",
            "--batch-size", "4", "--no-progress", "--out", str(out), *extra]
    return main(argv)


def records(path):
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def first_run(tiny_llama_dir, vecdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-out")
    assert sweep(tiny_llama_dir, vecdir, out) == 0
    return out


def test_outputs(first_run, vecdir, tiny_llama_dir):
    recs = records(first_run / "sweep.jsonl")
    assert len(recs) == N_RECORDS
    steer = recs["validation|chemist|add|l1|p-2|a4"]
    assert steer["in_tasks"] == ["mmlu_college_chemistry"] and set(steer["correct"]) == {
        "mmlu_college_chemistry", "mmlu_econometrics", "mmlu_management"}
    assert all(len(v) == 2 for v in steer["correct"].values())
    summary = (first_run / "summary.md").read_text()
    assert "| chemist |" in summary and "![chemist](heatmaps/chemist.png)" in summary
    assert (first_run / "heatmaps" / "chemist.png").stat().st_size > 1000
    entry = json.loads((vecdir / "index.json").read_text())["roles"]["chemist"]
    assert {"layer", "position", "alpha", "intervention", "method", "validation"} <= set(entry)
    from rolevec_lmeval.model import RoleVecLM  # role=chemist alone now uses the selected config

    lm = RoleVecLM(pretrained=str(tiny_llama_dir), vectors=str(vecdir), role="chemist", device="cpu")
    want = [(entry["layer"], entry["intervention"])]
    assert [(s.layer, s.intervention) for s in lm.steerings] in (want, [])


def test_rerun_skips_done_points_and_resumes_a_partial_file(first_run, tiny_llama_dir, vecdir, tmp_path,
                                                            capsys):
    out = tmp_path / "partial"
    shutil.copytree(first_run, out)
    lines = (out / "sweep.jsonl").read_text().splitlines()
    (out / "sweep.jsonl").write_text("\n".join(lines[:-5]) + "\n" + lines[-1][:40])  # crash mid-line
    assert sweep(tiny_llama_dir, vecdir, out, "--no-index") == 0
    assert f"{N_RECORDS - 5} already done" in capsys.readouterr().out
    again = records(out / "sweep.jsonl")
    full = records(first_run / "sweep.jsonl")
    assert set(again) == set(full)
    assert all(again[k]["correct"] == full[k]["correct"] for k in full)
    n = len((out / "sweep.jsonl").read_text().splitlines())
    assert sweep(tiny_llama_dir, vecdir, out, "--no-index") == 0
    assert f"{N_RECORDS} already done" in capsys.readouterr().out
    assert len((out / "sweep.jsonl").read_text().splitlines()) == n


def test_shards_then_merge_equal_the_single_run(first_run, tiny_llama_dir, vecdir, tmp_path):
    for i in (1, 2, 3):
        assert sweep(tiny_llama_dir, vecdir, tmp_path, "--shard", f"{i}/3", "--no-index") == 0
    shards = sorted(tmp_path.glob("sweep.shard-*-of-3.jsonl"))
    assert len(shards) == 3 and not (tmp_path / "summary.md").exists()
    parts = [set(records(s)) for s in shards]
    assert all(p and parts[0].isdisjoint(p) for p in parts[1:])
    assert main(["sweep", "--merge", "--out", str(tmp_path), "--no-index"]) == 0
    merged, full = records(tmp_path / "sweep.jsonl"), records(first_run / "sweep.jsonl")
    assert set(merged) == set(full) and all(merged[k]["correct"] == full[k]["correct"] for k in full)

    def table(out):
        lines = (out / "summary.md").read_text().splitlines()
        return [line for line in lines if line.startswith("| chemist")]

    assert table(tmp_path) == table(first_run)


@pytest.mark.parametrize("args, message", [
    (["--role", "alchemist"], "unknown role(s) alchemist; valid: all, economic_researcher"),
    (["--tasks", "mmlu_alchemy"], "unknown lm-eval task 'mmlu_alchemy'"),
    (["--layers", "3:3"], "empty grid"),
    (["--alphas", "1,nan"], "not finite"),
    (["--layers", "2:9"], "outside the model; valid: 0..3"),
    (["--shard", "3/2"], "--shard '3/2' is not i/n"),
    (["--positions", "-5"], "valid: -2..1"),
    (["--interventions", "steer"], "valid: add, ablate, add+ablate"),
])
def test_bad_input_is_refused_in_one_line(tiny_llama_dir, vecdir, tmp_path, capsys, args, message):
    assert sweep(tiny_llama_dir, vecdir, tmp_path / "o", *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("rolevec sweep: error:")


def test_out_dir_of_another_model_is_refused(tiny_llama_dir, vecdir, tmp_path, capsys):
    (tmp_path / "meta.json").write_text(json.dumps({"model_slug": "smollm2-135m-instruct"}))
    assert sweep(tiny_llama_dir, vecdir, tmp_path) == 2
    assert "holds a sweep for model 'smollm2-135m-instruct'" in capsys.readouterr().err
    assert not (tmp_path / "sweep.jsonl").exists()


def test_merge_refuses_mixed_models(first_run, tmp_path, capsys):
    recs = list(records(first_run / "sweep.jsonl").values())
    (tmp_path / "sweep.shard-1-of-2.jsonl").write_text(json.dumps(recs[0]) + "\n")
    (tmp_path / "sweep.shard-2-of-2.jsonl").write_text(json.dumps({**recs[1], "model_slug": "other"}) + "\n")
    assert main(["sweep", "--merge", "--out", str(tmp_path), "--no-index"]) == 2
    assert "different models" in capsys.readouterr().err


def test_index_is_not_written_for_changed_vectors(first_run, vecdir, tmp_path, capsys):
    other = tmp_path / "vecs"
    random_vectors(other, "chemist", 4, 64, scale=3.0, seed=7)  # not the file the sweep used
    assert main(["sweep", "--merge", "--out", str(first_run), "--vectors", str(other)]) == 0
    assert "not indexing chemist" in capsys.readouterr().err and not (other / "index.json").exists()
    shutil.copy(vecdir / "chemist.safetensors", other / "chemist.safetensors")
    assert main(["sweep", "--merge", "--out", str(first_run), "--vectors", str(other)]) == 0
    assert "chemist" in json.loads((other / "index.json").read_text())["roles"]


def test_layers_best_adds_ablate_at_each_roles_selected_layer(first_run, tiny_llama_dir, vecdir, tmp_path,
                                                              capsys):
    out = tmp_path / "best"
    shutil.copytree(first_run, out)
    layer = json.loads((vecdir / "index.json").read_text())["roles"]["chemist"]["layer"]
    grid = ["--layers", "best", "--positions", "-1", "--alphas", "1", "--interventions", "add+ablate"]
    assert sweep(tiny_llama_dir, vecdir, out, "--no-index", grid=grid) == 0
    new = set(records(out / "sweep.jsonl")) - set(records(first_run / "sweep.jsonl"))
    assert new == {f"validation|chemist|add+ablate|l{layer}|p-1|a1"}
    assert sweep(tiny_llama_dir, vecdir, tmp_path / "empty", "--no-index", grid=grid) == 2  # nothing to use
    assert "--layers best: no selected validation point" in capsys.readouterr().err
