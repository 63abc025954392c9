"""Pool blocks, record alignment and the runner (fast path vs hooked path) on a tiny Llama."""

from __future__ import annotations

import pytest
from conftest import random_vectors

from rolevec_lmeval.model import RoleVecLM
from rolevec_lmeval.store import VectorStore
from rolevec_lmeval.sweep_engine import SweepEngine
from rolevec_lmeval.sweep_grid import Point, Unit
from rolevec_lmeval.sweep_run import Pool, Runner
from rolevec_lmeval.sweep_tasks import load_tasks, questions_of

IN, OFF = "mmlu_college_chemistry", "mmlu_econometrics"


@pytest.fixture(scope="module")
def setup(tiny_llama_dir, tmp_path_factory):
    vecs = tmp_path_factory.mktemp("run-vecs")
    random_vectors(vecs, "chemist", 4, 64, scale=3.0)
    random_vectors(vecs, "nurse", 4, 64, scale=3.0, seed=1)
    lm = RoleVecLM(pretrained=str(tiny_llama_dir), device="cpu", batch_size=2)
    tasks = load_tasks([IN, OFF], "validation")
    questions = {t: questions_of(tasks[t], 5) for t in (IN, OFF)}
    return lm, VectorStore(vecs), questions


def runner(setup, emitted):
    lm, store, questions = setup
    pool = Pool(questions, off_sample=2, seed=0)
    engine = SweepEngine(lm, batch_size=2)
    role_tasks = {"chemist": ([IN], [OFF]), "nurse": ([IN], [OFF])}
    info = {"split": "validation", "model_slug": "tiny", "dtype": "float32"}
    return Runner(lm, engine, pool, store, role_tasks, info, emitted.append), engine


def test_pool_blocks(setup):
    pool = Pool(setup[2], off_sample=2, seed=0)
    sample, rest = pool.blocks[(OFF, "sample")], pool.blocks[(OFF, "rest")]
    assert sorted(sample.positions + rest.positions) == list(range(5)) and len(sample.positions) == 2
    assert [b.part for b in pool.blocks_for([IN], [OFF])] == ["sample", "rest", "sample"]
    assert pool.n_questions([IN], [OFF]) == 7 and Pool(setup[2], None, 0).n_questions([IN], [OFF]) == 10


def test_fast_path_records_equal_hooked_records_and_share_the_prefix(setup):
    emitted: list[dict] = []
    run, engine = runner(setup, emitted)
    captures = []
    capture = engine.capture
    engine.capture = lambda batch, layer: captures.append(layer) or capture(batch, layer)
    pts = {r: [Point("steer", r, 2, -1, a, "add") for a in (2.0, 6.0)] for r in ("chemist", "nurse")}
    run.run([Unit("add", r, 2, pts[r]) for r in pts], progress=False)
    n_batches = sum(len(b.batches) for b in run.pool.blocks.values())
    assert len(captures) == n_batches  # once per batch, shared by both roles
    fast = {r["key"]: r for r in emitted}
    emitted.clear()
    run.run([Unit("hooked", p.role, 2, [p]) for ps in pts.values() for p in ps], progress=False)
    hooked = {r["key"]: r for r in emitted}
    assert set(fast) == set(hooked) and len(fast) == 4
    for key, rec in fast.items():
        assert rec["correct"] == hooked[key]["correct"]
        assert rec["correct"][OFF].count("-") == 3 and "-" not in rec["correct"][IN]
        assert rec["in_tasks"] == [IN] and rec["off_tasks"] == [OFF] and rec["method"] == "raw"


def test_base_and_persona_records(setup):
    emitted: list[dict] = []
    run, _ = runner(setup, emitted)
    run.run([Unit("base", points=[Point("base", task=IN), Point("base", task=OFF)]),
             Unit("persona", "chemist", points=[Point("persona", "chemist")])], progress=False)
    base = {r["task"]: r for r in emitted if r["kind"] == "base"}
    assert base[OFF]["correct"][OFF].count("-") == 0 and base[OFF]["key"] == f"validation|base|{OFF}"
    persona = next(r for r in emitted if r["kind"] == "persona")
    assert persona["key"] == "validation|chemist|persona" and persona["correct"][OFF].count("-") == 3
