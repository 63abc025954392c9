"""Tests of the role/domain/subject table and the generated lm-eval group YAMLs (rolevec_lmeval/tasks.py)."""

from __future__ import annotations

import json
import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402
import yaml  # noqa: E402

from rolevec_lmeval import tasks  # noqa: E402
from rolevec_lmeval.cli import main  # noqa: E402
from rolevec_lmeval.errors import RoleVecError  # noqa: E402
from rolevec_lmeval.mmlu_cache import MMLU_SUBJECTS  # noqa: E402

PAPER_DOMAINS = ["econ", "eecs", "law", "math", "medicine", "natural_science", "politics", "psychology"]


@pytest.fixture(scope="module")
def table() -> dict[str, tasks.RoleTasks]:
    return {row.role: row for row in tasks.task_table()}


def test_table(table):
    roles = json.loads(tasks.ROLES_FILE.read_text())
    assert list(table) == list(roles["roles"])
    chemist = table["chemist"]
    assert chemist.domain == "natural_science" and chemist.paper
    assert chemist.subjects == tuple(roles["domains"]["natural_science"]["subjects"])
    assert (chemist.group, chemist.off_group, chemist.pair_group) == (
        "rolevec_chemist", "rolevec_chemist_off", "rolevec_chemist_pair")
    paper = {s for d in PAPER_DOMAINS for s in roles["domains"][d]["subjects"]}
    for row in table.values():
        assert set(row.subjects) <= set(MMLU_SUBJECTS) and not set(row.subjects) & set(row.off_subjects)
        assert set(row.off_subjects) == paper - set(row.subjects)  # the other paper domains, never history
    assert not table["historian"].paper and "prehistory" in table["historian"].subjects
    assert set(table["historian"].off_subjects) == paper
    assert tasks.test_questions(chemist.subjects) == 1010


def test_bad_roles_file(tmp_path):
    bad = tmp_path / "roles.json"
    bad.write_text(json.dumps({"domains": {"x": {"subjects": ["chemistry"]}}, "roles": {}}))
    with pytest.raises(RoleVecError, match="domain 'x'.*unknown: chemistry\\)"):
        tasks.task_table(bad)
    domains = {"x": {"subjects": ["virology"]}}
    bad.write_text(json.dumps({"domains": domains, "roles": {"r": {"domain": "y"}}}))
    with pytest.raises(RoleVecError, match="role 'r' needs .* a domain among x"):
        tasks.task_table(bad)


def test_shipped_configs_are_current():
    """task_configs/ equals what roles.json generates (rerun `rolevec tasks --write-configs task_configs`)."""
    root = tasks.task_configs_dir()
    expected = tasks.render_configs()
    on_disk = {p.relative_to(root).as_posix(): p.read_text() for p in root.glob("**/*.yaml")}
    assert on_disk == expected


def test_group_yaml_mirrors_mmlu():
    files = {rel: yaml.safe_load(text) for rel, text in tasks.render_configs().items()}
    assert len(files) == 9 + 3 * len(tasks.task_table())
    domain = files["domains/rolevec_domain_law.yaml"]
    assert domain == {"group": "rolevec_domain_law", "group_alias": "law",
                      "task": ["mmlu_international_law", "mmlu_professional_law"],
                      "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
                      "metadata": {"version": 1}}
    pair = files["roles/rolevec_lawyer_pair.yaml"]
    assert pair["task"] == ["rolevec_lawyer", "rolevec_lawyer_off"] and "aggregate_metric_list" not in pair
    assert files["roles/rolevec_lawyer.yaml"]["task"] == domain["task"]


def test_write_configs_prunes_only_generated(tmp_path):
    (tmp_path / "roles").mkdir()
    stale = tmp_path / "roles" / "rolevec_gone.yaml"
    stale.write_text(tasks.GENERATED + "group: rolevec_gone\n")
    mine = tmp_path / "my_task.yaml"
    mine.write_text("task: my_task\n")
    written = tasks.write_configs(tmp_path)
    assert len(written) == len(tasks.render_configs()) and not stale.exists() and mine.exists()


def test_cli(tmp_path, capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["chemist", "natural_science", "yes"] for line in out.splitlines())
    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"role": "archivist", "domain": "history", "paper": False}.items() <= rows[-1].items()
    assert main(["tasks", "--config-dir"]) == 0
    assert capsys.readouterr().out.strip() == str(tasks.task_configs_dir())
    assert main(["tasks", "--write-configs", str(tmp_path)]) == 0
    assert (tmp_path / "roles" / "rolevec_chemist_pair.yaml").is_file()


def test_lm_eval_index(caplog):
    """lm-eval indexes every group from --include_path, with no name clash with its built-in tasks."""
    from lm_eval.tasks import TaskManager

    with caplog.at_level(logging.WARNING, logger="lm_eval"):
        manager = TaskManager(include_path=str(tasks.task_configs_dir()))
    assert not [r for r in caplog.records if "rolevec" in r.getMessage()]  # e.g. "overrides existing task"
    index = manager.task_index
    for rel, text in tasks.render_configs().items():
        cfg = yaml.safe_load(text)
        assert index[cfg["group"]].yaml_path.as_posix().endswith(rel)
        assert all(child in index for child in cfg["task"])
