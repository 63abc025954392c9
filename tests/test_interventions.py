from __future__ import annotations

import pytest
import torch
from conftest import ARCHS, tiny_model

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.interventions import Steering, find_blocks, residual_writers, steering

IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 11]])


def all_hooks(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_blocks_found_for_every_architecture(arch):
    model = tiny_model(arch)
    blocks = find_blocks(model)
    assert len(blocks) == 4
    assert len(residual_writers(blocks[0])) == 2


@pytest.mark.parametrize("arch", ARCHS)
def test_addition_at_layer0_equals_hand_edited_embeddings(arch):
    model = tiny_model(arch)
    d = torch.randn(64)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(IDS)
        expected = model(inputs_embeds=embeds + 2.5 * d).logits
        with steering(model, [Steering(d, 0, 2.5)]):
            got = model(IDS).logits
        plain = model(IDS).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3
    assert all_hooks(model) == 0


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_addition_at_middle_layer_edits_block_input_exactly(arch):
    model = tiny_model(arch)
    block = find_blocks(model)[2]
    seen = {}

    def capture(name):
        return lambda m, args, kw: seen.__setitem__(name, args[0] if args else kw["hidden_states"])

    d = torch.randn(64)
    with torch.no_grad():
        h = block.register_forward_pre_hook(capture("plain"), with_kwargs=True)
        model(IDS)
        h.remove()
        with steering(model, [Steering(d, 2, -1.5)]):
            h = block.register_forward_pre_hook(capture("steered"), with_kwargs=True)  # runs after ours
            model(IDS)
            h.remove()
    torch.testing.assert_close(seen["steered"], seen["plain"] - 1.5 * d, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_ablation_zeroes_the_direction_everywhere(arch):
    model = tiny_model(arch)
    d = torch.randn(64)
    u = d / d.norm()
    projections = []

    def rel_proj(x):
        projections.append(((x @ u).abs().max() / x.norm(dim=-1).max()).item())

    handles = []
    with torch.no_grad(), steering(model, [Steering(d, 1, intervention="ablate")]):
        for block in find_blocks(model):
            handles.append(
                block.register_forward_pre_hook(
                    lambda m, a, k: rel_proj(a[0] if a else k["hidden_states"]), with_kwargs=True
                )
            )
            for w in residual_writers(block):
                handles.append(
                    w.register_forward_hook(lambda m, a, o: rel_proj(o[0] if isinstance(o, tuple) else o))
                )
        model(IDS)
        for h in handles:
            h.remove()
    assert len(projections) == 12
    assert max(projections) <= 1e-5


def test_add_plus_ablate_sets_component_at_layer():
    model = tiny_model("llama")
    d = torch.randn(64)
    u = d / d.norm()
    block = find_blocks(model)[2]
    seen = []
    with torch.no_grad(), steering(model, [Steering(d, 2, 3.0, "add+ablate")]):
        h = block.register_forward_pre_hook(
            lambda m, a, k: seen.append(a[0] if a else k["hidden_states"]), with_kwargs=True
        )
        model(IDS)
        h.remove()
    proj = seen[0] @ u
    torch.testing.assert_close(proj, torch.full_like(proj, 3.0 * d.norm().item()), rtol=1e-4, atol=1e-4)


def test_hooks_removed_when_forward_raises():
    model = tiny_model("llama")
    d = torch.randn(64)
    with pytest.raises(IndexError):
        with steering(model, [Steering(d, 1, 1.0), Steering(d, 0, intervention="ablate")]):
            assert all_hooks(model) > 0
            model(torch.tensor([[10_000]]))  # token id outside the vocabulary
    assert all_hooks(model) == 0


def test_bad_steering_arguments():
    model = tiny_model("llama")
    with pytest.raises(RoleVecError, match=r"layer=4 is out of range; valid: 0..3"):
        with steering(model, [Steering(torch.randn(64), 4, 1.0)]):
            pass
    with pytest.raises(RoleVecError, match="hidden size 32 does not match the model's hidden_size 64"):
        with steering(model, [Steering(torch.randn(32), 1, 1.0)]):
            pass
    with pytest.raises(RoleVecError, match="intervention='steer' is not valid; valid values: add, ablate"):
        Steering(torch.randn(64), 1, 1.0, "steer")
    assert all_hooks(model) == 0
