"""Patch-scoping primitives: an identity-style target prompt, residual norms, and greedy generation with the
residual stream at one token replaced (during the prompt forward only).

Used by ``rolevec scope`` (:mod:`rolevec_lmeval.scope`); torch is imported lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from rolevec_lmeval.errors import RoleVecError

if TYPE_CHECKING:
    from torch import Tensor, nn

# Our own few-shot prompt; its examples avoid every role-lexicon term (see tests) so copying scores nothing.
TARGET_PROMPT = (
    "Violin: a wooden musical instrument with four strings, played with a bow.\n"
    "Pilot: a person who flies planes.\n"
    "Harbor: a sheltered stretch of coast where boats can stay safely.\n"
    "Tailor: a person who makes and alters clothes.\n"
    "Umbrella: a folding cover that keeps the rain off your head.\n"
    "{x}:"
)
NEUTRAL = (
    "The train left the station a few minutes after noon.",
    "She put the blue cup on the shelf next to the window.",
    "Most of the leaves had fallen by the end of the month.",
    "He walked to the corner shop to buy some milk and eggs.",
    "The meeting was moved to Thursday because of the holiday.",
)


def target_ids(tokenizer, template: str = TARGET_PROMPT, placeholder: str = "X") -> tuple[list[int], int]:
    """Token ids of the target prompt and the index of the (last) placeholder token."""
    if template.count("{x}") != 1:
        raise RoleVecError("template must contain the placeholder {x} exactly once")
    prefix, suffix = template.split("{x}")
    head = tokenizer(prefix).input_ids  # keeps a BOS if the tokenizer adds one
    mark = tokenizer(placeholder, add_special_tokens=False).input_ids
    tail = tokenizer(suffix, add_special_tokens=False).input_ids
    if not mark:
        raise RoleVecError(f"placeholder {placeholder!r} tokenizes to nothing")
    return head + mark + tail, len(head) + len(mark) - 1


def residual_norms(model: nn.Module, tokenizer, layers: list[int], prompts=NEUTRAL) -> dict[int, float]:
    """Mean L2 norm of the input of each block in ``layers`` over all tokens but the first of ``prompts``."""
    import torch

    from rolevec_lmeval.interventions import find_blocks

    blocks = find_blocks(model)
    seen: dict[int, list[Tensor]] = {layer: [] for layer in layers}

    def grab(layer: int):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]  # [1, pos, d_model]
            seen[layer].append(x[0, 1:].float().norm(dim=-1))  # first token excluded: attention sinks
        return hook

    handles = [blocks[la].register_forward_pre_hook(grab(la), with_kwargs=True) for la in layers]
    try:
        with torch.no_grad():
            for text in prompts:
                model(tokenizer(text, return_tensors="pt").input_ids.to(model.device))
    finally:
        for h in handles:
            h.remove()
    return {layer: torch.cat(v).mean().item() for layer, v in seen.items()}


def _replace_at(position: int, patches: Tensor) -> Callable[[Tensor], Tensor]:
    def edit(x: Tensor) -> Tensor:  # [batch, pos, d_model]
        out = x.clone()
        out[:, position] = patches.to(device=x.device, dtype=x.dtype)  # patches: [batch, d_model]
        return out

    return edit


def _past(out):
    return getattr(out, "cache", None) or out.past_key_values  # transformers 5 renamed it "cache"


def patched_generate(
    model: nn.Module, ids: list[int], position: int, layer: int, patches: Tensor | None, max_new_tokens: int
) -> Tensor:
    """Greedy continuation ``[batch, max_new_tokens]`` of ``ids``; the input of block ``layer`` at
    ``position`` is replaced by ``patches`` (``[batch, d_model]``; None: none) in the prompt forward only.

    The prefix before ``position`` is the same in every row: it runs once and its KV cache is repeated."""
    import torch

    from rolevec_lmeval.interventions import _input_hook, find_blocks

    batch = 1 if patches is None else patches.shape[0]
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        start, extra = 0, {}
        if position > 0:
            past = _past(model(input_ids=torch.tensor([ids[:position]], device=model.device), use_cache=True))
            if hasattr(past, "batch_repeat_interleave"):  # else (legacy tuple caches): run the whole prompt
                past.batch_repeat_interleave(batch)
                start, extra = position, {key: past}
        rest = torch.tensor([ids[start:]], device=model.device).repeat(batch, 1)  # [batch, prompt - start]
        handle = None
        if patches is not None:
            hook = _input_hook(_replace_at(position - start, patches))
            handle = find_blocks(model)[layer].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            out = model(input_ids=rest, use_cache=True, **extra)
        finally:
            if handle is not None:
                handle.remove()
        new = [out.logits[:, -1].argmax(-1)]  # [batch] each
        for _ in range(max_new_tokens - 1):
            out = model(input_ids=new[-1][:, None], use_cache=True, **{key: _past(out)})
            new.append(out.logits[:, -1].argmax(-1))
    return torch.stack(new, dim=1)


def describe(tokenizer, new_ids: Tensor) -> str:
    """Decoded continuation up to its first line break."""
    text = tokenizer.decode(new_ids.tolist(), skip_special_tokens=True)
    return text.lstrip().split("\n", 1)[0].strip()
