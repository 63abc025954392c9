"""Role-vector extraction: exactness vs hidden states, padding, positions, centring, CLI, shipped vectors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import ARCHS, REPO, tiny_model
from transformers import AutoTokenizer

from rolevec_lmeval.cli import main
from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.extract import encode, extract_role_vectors, mean_activations, post_instruction_ids
from rolevec_lmeval.prompts import BASE, all_roles, load_prompt_set, prompt_sha256, sample_prompts
from rolevec_lmeval.store import default_store
from rolevec_lmeval.vectors import RoleVector

SHIPPED = REPO / "vectors" / "smollm2-135m-instruct"
GROUPS = {
    "a": ["Explain the mechanism of an SN2 reaction in detail.", "Hi, who are you?", "What is pH 7?"],
    "b": ["Draft a short lease clause.", "Tell me a long story about dragons, knights, castles and a moat."],
}


@pytest.fixture(scope="module")
def tok(embedded_dir):
    return AutoTokenizer.from_pretrained(embedded_dir)


@pytest.fixture(scope="module")
def plain_tok(embedded_dir):
    """The same tokenizer without a chat template (a base model)."""
    t = AutoTokenizer.from_pretrained(embedded_dir)
    t.chat_template = None
    return t


def reference(model, ids_per_group: dict[str, list[list[int]]], k: int) -> dict[str, torch.Tensor]:
    """Unbatched means from ``output_hidden_states`` (hidden_states[l] is the input of block l)."""
    out = {}
    for g, rows in ids_per_group.items():
        hs = [torch.stack(model(torch.tensor([x]), output_hidden_states=True).hidden_states[:-1])[:, 0, -k:]
              for x in rows]  # each [n_layers, k, d_model]
        out[g] = torch.stack(hs).double().mean(0).transpose(0, 1)  # [k, n_layers, d_model]
    return out


def test_post_instruction_tokens_of_smollm2(tok, plain_tok):
    ids = post_instruction_ids(tok)
    assert tok.convert_ids_to_tokens(ids) == ["<|im_end|>", "Ċ", "<|im_start|>", "ass", "istant", "Ċ"]
    assert post_instruction_ids(plain_tok) is None
    for x in encode(tok, GROUPS["a"], True, 6, None):
        assert x[-6:] == ids


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_means_equal_unbatched_hidden_states_for_any_padding_and_batch(tok, arch):
    model = tiny_model(arch, vocab_size=len(tok))
    ref = reference(model, {g: encode(tok, p, True, 6, None) for g, p in GROUPS.items()}, 6)
    for side, bs in (("right", 1), ("right", 5), ("left", 2), ("left", 5)):
        means, names = mean_activations(model, tok, GROUPS, batch_size=bs, padding_side=side, progress=False)
        assert names[-1] == "Ċ" and len(names) == 6
        for g in GROUPS:
            torch.testing.assert_close(means[g], ref[g], atol=1e-5, rtol=1e-5)
    assert not any(m._forward_pre_hooks for m in model.modules())  # hooks removed after the early stop


def test_layer_subset_and_fewer_positions(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    full, _ = mean_activations(model, tok, GROUPS, progress=False)
    part, names = mean_activations(model, tok, GROUPS, positions=2, layers=[2, 1], progress=False)
    assert names == ["istant", "Ċ"]
    torch.testing.assert_close(part["a"], full["a"][-2:, 1:3])
    bad = [({"positions": 7}, r"--positions 7 .*valid: 1\.\.6"), ({"layers": [4]}, r"valid: 0\.\.3"),
           ({"padding_side": "middle"}, "left, right"), ({"batch_size": 0}, "--batch-size")]
    for kw, match in bad:
        with pytest.raises(RoleVecError, match=match):
            mean_activations(model, tok, GROUPS, progress=False, **kw)
    with pytest.raises(RoleVecError, match="'b' is empty"):
        mean_activations(model, tok, {"a": ["x"], "b": []}, progress=False)


@torch.no_grad()
def test_model_without_chat_template_needs_positions(plain_tok):
    model = tiny_model("gpt2", vocab_size=len(plain_tok))
    with pytest.raises(RoleVecError, match="no chat template: pass --positions K"):
        mean_activations(model, plain_tok, GROUPS, progress=False)
    means, names = mean_activations(model, plain_tok, GROUPS, positions=3, progress=False)
    assert names == ["[-3]", "[-2]", "[-1]"]
    ref = reference(model, {g: encode(plain_tok, p, False, 3, None) for g, p in GROUPS.items()}, 3)
    torch.testing.assert_close(means["b"], ref["b"], atol=1e-5, rtol=1e-5)
    with pytest.raises(RoleVecError, match="fewer than 3 tokens"):
        mean_activations(model, plain_tok, {"a": ["Hi"]}, positions=3, progress=False)


@torch.no_grad()
def test_long_prompts_are_truncated_from_the_left_keeping_post_instruction_tokens(tok, caplog):
    model = tiny_model("llama", vocab_size=len(tok))
    with caplog.at_level(logging.WARNING, logger="rolevec_lmeval.extract"):
        means, _ = mean_activations(model, tok, GROUPS, max_length=12, progress=False)
    assert "prompts are longer than the model context (12 tokens): truncated from the left" in caplog.text
    ids = {g: encode(tok, p, True, 6, None) for g, p in GROUPS.items()}
    ref = reference(model, {g: [x[-12:] for x in rows] for g, rows in ids.items()}, 6)
    torch.testing.assert_close(means["b"], ref["b"], atol=1e-5, rtol=1e-5)
    with pytest.raises(RoleVecError, match="--max-length 4 is shorter than --positions 6"):
        mean_activations(model, tok, GROUPS, max_length=4, progress=False)


def test_extract_role_vectors_raw_centered_and_metadata(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    roles = {"chemist": GROUPS["a"], "lawyer": GROUPS["b"], "nurse": ["Check a patient's pulse."]}
    base = ["Suggest a dinner recipe.", "What is the weather like?"]
    vecs = extract_role_vectors(model, tok, roles, base, positions=2, progress=False, meta={"seed": 3})
    means, _ = mean_activations(model, tok, {**roles, "base": base}, positions=2, progress=False)
    raw = torch.stack([vecs[r].directions for r in roles])  # [roles, k, n_layers, d_model]
    for r, v in vecs.items():
        assert v.directions.dtype == torch.float32 and v.directions.shape == (2, 4, 64)
        torch.testing.assert_close(v.directions, (means[r] - means["base"]).float())
        torch.testing.assert_close(v.centered, v.directions - raw.mean(0), atol=1e-6, rtol=1e-5)
        assert v.position_tokens == ["istant", "Ċ"]
        assert v.meta["positions"] == [-2, -1] and v.meta["recommended_position"] == -1
        assert v.meta["n_prompts"] == len(roles[r]) and v.meta["prompt_sha256"] == prompt_sha256(roles[r])
        assert v.meta["n_base_prompts"] == 2 and v.meta["method"] == "mean_diff" and v.meta["seed"] == 3
        assert v.meta["centered_over"] == sorted(roles)
    assert torch.stack([v.centered for v in vecs.values()]).sum(0).abs().max() < 1e-5
    single = extract_role_vectors(model, tok, {"chemist": GROUPS["a"]}, base, progress=False)
    assert single["chemist"].centered is None and single["chemist"].n_positions == 6


# ---- command line -----------------------------------------------------------------------------------------
def cli(tiny_llama_dir, out: Path, *extra: str) -> int:
    return main(["extract", "--model", str(tiny_llama_dir), "--out", str(out), "--n", "4",
                 "--batch-size", "3", "--no-progress", *extra])


def test_cli_writes_files_refuses_to_overwrite_and_is_deterministic(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "vecs"
    assert cli(tiny_llama_dir, out, "--roles", "chemist,lawyer", "--positions", "2") == 0
    first = RoleVector.load(out / "chemist.safetensors")
    assert sorted(p.name for p in out.iterdir()) == ["chemist.safetensors", "lawyer.safetensors"]
    assert first.centered is not None and first.n_positions == 2 and first.n_layers == 4
    for key in ("model", "model_slug", "prompt_set", "prompt_sha256", "n_prompts", "n_base_prompts", "method",
                "seed", "tool_version", "recommended_position", "positions"):
        assert key in first.meta, key
    assert first.meta["prompt_set"] == "rolevec"
    assert first.meta["n_prompts"] == 4 and first.meta["n_base_prompts"] == len(load_prompt_set(None, BASE))
    assert cli(tiny_llama_dir, out, "--roles", "chemist", "--positions", "2") == 2
    assert "exist (pass --overwrite" in capsys.readouterr().err
    assert cli(tiny_llama_dir, out, "--roles", "lawyer,chemist", "--positions", "2", "--overwrite") == 0
    again = RoleVector.load(out / "chemist.safetensors")
    torch.testing.assert_close(again.directions, first.directions, atol=1e-6, rtol=1e-5)
    assert again.meta["prompt_sha256"] == first.meta["prompt_sha256"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_cli_bad_input(tiny_llama_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "base.jsonl").write_text("".join(f'{{"instruction": "base {i}"}}\n' for i in range(8)))
    (prompts / "pirate.jsonl").write_text('{"instruction": "Arr?"}\n' * 3)
    (prompts / "ghost.jsonl").write_text("")
    cases = [
        (["--roles", "alchemist"], "--roles alchemist is not valid"),
        (["--roles", "pirate", "--prompts", str(prompts)], "'pirate' has 3 prompts, fewer than --n 4"),
        (["--roles", "ghost", "--prompts", str(prompts)], "ghost.jsonl is empty"),
        (["--roles", "chemist", "--prompts", str(prompts)], "--roles chemist is not valid"),
        (["--roles", "chemist", "--positions", "9"], "--positions 9 is not valid; valid: 1..6"),
    ]
    for extra, match in cases:
        assert cli(tiny_llama_dir, tmp_path / "out", *extra) == 2, extra
        assert match in capsys.readouterr().err, extra
    assert cli(tiny_llama_dir, tmp_path / "out", "--roles", "pirate", "--prompts", str(prompts), "--n=3") == 0
    assert RoleVector.load(tmp_path / "out" / "pirate.safetensors").meta["prompt_set"] == "prompts"


def test_cli_refuses_a_model_without_chat_template_and_positions(tiny_llama_dir, tmp_path, capsys):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_llama_dir, plain)
    for f in plain.glob("chat_template*"):
        f.unlink()
    assert AutoTokenizer.from_pretrained(plain).chat_template is None
    assert cli(plain, tmp_path / "out", "--roles", "chemist") == 2
    assert "has no chat template: pass --positions K" in capsys.readouterr().err
    assert cli(plain, tmp_path / "out", "--roles", "chemist", "--positions", "3") == 0
    vec = RoleVector.load(tmp_path / "out" / "chemist.safetensors")
    assert vec.position_tokens == ["[-3]", "[-2]", "[-1]"]


# ---- shipped vectors ------------------------------------------------------------------------------------
def test_shipped_vectors_cover_every_role_are_small_and_up_to_date():
    files = sorted(SHIPPED.glob("*.safetensors"))
    assert sorted(f.stem for f in files) == sorted(all_roles())
    assert sum(f.stat().st_size for f in SHIPPED.rglob("*")) < 10 * 2**20
    store = default_store("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert store is not None and store.path.resolve() == SHIPPED.resolve()
    base = load_prompt_set(None, BASE)
    for role in all_roles():
        vec = store.load(role)
        assert vec.meta["model_slug"] == "smollm2-135m-instruct" and vec.meta["prompt_set"] == "rolevec"
        assert vec.centered is not None and vec.n_layers == 30 and vec.d_model == 576
        assert len(vec.meta["positions"]) == vec.n_positions == len(vec.position_tokens)
        assert -vec.n_positions <= vec.meta["recommended_position"] < vec.n_positions
        seed = vec.meta["seed"]
        sample = sample_prompts(load_prompt_set(None, role), vec.meta["n_prompts"], seed, role)
        assert vec.meta["prompt_sha256"] == prompt_sha256(sample), f"{role}: prompts changed, re-extract"
        base_sample = sample_prompts(base, vec.meta["n_base_prompts"], seed, BASE)
        assert vec.meta["base_prompt_sha256"] == prompt_sha256(base_sample), "base changed, re-extract"
    raw = torch.stack([store.load(r).directions for r in all_roles()])  # [roles, k, n_layers, d_model]
    for i, role in enumerate(all_roles()):
        torch.testing.assert_close(store.load(role).centered, raw[i] - raw.mean(0), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_regenerating_a_shipped_role_matches_the_file(embedded_dir):
    from transformers import AutoModelForCausalLM

    shipped = RoleVector.load(SHIPPED / "chemist.safetensors")
    meta = shipped.meta
    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(embedded_dir)
    role = sample_prompts(load_prompt_set(None, "chemist"), meta["n_prompts"], meta["seed"], "chemist")
    base = sample_prompts(load_prompt_set(None, BASE), meta["n_base_prompts"], meta["seed"], BASE)
    vec = extract_role_vectors(model, tokenizer, {"chemist": role}, base, positions=shipped.n_positions,
                               progress=False)["chemist"]
    assert vec.position_tokens == shipped.position_tokens
    cos = torch.nn.functional.cosine_similarity(vec.directions, shipped.directions, dim=-1)  # [k, n_layers]
    # Layer 0 is the token embedding: at the fixed post-instruction tokens role and base means are equal, so
    # the difference is exactly zero there (cosine undefined); it must be zero in both.
    zero = shipped.directions.norm(dim=-1) == 0  # [k, n_layers]
    assert torch.equal(zero, vec.directions.norm(dim=-1) == 0)
    assert cos[~zero].min() >= 0.999, cos[~zero].min()
