"""Tests for rolevec_lmeval.results, plus ``write_run``: a builder of lm_eval 0.4.13 output used by the
report / check tests. Its layout copies real ``lm_eval --output_path ... --log_samples`` files (inspected
with ``--model rolevec_hf --tasks mmlu_high_school_chemistry --limit 3``); the committed regression
baseline in tests/regression/ is real lm_eval output and is loaded here as well."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.results import (
    find_result_files,
    load_run,
    load_runs,
    parse_model_args,
    persona_key,
    steering_config,
)

BASELINE = REPO / "tests" / "regression" / "baseline"
DATE = "2026-01-02T03-04-05.678901"


def write_run(out: Path, scores: dict[str, list[float]], model_args: dict | str | None = None, *,
              samples: bool = True, groups: dict[str, list[str]] | None = None, date: str = DATE,
              version: str = "0.4.13", metric: str = "acc", higher_is_better: bool = True,
              model: str = "rolevec_hf") -> Path:
    """Write what lm_eval 0.4.13 writes for per-question ``scores`` (task -> list); returns the results
    file. ``out`` ending in .json gives the ``--output_path FILE.json`` layout, else ``out/<model>/``."""
    args = {} if model_args is None else model_args
    parsed = parse_model_args(args)
    results: dict[str, dict[str, Any]] = {}
    for task, values in scores.items():
        n = len(values)
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        results[task] = {"name": task, "alias": task.removeprefix("mmlu_"), "sample_len": n,
                         f"{metric},none": mean,
                         f"{metric}_stderr,none": sd / math.sqrt(n) if sd is not None else "N/A"}
    for group, subtasks in (groups or {}).items():
        values = [v for t in subtasks for v in scores[t]]
        results[group] = {"alias": group, "name": group, "sample_len": len(values),
                          f"{metric},none": sum(values) / len(values), f"{metric}_stderr,none": "N/A",
                          "sample_count": {f"{metric},none": len(values)}}
    rolevec = ([{"layer": int(parsed.get("layer", 0)), "alpha": float(parsed.get("alpha", 0)),
                 "intervention": parsed.get("intervention", "add")}] if parsed.get("role") else [])
    data = {
        "results": results,
        "group_subtasks": dict(groups or {}),
        "configs": {t: {"task": t, "dataset_path": "cais/mmlu", "dataset_name": t.removeprefix("mmlu_"),
                        "output_type": "multiple_choice", "metric_list": [
                            {"metric": metric, "aggregation": "mean", "higher_is_better": higher_is_better}],
                        "metadata": {"version": 1.0}} for t in scores},
        "versions": {t: 1.0 for t in scores} | {g: "1" for g in groups or {}},
        "n-shot": {t: 0 for t in scores},
        "higher_is_better": {t: {metric: higher_is_better} for t in [*scores, *(groups or {})]},
        "n-samples": {t: {"original": 100, "effective": len(v)} for t, v in scores.items()},
        "config": {"model": model, "model_args": args, "model_num_parameters": 134515008,
                   "model_dtype": "torch.float32", "rolevec": rolevec,
                   "rolevec_persona": f"You are a {parsed['persona']}." if parsed.get("persona") else None,
                   "batch_size": 1, "device": "cpu", "limit": 5.0, "random_seed": 0},
        "git_hash": None, "date": 1796414929.49, "lm_eval_version": version,
        "transformers_version": "5.25.0", "task_hashes": {}, "model_source": model,
        "model_name": "i82qcls7", "model_name_sanitized": "i82qcls7", "chat_template": None,
        "total_evaluation_time_seconds": "4.2",
    }
    if out.suffix == ".json":
        folder, file = out.parent, out.parent / f"{out.stem}_{date}.json"
    else:
        folder = out / "i82qcls7"
        file = folder / f"results_{date}.json"
    folder.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data, indent=2))
    if samples:
        for task, values in scores.items():
            lines = [{"doc_id": i, "doc": {"question": f"q{i}", "choices": ["a", "b", "c", "d"], "answer": 0},
                      "target": "0", "arguments": {"gen_args_0": {"arg_0": f"q{i}\nAnswer:", "arg_1": " A"}},
                      "resps": [[["-1.0", "False"]]], "filtered_resps": [["-1.0", "False"]], "filter": "none",
                      "metrics": [metric], "doc_hash": "h", "prompt_hash": "p", "target_hash": "t", metric: v}
                     for i, v in enumerate(values)]
            (folder / f"samples_{task}_{date}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return file


def test_committed_baseline_is_real_lm_eval_output() -> None:
    (file,) = find_result_files([BASELINE])
    run = load_run(file)
    assert run.data["lm_eval_version"] == "0.4.13"
    assert (run.model, run.kind, run.role, run.config) == ("smollm2-135m-instruct", "steered", "answer_d",
                                                           "L26 a=100 add")
    assert run.groups == {"rolevec_regression": ["mmlu_high_school_statistics", "mmlu_management"]}
    assert run.leaves() == ["mmlu_high_school_statistics", "mmlu_management"]
    s = run.samples("rolevec_regression")
    assert len(s) == run.n("rolevec_regression") == 10
    assert s.mean() == pytest.approx(run.value("rolevec_regression"))
    assert list(s.index.names) == ["task", "doc_id"]
    assert run.stderr("mmlu_management") == pytest.approx(s.loc["mmlu_management"].sem())


def test_layouts_dir_and_json_file(tmp_path: Path) -> None:
    task = "mmlu_college_chemistry"
    a = write_run(tmp_path / "dir", {task: [1, 0, 1]}, {"role": "chemist", "layer": 12, "alpha": 3})
    b = write_run(tmp_path / "file" / "out.json", {task: [0, 0, 1]}, {"persona": "chemist"})
    assert a.name == f"results_{DATE}.json" and b.name == f"out_{DATE}.json"
    runs = load_runs([tmp_path])
    assert {r.path for r in runs} == {a, b}
    assert len(load_runs([tmp_path / "dir", tmp_path, tmp_path / "file" / ".."])) == 2  # each file once
    steered, persona = (load_run(a), load_run(b))
    assert (steered.kind, steered.config) == ("steered", "L12 a=3 add")
    assert (persona.kind, persona.persona, persona.config) == ("persona", "chemist", "persona")
    assert list(persona.samples(task)) == [0, 0, 1]
    assert load_run(write_run(tmp_path / "ns", {task: [1]}, samples=False)).samples(task) is None


def test_model_identity_and_config() -> None:
    assert parse_model_args("pretrained=EleutherAI/pythia-70m,role=chemist,layer=3") == {
        "pretrained": "EleutherAI/pythia-70m", "role": "chemist", "layer": "3"}
    assert persona_key("You are a chemist.") == persona_key("chemist") == "chemist"
    assert persona_key("data scientist") == "data_scientist"
    assert persona_key("You are a pirate.") == "You are a pirate."
    args = {"role": "chemist", "layer": 12, "method": "centered"}
    resolved = [{"layer": 12, "alpha": 4.0, "intervention": "add"}]
    assert steering_config(args, resolved) == "L12 a=4 add method=centered"
    assert steering_config({"layer": "3", "alpha": "2.50"}, None) == "L3 a=2.5 add"


def test_models_named_from_pretrained(tmp_path: Path) -> None:
    one = {"mmlu_anatomy": [1]}
    smol = {"pretrained": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    hub = load_run(write_run(tmp_path / "a", one, smol, model="hf"))
    embedded = load_run(write_run(tmp_path / "b", one))
    old = load_run(write_run(tmp_path / "c", one, "pretrained=Qwen/Qwen2.5-0.5B,role=x,layer=1,alpha=2"))
    assert hub.model == embedded.model == "smollm2-135m-instruct"
    assert (old.model, old.role, old.config) == ("qwen2.5-0.5b", "x", "L1 a=2 add")
    with pytest.raises(RoleVecError, match="config.model_args' names no model"):
        load_run(write_run(tmp_path / "d", one, model="hf"))


def _mutate(file: Path, fn) -> Path:
    data = json.loads(file.read_text())
    fn(data)
    file.write_text(json.dumps(data))
    return file


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("results"), "missing field 'results'"),
    (lambda d: d.pop("lm_eval_version"), "missing field 'lm_eval_version'"),
    (lambda d: d.update(lm_eval_version="0.3.0"), "field 'lm_eval_version' is '0.3.0'; supported: 0.4.x"),
    (lambda d: d["config"].pop("model_args"), "missing field 'config.model_args'"),
    (lambda d: d.pop("config"), "missing field 'config.model'"),
    (lambda d: d.update(results=[1]), "field 'results' must be a dict"),
])
def test_bad_results_files_name_file_and_field(tmp_path: Path, change, message) -> None:
    file = _mutate(write_run(tmp_path, {"mmlu_anatomy": [1, 0]}), change)
    with pytest.raises(RoleVecError, match=message) as err:
        load_run(file)
    assert str(file) in str(err.value)


def test_bad_json_missing_metric_and_bad_samples(tmp_path: Path) -> None:
    bad = tmp_path / "x_2026-01-01T00-00-00.json"
    bad.write_text("{not json")
    with pytest.raises(RoleVecError, match="not valid JSON"):
        load_run(bad)
    bad.write_text("[]")
    with pytest.raises(RoleVecError, match="not an lm-evaluation-harness results file"):
        load_run(bad)
    run = load_run(write_run(tmp_path / "r", {"mmlu_anatomy": [1, 0]}))
    with pytest.raises(RoleVecError, match=r"results.mmlu_anatomy has no 'acc_norm,none' \(has: acc,none\)"):
        run.value("mmlu_anatomy", "acc_norm")
    samples = run.samples_files["mmlu_anatomy"]
    samples.write_text('{"doc_id": 0, "acc": 1}\n{"doc_id": 1\n')
    with pytest.raises(RoleVecError, match=f"{samples} line 2: not valid JSON"):
        load_run(run.path).samples("mmlu_anatomy")
    samples.write_text('{"doc_id": 0, "acc_norm": 1}\n')
    with pytest.raises(RoleVecError, match="line 1: missing field 'doc_id' or numeric 'acc'"):
        load_run(run.path).samples("mmlu_anatomy")


def test_find_result_files_errors(tmp_path: Path) -> None:
    with pytest.raises(RoleVecError, match="does not exist"):
        find_result_files([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RoleVecError, match="no lm_eval results file"):
        find_result_files([tmp_path / "empty"])


def test_groups_and_stderr(tmp_path: Path) -> None:
    groups = {"g": ["mmlu_a", "mmlu_b"]}
    run = load_run(write_run(tmp_path, {"mmlu_a": [1, 0, 1], "mmlu_b": [1]}, groups=groups))
    assert run.leaves() == ["mmlu_a", "mmlu_b"] and run.leaves("g") == ["mmlu_a", "mmlu_b"]
    assert run.n("g") == 4 and run.value("g") == 0.75
    assert run.stderr("g") is None and run.stderr("mmlu_b") is None
    assert run.stderr("mmlu_a") == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
