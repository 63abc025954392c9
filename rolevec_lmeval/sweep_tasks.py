"""Questions for the sweep, built by lm-eval's own task objects (same prompts, same scoring as ``lm_eval``).

Tasks come from ``lm_eval.tasks.TaskManager``; the split is chosen by overriding the task config's
``test_split`` (lm-eval's MMLU tasks evaluate ``test``; MMLU's ``validation`` split is the held-out set).
Requests are tokenized with the model's own ``HFLM._encode_pair`` and truncated exactly like
``HFLM._loglikelihood_tokens``; each question is scored with ``task.process_results``.
"""

from __future__ import annotations

import difflib
import hashlib
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from rolevec_lmeval.errors import RoleVecError

SPLITS = ("validation", "test", "dev")
METRIC = "acc"


@dataclass
class Question:
    task: str  # lm-eval task name, e.g. mmlu_college_chemistry
    index: int  # document index in the split
    doc: Any
    args: list[tuple[str, str]]  # (context, continuation) per request, in Instance.idx order
    task_obj: Any = field(repr=False, default=None)


@dataclass
class Encoded:
    """Token-level view of a question list: unique model inputs and the requests scored on them."""

    inputs: list[list[int]]  # model inputs (context + continuation[:-1], left-truncated)
    req_input: list[int]  # request -> index into inputs
    req_cont: list[list[int]]  # request -> continuation tokens (scored at the inputs' last positions)
    q_reqs: list[range]  # question -> its request indices

    @property
    def n_tokens(self) -> int:
        return sum(len(x) for x in self.inputs)


@cache
def task_manager(full: bool = False) -> Any:
    """lm-eval's TaskManager: indexing all tasks takes ~10 s, so MMLU-only runs index just lm-eval's
    ``tasks/mmlu/default`` folder (the same YAML files ``lm_eval --tasks mmlu_*`` uses)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    if full:
        return TaskManager()
    return TaskManager(include_defaults=False,
                       include_path=str(Path(lm_eval.tasks.__file__).parent / "mmlu" / "default"))


def manager_for(names: list[str]) -> Any:
    """The MMLU-only manager when it knows every name, else the full one."""
    known = set(task_manager().all_subtasks)
    if all(n in known or f"mmlu_{n}" in known for n in names):
        return task_manager()
    return task_manager(full=True)


def resolve_task_names(names: list[str], tm: Any | None = None) -> list[str]:
    """``college_chemistry`` or ``mmlu_college_chemistry`` -> the registered lm-eval task name."""
    tm = tm or manager_for(names)
    known = set(tm.all_subtasks)
    out = []
    for name in names:
        cand = name if name in known else f"mmlu_{name}"
        if cand not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3) or ["mmlu_college_chemistry"]
            raise RoleVecError(f"--tasks: unknown lm-eval task {name!r}; did you mean {', '.join(close)}?")
        out.append(cand)
    return list(dict.fromkeys(out))


def load_tasks(names: list[str], split: str, tm: Any | None = None) -> dict[str, Any]:
    """lm-eval task objects evaluating ``split`` (via ``config.test_split``); multiple choice only."""
    if split not in SPLITS:
        raise RoleVecError(f"--split {split!r} is not valid; valid: {', '.join(SPLITS)}")
    tm = tm or manager_for(names)
    tasks = tm.load(resolve_task_names(names, tm))["tasks"]
    for name, task in tasks.items():
        if task.OUTPUT_TYPE != "multiple_choice":
            raise RoleVecError(f"--tasks: {name} is {task.OUTPUT_TYPE}; the sweep needs multiple_choice")
        if split not in task.dataset:
            raise RoleVecError(f"--split {split!r}: task {name} has splits {', '.join(task.dataset)}")
        task.config.test_split = split
    return tasks


def questions_of(task: Any, limit: int | None = None) -> list[Question]:
    """The task's first ``limit`` questions (all when None), like ``lm_eval --limit``."""
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    by_doc: dict[int, list] = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    out = []
    for doc_id in sorted(by_doc):
        insts = sorted(by_doc[doc_id], key=lambda i: i.idx)
        if any(i.request_type != "loglikelihood" for i in insts):
            raise RoleVecError(f"task {task.task_name}: the sweep scores loglikelihood requests only")
        out.append(Question(task.task_name, doc_id, insts[0].doc, [tuple(i.arguments) for i in insts], task))
    return out


def sample_positions(n: int, k: int | None, seed: int, task: str) -> list[int]:
    """A seeded random subset of ``k`` of ``range(n)`` (sorted; all when k is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(random.Random(f"{seed}:{task}").sample(range(n), k))


def with_persona(lm: Any, questions: list[Question], persona: str) -> list[Question]:
    """The same questions as ``RoleVecLM(persona=...)`` sees them (its own ``_with_persona``)."""
    from lm_eval.api.instance import Instance

    saved, lm.persona = lm.persona, persona
    try:
        out = []
        for q in questions:
            insts = [Instance("loglikelihood", q.doc, a, i) for i, a in enumerate(q.args)]
            args = [tuple(i.arguments) for i in lm._with_persona(insts)]
            out.append(Question(q.task, q.index, q.doc, args, q.task_obj))
        return out
    finally:
        lm.persona = saved


def encode(lm: Any, questions: list[Question]) -> Encoded:
    """Tokenize like ``TemplateLM.loglikelihood`` + ``HFLM._loglikelihood_tokens`` (causal models)."""
    inputs: list[list[int]] = []
    seen: dict[tuple[int, ...], int] = {}
    req_input, req_cont, q_reqs = [], [], []
    for q in questions:
        start = len(req_cont)
        for context, continuation in q.args:
            if context == "":
                cont = lm.tok_encode(continuation, add_special_tokens=False)
                prefix = lm.prefix_token_id
                ctx, cont = ([prefix], cont) if prefix != cont[0] else (cont[:1], cont[1:])
            else:
                ctx, cont = lm._encode_pair(context, continuation)
            inp = tuple((ctx + cont)[-(lm.max_length + 1):][:-1])
            if inp not in seen:
                seen[inp] = len(inputs)
                inputs.append(list(inp))
            req_input.append(seen[inp])
            req_cont.append(cont)
        q_reqs.append(range(start, len(req_cont)))
    return Encoded(inputs, req_input, req_cont, q_reqs)


def score(questions: list[Question], enc: Encoded, ll: list[float], greedy: list[bool]) -> dict[str, str]:
    """Per task, a '0'/'1' string (question order) of ``task.process_results(...)['acc']``."""
    out: dict[str, list[str]] = {}
    for q, reqs in zip(questions, enc.q_reqs, strict=True):
        res = q.task_obj.process_results(q.doc, [(ll[r], greedy[r]) for r in reqs])
        out.setdefault(q.task, []).append("1" if res[METRIC] else "0")
    return {task: "".join(bits) for task, bits in out.items()}


def fingerprint(questions: list[Question]) -> str:
    """Short hash of the prompts and documents: records from a different question set never mix."""
    h = hashlib.sha256()
    for q in questions:
        h.update(repr((q.task, q.index, q.args)).encode())
    return h.hexdigest()[:16]
