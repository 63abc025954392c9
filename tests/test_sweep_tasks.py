"""Questions of the sweep come from lm-eval's own MMLU task objects, on the requested split."""

from __future__ import annotations

import pytest

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.mmlu_cache import SUBJECT_COUNTS
from rolevec_lmeval.model import RoleVecLM, persona_text
from rolevec_lmeval.sweep_tasks import (
    encode,
    fingerprint,
    load_tasks,
    questions_of,
    resolve_task_names,
    sample_positions,
    score,
    task_manager,
    with_persona,
)

TASK = "mmlu_college_chemistry"


@pytest.fixture(scope="module")
def lm(tiny_llama_dir):
    return RoleVecLM(pretrained=str(tiny_llama_dir), device="cpu", batch_size=4)


@pytest.mark.parametrize("split", ["validation", "test"])
def test_split_override_gives_the_split_and_the_harness_prompt(split):
    task = load_tasks(["college_chemistry"], split)[TASK]
    qs = questions_of(task)
    assert len(qs) == SUBJECT_COUNTS["college_chemistry"][split]
    assert [q.index for q in qs] == list(range(len(qs)))
    ctx, cont = qs[0].args[0]
    assert ctx.startswith("The following are multiple choice questions (with answers) about college chem")
    assert ctx.endswith("Answer:") and [a[1] for a in qs[0].args] == [" A", " B", " C", " D"]
    assert qs[0].doc == task.dataset[split][0]


def test_limit_takes_the_first_questions():
    task = load_tasks([TASK], "validation")[TASK]
    assert [q.index for q in questions_of(task, 3)] == [0, 1, 2]


def test_unknown_task_and_split():
    with pytest.raises(RoleVecError, match="unknown lm-eval task 'mmlu_chemistry'; did you mean"):
        resolve_task_names(["mmlu_chemistry"])
    with pytest.raises(RoleVecError, match="--split 'train' is not valid"):
        load_tasks([TASK], "train")


def test_mmlu_only_task_manager_is_lm_evals_mmlu_folder():
    tm = task_manager()
    assert len(tm.all_subtasks) == 57 and TASK in tm.all_subtasks


def test_sample_positions_is_seeded_and_sorted():
    a = sample_positions(50, 5, 0, TASK)
    assert a == sorted(a) and len(set(a)) == 5 and a == sample_positions(50, 5, 0, TASK)
    assert a != sample_positions(50, 5, 1, TASK) and a != sample_positions(50, 5, 0, "mmlu_other")
    assert sample_positions(3, 5, 0, TASK) == [0, 1, 2] and sample_positions(3, None, 0, TASK) == [0, 1, 2]


def test_encode_matches_hflm_tokenization(lm):
    qs = questions_of(load_tasks([TASK], "validation")[TASK], 3)
    enc = encode(lm, qs)
    assert len(enc.inputs) == 3 and len(enc.req_cont) == 12  # one input shared by the four choices
    ctx, cont = lm._encode_pair(*qs[0].args[1])
    assert enc.inputs[0] == (ctx + cont)[:-1] and enc.req_cont[1] == cont and len(cont) == 1
    assert list(enc.q_reqs[2]) == [8, 9, 10, 11]


def test_persona_questions_are_what_rolevec_hf_sees(lm):
    qs = questions_of(load_tasks([TASK], "validation")[TASK], 2)
    pq = with_persona(lm, qs, persona_text("chemist"))
    assert pq[0].args[0][0] == "You are a chemist.\n\n" + qs[0].args[0][0]
    assert pq[0].args[0][1] == qs[0].args[0][1] and lm.persona is None
    assert fingerprint(pq) != fingerprint(qs)


def test_score_uses_process_results(lm):
    qs = questions_of(load_tasks([TASK], "validation")[TASK], 2)
    enc = encode(lm, qs)
    gold = [q.doc["answer"] for q in qs]
    ll = [0.0 if i % 4 == gold[i // 4] else -1.0 for i in range(8)]
    assert score(qs, enc, ll, [False] * 8) == {TASK: "11"}
    ll = [0.0 if i % 4 != gold[i // 4] else -5.0 for i in range(8)]
    assert score(qs, enc, ll, [False] * 8) == {TASK: "00"}
