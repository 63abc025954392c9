"""Executes sweep units on a question pool and emits one record per grid point.

The pool is cut into blocks per task: ``sample`` (the seeded off-domain subsample, all questions when
there is none) and ``rest`` (the other questions, only needed where the task is in-domain). A role is
evaluated on the full question list of its in-domain tasks and on the ``sample`` block of its
off-domain tasks. Each record's ``correct`` holds, per task, one character per question of the task's
list: '1' right, '0' wrong, '-' not evaluated, so records of different roles align for paired tests.
Roles run one after the other (an interrupted run leaves whole roles done); the residual stream
captured at a layer for a batch is kept (up to ``cache_mb``) and reused by the next roles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from rolevec_lmeval.interventions import Steering, make_add
from rolevec_lmeval.model import persona_text
from rolevec_lmeval.store import VectorStore
from rolevec_lmeval.sweep_engine import Batch, Scores, SweepEngine
from rolevec_lmeval.sweep_grid import Point, Unit
from rolevec_lmeval.sweep_stats import direction_sha
from rolevec_lmeval.sweep_tasks import Encoded, Question, encode, sample_positions, score, with_persona


@dataclass
class Block:
    task: str
    part: str  # sample | rest
    questions: list[Question]
    positions: list[int]  # each question's index in the task's question list
    enc: Encoded | None = None
    batches: list[Batch] = field(default_factory=list)


class Pool:
    """The run's questions per task, split into ``sample`` / ``rest`` blocks (encoded lazily)."""

    def __init__(self, questions: dict[str, list[Question]], off_sample: int | None, seed: int) -> None:
        self.sizes = {t: len(qs) for t, qs in questions.items()}
        self.blocks: dict[tuple[str, str], Block] = {}
        for task, qs in questions.items():
            keep = set(sample_positions(len(qs), off_sample, seed, task))
            rest = [i for i in range(len(qs)) if i not in keep]
            for part, pos in (("sample", sorted(keep)), ("rest", rest)):
                if pos:
                    self.blocks[(task, part)] = Block(task, part, [qs[i] for i in pos], pos)

    def blocks_for(self, in_tasks: list[str], off_tasks: list[str]) -> list[Block]:
        keys = [(t, p) for t in in_tasks for p in ("sample", "rest")] + [(t, "sample") for t in off_tasks]
        return [self.blocks[k] for k in keys if k in self.blocks]

    def n_questions(self, in_tasks: list[str], off_tasks: list[str]) -> int:
        return sum(len(b.questions) for b in self.blocks_for(in_tasks, off_tasks))


