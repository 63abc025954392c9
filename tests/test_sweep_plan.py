"""Role and task resolution of `rolevec sweep`."""

from __future__ import annotations

import pytest

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.sweep_plan import resolve_roles, role_task_lists
from rolevec_lmeval.tasks import task_table


@pytest.fixture(scope="module")
def table():
    return {row.role: row for row in task_table()}


def test_all_means_the_29_paper_roles(table):
    roles = resolve_roles("all", table)
    assert len(roles) == 29 and "historian" not in roles and "chemist" in roles
    assert resolve_roles("chemist, historian,chemist", table) == ["chemist", "historian"]


@pytest.mark.parametrize("spec", ["alchemist", "", "chemist,alchemist"])
def test_unknown_role(table, spec):
    with pytest.raises(RoleVecError, match="valid: all, "):
        resolve_roles(spec, table)


def test_default_tasks_come_from_the_role_table(table):
    ins, offs = role_task_lists(["chemist"], table, None, None)["chemist"]
    assert ins == [f"mmlu_{s}" for s in table["chemist"].subjects]
    assert offs == [f"mmlu_{s}" for s in table["chemist"].off_subjects]
    assert "mmlu_college_chemistry" in ins and "mmlu_econometrics" in offs and not set(ins) & set(offs)


def test_task_overrides(table):
    got = role_task_lists(["chemist", "nurse"], table, "college_chemistry", "none")
    assert got == {"chemist": (["mmlu_college_chemistry"], []), "nurse": (["mmlu_college_chemistry"], [])}
    got = role_task_lists(["chemist"], table, "college_chemistry", "mmlu_college_chemistry,econometrics")
    assert got["chemist"] == (["mmlu_college_chemistry"], ["mmlu_econometrics"])
