"""Shared fixtures: tiny random models built from configs, the embedded model, offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4)


def tiny_model(arch: str, vocab_size: int = 512) -> torch.nn.Module:
    """A tiny random causal LM of the given architecture (deterministic weights)."""
    import transformers as tf

    torch.manual_seed(0)
    if arch == "llama":
        cfg = tf.LlamaConfig(vocab_size=vocab_size, num_key_value_heads=2, **TINY)
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(vocab_size=vocab_size, num_key_value_heads=2, **TINY)
    elif arch == "gemma3":
        cfg = tf.Gemma3TextConfig(vocab_size=vocab_size, num_key_value_heads=2, head_dim=16, **TINY)
    elif arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=4, n_head=4, n_positions=256)
    elif arch == "gpt_neox":
        cfg = tf.GPTNeoXConfig(vocab_size=vocab_size, **TINY)
    else:
        raise ValueError(arch)
    model = tf.AutoModelForCausalLM.from_config(cfg)
    return model.eval()


ARCHS = ["llama", "qwen2", "gemma3", "gpt2", "gpt_neox"]


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    from rolevec_lmeval.embedded import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, embedded_dir) -> Path:
    """A tiny random Llama saved with the embedded model's tokenizer (and chat template)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(embedded_dir)
    model = tiny_model("llama", vocab_size=len(tok))
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def random_vectors(
    path: Path,
    role: str,
    n_layers: int,
    d_model: int,
    n_positions: int = 2,
    slug: str = "",
    scale: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write a role-vector file with random directions (tests only)."""
    from rolevec_lmeval.vectors import RoleVector

    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_positions, n_layers, d_model, generator=g) * scale
    meta = {"model_slug": slug} if slug else {}
    vec = RoleVector(
        role, directions, directions - directions.mean(), [f"t{i}" for i in range(n_positions)], meta
    )
    return vec.save(path / f"{role}.safetensors")