class Runner:
    """Runs units; ``emit(record)`` is called once per finished grid point."""

    def __init__(self, lm: Any, engine: SweepEngine, pool: Pool, store: VectorStore | None,
                 role_tasks: dict[str, tuple[list[str], list[str]]], info: dict[str, Any],
                 emit: Callable[[dict], None], method: str = "raw", cache_mb: int = 4096) -> None:
        self.lm, self.engine, self.pool, self.store = lm, engine, pool, store
        self.role_tasks, self.info, self.emit, self.method = role_tasks, info, emit, method
        self.cache_bytes, self.cached_bytes = cache_mb * 2**20, 0
        self.bar: Any = None
        self._shas: dict[tuple[str, int], str] = {}

    # ---- helpers -----------------------------------------------------------------------------------------
    def _prepared(self, block: Block) -> Block:
        if block.enc is None:
            block.enc = encode(self.lm, block.questions)
            block.batches = self.engine.batches(block.enc)
        return block

    def _record(self, point: Point, blocks: list[Block], results: list[list[Scores]], seconds: float,
                in_tasks: list[str], off_tasks: list[str]) -> dict:
        correct = {t: ["-"] * self.pool.sizes[t] for t in dict.fromkeys(b.task for b in blocks)}
        for block, per_batch in zip(blocks, results, strict=True):
            n = len(block.enc.req_cont)
            ll, greedy = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.bool)
            for lls, hits in per_batch:  # each batch fills its own requests (zeros / True elsewhere)
                ll, greedy = ll + lls, greedy & hits
            bits = score(block.questions, block.enc, ll.tolist(), greedy.tolist())[block.task]
            for pos, bit in zip(block.positions, bits, strict=True):
                correct[block.task][pos] = bit
        sha = self._sha(point.role, point.position) if point.kind == "steer" else ""
        return {"key": point.key(self.info["split"]), "kind": point.kind, "role": point.role,
                "task": point.task, "layer": point.layer, "position": point.position, "alpha": point.alpha,
                "intervention": point.intervention, "method": self.method if point.kind == "steer" else "",
                "in_tasks": in_tasks, "off_tasks": off_tasks, **self.info,
                "direction_sha256": sha, "correct": {t: "".join(c) for t, c in correct.items()},
                "seconds": round(seconds, 3)}

    def _tick(self, n: int, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update(n)

    def _sha(self, role: str, position: int) -> str:
        if (role, position) not in self._shas:
            self._shas[(role, position)] = direction_sha(self.store.load(role), position, self.method)
        return self._shas[(role, position)]

    def _direction(self, role: str, layer: int, position: int) -> torch.Tensor:
        return self.store.load(role).direction(layer, position, self.method)

    # ---- units -------------------------------------------------------------------------------------------
    def cost(self, unit: Unit) -> int:
        """Progress units: question-evaluations."""
        if unit.kind == "base":
            return sum(self.pool.sizes[p.task] for p in unit.points)
        return len(unit.points) * self.pool.n_questions(*self.role_tasks[unit.role])

    def run(self, units: list[Unit], progress: bool = True) -> None:
        total = sum(self.cost(u) for u in units)
        cache: dict[tuple, torch.Tensor] = {}  # (layer, task, part, batch) -> residual stream
        with tqdm(total=total, desc="rolevec sweep", unit="q", disable=not progress, smoothing=0.05) as bar:
            self.bar = bar
            for unit in [u for u in units if u.kind == "base"]:
                self._run_full(unit)
            for role in dict.fromkeys(u.role for u in units if u.kind != "base"):  # role by role
                mine = [u for u in units if u.role == role]
                for unit in [u for u in mine if u.kind in ("persona", "hooked")]:
                    self._run_full(unit)
                for unit in sorted([u for u in mine if u.kind == "add"], key=lambda u: u.layer):
                    self._run_add(unit, cache)
            self.bar = None

    def _run_full(self, unit: Unit) -> None:
        """base / persona / hooked steering: plain forwards (hooks as in rolevec_hf)."""
        for point in unit.points:
            t0 = time.perf_counter()
            if point.kind == "base":
                in_tasks, off_tasks, steer = [point.task], [], []
            else:
                in_tasks, off_tasks = self.role_tasks[point.role]
                steer = []
                if point.kind == "steer":
                    d = self._direction(point.role, point.layer, point.position)
                    steer = [Steering(d, point.layer, point.alpha, point.intervention)]
            blocks = self.pool.blocks_for(in_tasks, off_tasks)
            if point.kind == "persona":
                text = persona_text(point.role)
                blocks = [Block(b.task, b.part, with_persona(self.lm, b.questions, text), b.positions)
                          for b in blocks]
            blocks = [self._prepared(b) for b in blocks]
            results = []
            for block in blocks:
                n = len(block.enc.req_cont)
                res = []
                for batch in block.batches:
                    res.append(self.engine.score(batch, n, steer))
                    self._tick(len(batch.rows), f"{point.kind} {point.role or point.task}")
                results.append(res)
            self.emit(self._record(point, blocks, results, time.perf_counter() - t0, in_tasks, off_tasks))

    def _run_add(self, unit: Unit, cache: dict) -> None:
        """All positions x alphas of one (role, layer) on the fast path."""
        t0 = time.perf_counter()
        in_tasks, off_tasks = self.role_tasks[unit.role]
        blocks = [self._prepared(b) for b in self.pool.blocks_for(in_tasks, off_tasks)]
        edits = [make_add(self._direction(unit.role, unit.layer, p.position), p.alpha) for p in unit.points]
        results: list[list[list[Scores]]] = [[] for _ in unit.points]  # point -> block -> batch
        for block in blocks:
            n = len(block.enc.req_cont)
            per_point: list[list[Scores]] = [[] for _ in unit.points]
            for i, batch in enumerate(block.batches):
                key = (unit.layer, block.task, block.part, i)
                h = cache.get(key)
                if h is None:
                    h = self.engine.capture(batch, unit.layer)
                    if self.cached_bytes < self.cache_bytes:  # shared with the next roles
                        cache[key] = h
                        self.cached_bytes += h.numel() * h.element_size()
                for j, s in enumerate(self.engine.tail(batch, unit.layer, h, edits, n)):
                    per_point[j].append(s)
                self._tick(len(batch.rows) * len(unit.points), f"{unit.role} l{unit.layer}")
            for j in range(len(unit.points)):
                results[j].append(per_point[j])
        seconds = (time.perf_counter() - t0) / len(unit.points)
        for point, res in zip(unit.points, results, strict=True):
            self.emit(self._record(point, blocks, res, seconds, in_tasks, off_tasks))
