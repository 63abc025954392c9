"""The sweep's fast path gives the same per-question loglikelihoods as lm-eval with ``rolevec_hf``."""

from __future__ import annotations

import json
import subprocess
import sys

import lm_eval
import pytest
import torch
from conftest import random_vectors, tiny_model

from rolevec_lmeval.interventions import Steering, find_blocks, make_add
from rolevec_lmeval.model import RoleVecLM
from rolevec_lmeval.sweep_engine import SweepEngine
from rolevec_lmeval.sweep_tasks import encode, load_tasks, questions_of, task_manager
from rolevec_lmeval.vectors import RoleVector

TASK, LIMIT, LAYER, TOL = "mmlu_high_school_chemistry", 6, 2, 1e-4


@pytest.fixture(scope="module")
def vecdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-vecs")
    random_vectors(out, "chemist", 4, 64, scale=3.0)
    return out


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory, embedded_dir):
    """A tiny GPT-2 (learned positions, 256-token window: long MMLU prompts get left-truncated)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-gpt2")
    tok = AutoTokenizer.from_pretrained(embedded_dir)
    tiny_model("gpt2", vocab_size=len(tok)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def model(path, vecdir=None, **kw):
    return RoleVecLM(pretrained=str(path), device="cpu", batch_size=4,
                     **({"vectors": str(vecdir)} if vecdir else {}), **kw)


def harness_lls(lm, split="validation", limit=LIMIT):
    """Per-request loglikelihoods from lm_eval.simple_evaluate (doc order, choice order)."""
    task = load_tasks([TASK], split)[TASK]
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, log_samples=True, verbosity="ERROR",
                                  task_manager=task_manager())
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    return torch.tensor([float(r[0][0]) for s in samples for r in s["resps"]], dtype=torch.float64)


def fast_setup(lm, split="validation", limit=LIMIT, batch_size=4, stack=8):
    qs = questions_of(load_tasks([TASK], split)[TASK], limit)
    enc = encode(lm, qs)
    engine = SweepEngine(lm, batch_size=batch_size, stack=stack)
    return engine, engine.batches(enc), len(enc.req_cont)


def fast_lls(engine, batches, n, layer, edits):
    """Sum the per-batch scores of every edit on the fast path: [n_edits, n_requests]."""
    total = torch.zeros(len(edits), n, dtype=torch.float64)
    for batch in batches:
        h = engine.capture(batch, layer)
        for j, (ll, _) in enumerate(engine.tail(batch, layer, h, edits, n)):
            total[j] += ll
    return total


@pytest.mark.parametrize("arch_dir", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_fast_path_equals_lm_eval_rolevec_hf(arch_dir, vecdir, request):
    path = request.getfixturevalue(arch_dir)
    lm = model(path)
    vec = RoleVector.load(vecdir / "chemist.safetensors")
    configs = [(pos, a) for pos in (-1, -2) for a in (0.5, 4.0)]
    engine, batches, n = fast_setup(lm, stack=3)  # 4 edits in stacks of 3 and 1
    fast = fast_lls(engine, batches, n, LAYER, [make_add(vec.direction(LAYER, p), a) for p, a in configs])
    base = torch.zeros(n, dtype=torch.float64)
    for batch in batches:
        base += engine.score(batch, n)[0]
    assert (base - harness_lls(lm)).abs().max() <= TOL
    for j, (pos, alpha) in enumerate(configs):
        ref = harness_lls(model(path, vecdir, role="chemist", layer=LAYER, alpha=alpha, position=pos))
        assert (fast[j] - ref).abs().max() <= TOL, (pos, alpha)
        assert (fast[j] - base).abs().max() > 1e-3  # the edit did something


@pytest.mark.parametrize("intervention", ["ablate", "add+ablate"])
def test_hooked_interventions_equal_lm_eval(tiny_llama_dir, vecdir, intervention):
    lm = model(tiny_llama_dir)
    engine, batches, n = fast_setup(lm)
    d = RoleVector.load(vecdir / "chemist.safetensors").direction(LAYER, -1)
    steer = [Steering(d, LAYER, 2.0, intervention)]
    got = sum(engine.score(b, n, steer)[0] for b in batches)
    ref = harness_lls(model(tiny_llama_dir, vecdir, role="chemist", layer=LAYER, alpha=2.0,
                            intervention=intervention))
    assert (got - ref).abs().max() <= TOL


def test_tail_runs_only_blocks_from_the_split_layer(tiny_llama_dir, vecdir):
    lm = model(tiny_llama_dir)
    engine, batches, n = fast_setup(lm, limit=2)
    calls = [0] * 4
    handles = [b.mlp.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, b in enumerate(find_blocks(lm.model))]
    h = engine.capture(batches[0], LAYER)
    assert calls == [1, 1, 0, 0]
    d = RoleVector.load(vecdir / "chemist.safetensors").direction(LAYER, -1)
    engine.tail(batches[0], LAYER, h, [make_add(d, a) for a in (1.0, 2.0, 3.0)], n)
    assert calls == [1, 1, 1, 1]  # 3 alphas stacked in one forward of blocks 2..3
    for handle in handles:
        handle.remove()
    assert h.shape == (*batches[0].ids.shape, 64)


def test_gathered_logits_equal_full_logits(tiny_llama_dir):
    lm = model(tiny_llama_dir)
    engine, batches, n = fast_setup(lm, limit=3)
    b = batches[0]
    full = torch.log_softmax(lm.model(b.ids).logits, -1)
    kept = engine._logprobs(b.ids, b.gather)
    want = full.gather(1, b.gather[:, :, None].expand(-1, -1, full.shape[-1]))
    assert kept.shape[1] == 1 and torch.allclose(kept, want, atol=1e-5)


def test_batch_size_and_stack_do_not_change_results(tiny_llama_dir, vecdir):
    lm = model(tiny_llama_dir)
    d = RoleVector.load(vecdir / "chemist.safetensors").direction(1, -1)
    edits = [make_add(d, a) for a in (1.0, -2.0)]
    a = fast_lls(*fast_setup(lm, batch_size=1, stack=1), 1, edits)
    b = fast_lls(*fast_setup(lm, batch_size=8, stack=8), 1, edits)
    assert (a - b).abs().max() <= TOL


@pytest.mark.slow
def test_fast_path_equals_the_lm_eval_cli(tiny_llama_dir, vecdir, tmp_path):
    """The literal claim: per-question loglikelihoods of `lm_eval --model rolevec_hf` (test split)."""
    args = f"pretrained={tiny_llama_dir},role=chemist,layer={LAYER},alpha=3,position=-1,vectors={vecdir}"
    subprocess.run([sys.executable, "-m", "lm_eval", "--model", "rolevec_hf", "--model_args", args,
                    "--tasks", TASK, "--limit", "4", "--batch_size", "2", "--device", "cpu", "--log_samples",
                    "--output_path", str(tmp_path)], check=True, capture_output=True)
    [samples] = list(tmp_path.glob(f"**/samples_{TASK}_*.jsonl"))
    rows = sorted((json.loads(line) for line in samples.read_text().splitlines()), key=lambda s: s["doc_id"])
    ref = torch.tensor([float(r[0][0]) for s in rows for r in s["resps"]], dtype=torch.float64)
    lm = model(tiny_llama_dir)
    engine, batches, n = fast_setup(lm, split="test", limit=4)
    d = RoleVector.load(vecdir / "chemist.safetensors").direction(LAYER, -1)
    assert (fast_lls(engine, batches, n, LAYER, [make_add(d, 3.0)])[0] - ref).abs().max() <= TOL
