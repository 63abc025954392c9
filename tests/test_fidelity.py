"""Fidelity of our prompt sets vs the authors' (read in place from ../shared, never copied into the repo).

The full report (all layers, positions, the cosine matrices) is ``docs/fidelity-smollm2-135m.md``, made by
``scripts/fidelity_report.py``. The slow tests re-check its claims cheaply: ours = the shipped vectors; the
authors' vectors from a seeded subset of their prompts, at the last post-instruction position and the middle
layers only (the forward stops there).
"""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, SHARED

from rolevec_lmeval.extract import mean_activations
from rolevec_lmeval.prompts import (
    BASE,
    DATA_DIR,
    all_roles,
    load_prompt_file,
    load_prompt_set,
    sample_prompts,
)
from rolevec_lmeval.store import default_store

AUTHORS = SHARED / "role-vectors-paper"
N_THEIRS = 32  # prompts per role (and base) on the authors' side; our side is the shipped vectors (128)
pytestmark = pytest.mark.skipif(not AUTHORS.is_dir(), reason="authors' data not available")


def test_no_authors_prompt_is_copied_into_the_repo():
    theirs = {p.strip() for r in all_roles() for p in load_prompt_set(AUTHORS, r)}
    theirs |= {p.strip() for p in load_prompt_set(AUTHORS, BASE)}
    for path in sorted(DATA_DIR.glob("*.json*")):
        copied = [p for p in load_prompt_file(path) if p.strip() in theirs]
        assert not copied, f"{path.name} contains prompts of the authors' sets: {copied[:3]}"
    report = (REPO / "docs" / "fidelity-smollm2-135m.md").read_text()
    assert not any(p in report for p in theirs if len(p) > 20)


@pytest.fixture(scope="module")
def middle_layer_cosines(embedded_dir) -> dict[str, torch.Tensor]:
    """Same-role cosine ours (shipped) vs theirs, ``[R, n_middle]``, at position -1: each side with its own
    base set ("raw", the spec) and both on the authors' base ("common base")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    store = default_store(embedded_dir)
    roles = all_roles()
    ours = {r: store.load(r) for r in roles}
    meta = ours[roles[0]].meta
    n_layers = ours[roles[0]].n_layers
    middle = list(range(n_layers // 3, 2 * n_layers // 3))
    seed = meta["seed"]
    groups = {r: sample_prompts(load_prompt_set(AUTHORS, r), N_THEIRS, seed, r) for r in roles}
    groups["\0base"] = sample_prompts(load_prompt_set(AUTHORS, BASE), N_THEIRS, seed, BASE)
    groups["\0ours"] = sample_prompts(load_prompt_set(None, BASE), meta["n_base_prompts"], seed, BASE)
    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(embedded_dir)
    means, names = mean_activations(model, tok, groups, positions=1, layers=middle, progress=False)
    assert names == ours[roles[0]].position_tokens[-1:]
    base = means.pop("\0base")
    shift = means.pop("\0ours") - base  # [1, n_middle, d_model]
    theirs = torch.stack([means[r] - base for r in roles])[:, 0].float()  # [R, n_middle, d_model]
    mine = torch.stack([ours[r].directions[-1, middle] for r in roles])  # [R, n_middle, d_model]
    cos = torch.nn.functional.cosine_similarity
    return {"roles": roles, "middle": middle, "raw": cos(mine, theirs, dim=-1),
            "common base": cos(mine + shift[0].float(), theirs, dim=-1)}


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured 0.24 on average: our base.jsonl differs from the authors' "
                   "base set (see docs/fidelity-smollm2-135m.md); strict: passes once the prompt sets match")
def test_raw_vectors_from_our_prompts_match_the_authors_at_middle_layers(middle_layer_cosines):
    c, roles, middle = (middle_layer_cosines[k] for k in ("raw", "roles", "middle"))
    low = {r: [round(x, 2) for x in c[i].tolist()] for i, r in enumerate(roles) if c[i].min() <= 0.8}
    assert not low, f"raw cosine ours vs theirs <= 0.8 at middle layers {middle[0]}..{middle[-1]}: {low}"


@pytest.mark.slow
def test_role_sets_agree_with_the_authors_given_a_common_base(middle_layer_cosines):
    """Guard on what holds today: with the authors' base on both sides the role sets agree (0.75 on average
    at 128 prompts per side; the report has the details)."""
    c, roles = middle_layer_cosines["common base"], middle_layer_cosines["roles"]
    assert c.mean() > 0.6, c.mean()
    low = {r: round(c[i].min().item(), 2) for i, r in enumerate(roles) if c[i].min() <= 0.3}
    assert not low, f"common-base cosine ours vs theirs <= 0.3: {low}"
