"""RoleVecLM on a tiny random Llama (with a real tokenizer and chat template)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_vectors
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.model import RoleVecLM, persona_text

CONTEXTS = [
    "The capital of France is",
    "Water boils at",
    "Q: 2+2=\nA:",
    "Once upon a time, a small",
    "The chemical symbol for gold is",
    "Hello",
    "In 1492 Columbus",
    "A list of prime numbers: 2, 3,",
]
LL = [Instance("loglikelihood", {}, (c, " the answer"), i) for i, c in enumerate(CONTEXTS)]
GEN = [
    Instance("generate_until", {}, (c, {"until": ["\n\n"], "max_gen_toks": 8}), i)
    for i, c in enumerate(CONTEXTS[:4])
]


@pytest.fixture(scope="module")
def vecdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vecs")
    random_vectors(out, "chemist", 4, 64, slug="tiny-llama", scale=3.0)
    random_vectors(out, "lawyer", 4, 64, slug="tiny-llama", scale=3.0, seed=1)
    return out


def lm(tiny_llama_dir, vecdir, **kw):
    kw.setdefault("batch_size", 1)
    return RoleVecLM(
        pretrained=str(tiny_llama_dir), vectors=str(vecdir), device="cpu", strict_model=False, **kw
    )


def test_alpha0_and_no_role_equal_hf_exactly(tiny_llama_dir, vecdir):
    ref = HFLM(pretrained=str(tiny_llama_dir), device="cpu", batch_size=1)
    expected = ref.loglikelihood(LL)
    assert lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=0).loglikelihood(LL) == expected
    assert lm(tiny_llama_dir, vecdir).loglikelihood(LL) == expected
    assert ref.generate_until(GEN) == lm(
        tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=0
    ).generate_until(GEN)


def test_steering_changes_loglikelihoods_for_every_intervention(tiny_llama_dir, vecdir):
    plain = [ll for ll, _ in lm(tiny_llama_dir, vecdir).loglikelihood(LL)]
    for kw in (
        {"alpha": 2.0},
        {"intervention": "ablate"},
        {"intervention": "add+ablate", "alpha": 1.0},
        {"alpha": 2.0, "method": "centered"},
        {"alpha": 1.0, "position": 0},
    ):
        model = lm(tiny_llama_dir, vecdir, role="chemist", layer=2, **kw)
        steered = [ll for ll, _ in model.loglikelihood(LL)]
        assert max(abs(a - b) for a, b in zip(plain, steered, strict=True)) > 1e-3, kw
        assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.model.modules()) == 0


def test_roles_joined_with_plus_sum_their_vectors(tiny_llama_dir, vecdir):
    both = lm(tiny_llama_dir, vecdir, role="chemist+lawyer", layer=1, alpha=1.0)
    one = lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=1.0)
    other = lm(tiny_llama_dir, vecdir, role="lawyer", layer=1, alpha=1.0)
    torch.testing.assert_close(both.steerings[0].vector, one.steerings[0].vector + other.steerings[0].vector)


def test_batch_size_does_not_change_results(tiny_llama_dir, vecdir):
    one = lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=2.0, batch_size=1)
    eight = lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=2.0, batch_size=8)
    for (a, _), (b, _) in zip(one.loglikelihood(LL), eight.loglikelihood(LL), strict=True):
        assert abs(a - b) <= 1e-4
    assert one.generate_until(GEN) == eight.generate_until(GEN)


def test_padding_side_does_not_change_results(tiny_llama_dir, vecdir):
    model = lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=2.0)
    last = {}
    for side in ("left", "right"):
        ids, mask = model.tok_batch_encode(CONTEXTS, padding_side=side)
        with torch.no_grad():
            from rolevec_lmeval.interventions import steering

            with steering(model.model, model.steerings):
                logits = model.model(input_ids=ids, attention_mask=mask).logits
        idx = mask.sum(1) - 1 if side == "right" else torch.full((len(CONTEXTS),), ids.shape[1] - 1)
        last[side] = logits[torch.arange(len(CONTEXTS)), idx].log_softmax(-1)
    torch.testing.assert_close(last["left"], last["right"], rtol=1e-4, atol=1e-4)


def test_generation_is_steered_with_kv_cache(tiny_llama_dir, vecdir):
    plain = lm(tiny_llama_dir, vecdir).generate_until(GEN)
    steered = lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=4.0).generate_until(GEN)
    assert steered != plain


def test_persona_prefixes_contexts(tiny_llama_dir, vecdir):
    assert persona_text("chemist") == "You are a chemist."
    assert persona_text("economic researcher") == "You are an economic researcher."
    assert persona_text("You are a pirate.") == "You are a pirate."
    model = lm(tiny_llama_dir, vecdir, persona="chemist")
    assert model.loglikelihood(LL[:1]) == HFLM(pretrained=str(tiny_llama_dir), device="cpu").loglikelihood(
        [Instance("loglikelihood", {}, ("You are a chemist.\n\n" + CONTEXTS[0], " the answer"), 0)]
    )
    templated = model.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert "You are a chemist." in templated and templated.count("You are a chemist.") == 1


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"role": "pilot", "layer": 1, "alpha": 1}, r"role='pilot' is unknown.*available: chemist, lawyer"),
        ({"role": "chemist", "layer": 4, "alpha": 1}, r"layer=4 is out of range; valid: 0..3"),
        ({"role": "chemist", "layer": 1, "alpha": "lots"}, r"alpha='lots' is not a number"),
        ({"role": "chemist", "layer": 1, "alpha": float("nan")}, r"alpha=nan must be finite"),
        ({"role": "chemist", "layer": 1}, r"alpha is required"),
        ({"role": "chemist", "alpha": 1}, r"layer is required.*valid: 0..3"),
        (
            {"role": "chemist", "layer": 1, "alpha": 1, "intervention": "clamp"},
            r"intervention='clamp' is not valid; valid values: add, ablate, add\+ablate",
        ),
        ({"role": "chemist", "layer": 1, "alpha": 1, "method": "pca"}, r"method='pca' is not valid"),
    ],
)
def test_bad_model_args(tiny_llama_dir, vecdir, kw, message):
    with pytest.raises(RoleVecError, match=message):
        lm(tiny_llama_dir, vecdir, **kw)


def test_vectors_for_another_model(tiny_llama_dir, tmp_path):
    random_vectors(tmp_path, "chemist", 4, 32)
    with pytest.raises(RoleVecError, match="hidden size 32 but the model's hidden_size is 64"):
        lm(tiny_llama_dir, tmp_path, role="chemist", layer=1, alpha=1)
    other = tmp_path / "other"
    random_vectors(other, "chemist", 4, 64, slug="gemma-3-270m")
    with pytest.raises(RoleVecError, match="made for 'gemma-3-270m'.*strict_model=False"):
        RoleVecLM(
            pretrained=str(tiny_llama_dir), vectors=str(other), device="cpu", role="chemist", layer=1, alpha=1
        )
    layers = tmp_path / "layers"
    random_vectors(layers, "chemist", 6, 64)
    with pytest.raises(RoleVecError, match="cover 6 layers but the model has 4"):
        lm(tiny_llama_dir, layers, role="chemist", layer=1, alpha=1)


def test_no_shipped_vectors_for_unknown_model(tiny_llama_dir):
    with pytest.raises(RoleVecError, match="no vectors are shipped for model.*vectors="):
        RoleVecLM(pretrained=str(tiny_llama_dir), device="cpu", role="chemist", layer=1, alpha=1)


def test_loglikelihood_rolling_is_steered(tiny_llama_dir, vecdir):
    reqs = [Instance("loglikelihood_rolling", {}, (c,), i) for i, c in enumerate(CONTEXTS[:3])]
    plain = lm(tiny_llama_dir, vecdir).loglikelihood_rolling(reqs)
    assert lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=0).loglikelihood_rolling(reqs) == plain
    steered = lm(tiny_llama_dir, vecdir, role="chemist", layer=1, alpha=2.0).loglikelihood_rolling(reqs)
    assert max(abs(a - b) for a, b in zip(plain, steered, strict=True)) > 1e-3
