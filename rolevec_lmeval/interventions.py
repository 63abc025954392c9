"""Residual-stream interventions as PyTorch hooks, owned by one context manager.

- activation addition: ``x <- x + alpha * d`` at the input of block ``l``, at every token position;
- directional ablation: ``x <- x - (x . u) u`` with ``u = d / |d|`` at every block input and on the
  attention and MLP outputs that write into the residual stream (Arditi et al. style);
- ``add+ablate``: ablation on blocks ``< l``, then at block ``l``'s input the component along ``u`` is
  removed and ``alpha * d`` added (the steered amount replaces the model's own).

Blocks are discovered architecture-agnostically (Llama, Qwen2, Gemma2/3, GPT-2, GPT-NeoX, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rolevec_lmeval.errors import RoleVecError

INTERVENTIONS = ("add", "ablate", "add+ablate")
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")

Edit = Callable[[Tensor], Tensor]  # Float[Tensor, "batch pos d_model"] -> same


def n_layers_of(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(cfg, key, None), int):
            return getattr(cfg, key)
    raise RoleVecError(
        f"cannot tell the layer count of {type(model).__name__} (no num_hidden_layers in config)"
    )


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder-block ``ModuleList``: the first one whose length equals the configured layer count."""
    n = n_layers_of(model)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and n > 0:
            return module
    raise RoleVecError(f"cannot find the {n} decoder blocks of {type(model).__name__}")


def residual_writers(block: nn.Module) -> list[nn.Module]:
    """Modules whose outputs are added to the residual stream inside ``block`` (attention, MLP)."""
    if hasattr(block, "pre_feedforward_layernorm") and hasattr(block, "post_feedforward_layernorm"):
        # Gemma2/3 "sandwich" norms: what reaches the residual is the *post*-norm output.
        return [block.post_attention_layernorm, block.post_feedforward_layernorm]
    attn = next(
        (getattr(block, n) for n in _ATTN_NAMES if isinstance(getattr(block, n, None), nn.Module)), None
    )
    mlp = next(
        (getattr(block, n) for n in _MLP_NAMES if isinstance(getattr(block, n, None), nn.Module)), None
    )
    if attn is None or mlp is None:
        raise RoleVecError(f"cannot find attention and MLP modules in block {type(block).__name__}")
    return [attn, mlp]


def make_add(vector: Tensor, alpha: float) -> Edit:
    """``x + alpha * vector``; the scaled vector is cached per (device, dtype) of the activations."""
    scaled = vector.detach().to(torch.float32) * float(alpha)
    cache: dict[tuple, Tensor] = {}

    def edit(x: Tensor) -> Tensor:
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = scaled.to(device=x.device, dtype=x.dtype)
        return x + cache[key]

    return edit


def make_ablate(vector: Tensor) -> Edit:
    """``x - (x . u) u`` with ``u = vector / |vector|``."""
    norm = vector.detach().to(torch.float32).norm()
    if not torch.isfinite(norm) or norm == 0:
        raise RoleVecError("cannot ablate a zero or non-finite direction")
    unit = vector.detach().to(torch.float32) / norm
    cache: dict[tuple, Tensor] = {}

    def edit(x: Tensor) -> Tensor:
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = unit.to(device=x.device, dtype=x.dtype)
        u = cache[key]
        return x - (x @ u).unsqueeze(-1) * u

    return edit


def _then(first: Edit, second: Edit) -> Edit:
    return lambda x: second(first(x))


@dataclass(frozen=True)
class Steering:
    """One intervention: ``vector`` is the raw direction ``d`` (``[d_model]``) for block-input ``layer``."""

    vector: Tensor
    layer: int
    alpha: float = 0.0
    intervention: str = "add"

    def __post_init__(self) -> None:
        if self.intervention not in INTERVENTIONS:
            raise RoleVecError(
                f"intervention={self.intervention!r} is not valid; valid values: {', '.join(INTERVENTIONS)}"
            )

    @property
    def is_noop(self) -> bool:
        return self.intervention == "add" and self.alpha == 0

    def edits(self, model: nn.Module) -> list[tuple[nn.Module, str, Edit]]:
        """(module, 'input'|'output', edit) triples implementing this steering on ``model``."""
        blocks = find_blocks(model)
        if not 0 <= self.layer < len(blocks):
            raise RoleVecError(f"layer={self.layer} is out of range; valid: 0..{len(blocks) - 1}")
        d_model = getattr(getattr(model, "config", None), "hidden_size", None)
        if d_model is not None and self.vector.shape[-1] != d_model:
            raise RoleVecError(
                f"vector hidden size {self.vector.shape[-1]} does not match the model's hidden_size {d_model}"
            )
        if self.is_noop:
            return []
        if self.intervention == "add":
            return [(blocks[self.layer], "input", make_add(self.vector, self.alpha))]
        ablate = make_ablate(self.vector)
        upto = len(blocks) if self.intervention == "ablate" else self.layer
        out: list[tuple[nn.Module, str, Edit]] = []
        for block in list(blocks)[:upto]:
            out.append((block, "input", ablate))
            out.extend((writer, "output", ablate) for writer in residual_writers(block))
        if self.intervention == "add+ablate":
            out.append((blocks[self.layer], "input", _then(ablate, make_add(self.vector, self.alpha))))
        return out


def _input_hook(edit: Edit):
    def hook(module, args, kwargs):
        if args:
            return (edit(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

    return hook


def _output_hook(edit: Edit):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (edit(output[0]), *output[1:])
        return edit(output)

    return hook


@contextmanager
def steering(model: nn.Module, steerings: list[Steering]) -> Iterator[None]:
    """Attach the hooks for ``steerings`` for the duration of the block; always removes them."""
    handles = []
    try:
        for s in steerings:
            for module, where, edit in s.edits(model):
                if where == "input":
                    handles.append(module.register_forward_pre_hook(_input_hook(edit), with_kwargs=True))
                else:
                    handles.append(module.register_forward_hook(_output_hook(edit)))
        yield
    finally:
        for handle in handles:
            handle.remove()
