from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.interventions import find_blocks
from rolevec_lmeval.judge import lexicon_hits, role_names
from rolevec_lmeval.patchscope import (
    NEUTRAL,
    TARGET_PROMPT,
    patched_generate,
    residual_norms,
    target_ids,
)

IDS = [5, 17, 42, 99, 3, 250, 7, 11, 60]
POS = 6


def hooks(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def reference_generate(model, layer, patches, n):
    """No KV cache: recompute the full sequence each step, the prompt's POS always patched."""
    def hook(module, args, kwargs):
        x = (args[0] if args else kwargs["hidden_states"]).clone()
        x[:, POS] = patches
        return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

    seq = torch.tensor([IDS]).repeat(patches.shape[0], 1)
    handle = find_blocks(model)[layer].register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        for _ in range(n):
            seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    handle.remove()
    return seq[:, len(IDS):]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_patch_in_prompt_then_kv_cache_equals_full_recompute(arch):
    model = tiny_model(arch)
    patches = torch.randn(3, 64) * 20
    got = patched_generate(model, IDS, POS, 2, patches, 6)
    assert got.shape == (3, 6)
    torch.testing.assert_close(got, reference_generate(model, 2, patches, 6))
    assert hooks(model) == 0


def test_patch_changes_the_continuation():
    model = tiny_model("llama")
    patched = patched_generate(model, IDS, POS, 2, torch.randn(3, 64) * 20, 6)
    assert not torch.equal(patched, patched_generate(model, IDS, POS, 2, None, 6).repeat(3, 1))


def test_patch_at_layer0_equals_edited_embeddings():
    model = tiny_model("llama")
    patch = torch.randn(1, 64) * 5
    with torch.no_grad():
        embeds = model.get_input_embeddings()(torch.tensor([IDS]))
        embeds[0, POS] = patch[0]
        first = model(inputs_embeds=embeds).logits[0, -1].argmax()
    assert patched_generate(model, IDS, POS, 0, patch, 1)[0, 0] == first


def test_residual_norms_equal_hidden_state_norms(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    norms = residual_norms(model, tok, [0, 2])
    with torch.no_grad():
        hs = [model(tok(t, return_tensors="pt").input_ids, output_hidden_states=True).hidden_states
              for t in NEUTRAL]
    for layer in (0, 2):
        expected = torch.cat([h[layer][0, 1:].norm(dim=-1) for h in hs]).mean().item()
        assert norms[layer] == pytest.approx(expected, rel=1e-5)


def test_target_prompt_and_placeholder(embedded_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    ids, pos = target_ids(tok)
    assert tok.decode(ids) == TARGET_PROMPT.format(x="X")
    assert tok.decode(ids[pos]) == "X" and pos == len(ids) - 2
    with pytest.raises(RoleVecError, match="exactly once"):
        target_ids(tok, "no placeholder")


def test_target_prompt_examples_score_nothing_for_any_role():
    assert {r: lexicon_hits(r, TARGET_PROMPT.format(x="")) for r in role_names()} == {
        r: [] for r in role_names()
    }
