"""Role vectors by difference of means at every block input and post-instruction position.

    rolevec extract --roles all --out vectors/my-model [--model M] [--prompts DIR] [--n 128]

One forward pass per batch collects every layer and position through forward pre-hooks on the decoder
blocks; activations are gathered at the last ``k`` real tokens of each prompt (padding-safe) and summed in
float64 into a ``[layers, groups, k, d_model]`` accumulator, so memory does not grow with the number of
prompts. The base set is one more group of the same pass. The forward stops at the last hooked block.
"""

from __future__ import annotations

import argparse
import inspect
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.interventions import find_blocks
from rolevec_lmeval.vectors import RoleVector

log = logging.getLogger(__name__)
_MARKER = "\u00a7rolevec-marker\u00a7"


class _Stop(Exception):
    """Raised by the last needed hook: the rest of the forward pass is not needed."""


def post_instruction_ids(tokenizer: Any) -> list[int] | None:
    """Token ids the chat template puts after the user message (None without a chat template)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = _chat(tokenizer, _MARKER)
    if _MARKER not in text:
        raise RoleVecError("the tokenizer's chat template drops the user message; pass --positions K")
    suffix = tokenizer(text[text.rindex(_MARKER) + len(_MARKER) :], add_special_tokens=False)["input_ids"]
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    n = 0  # keep only the tail that tokenizes identically inside the full prompt
    while n < len(suffix) and suffix[-1 - n] == full[-1 - n]:
        n += 1
    if n == 0:
        raise RoleVecError("cannot derive the post-instruction tokens from the chat template")
    return suffix[len(suffix) - n :]


def _chat(tokenizer: Any, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)


def resolve_positions(tokenizer: Any, positions: int | None) -> tuple[int, list[str], list[int] | None]:
    """``(k, position token names, post-instruction ids or None)`` for ``--positions``."""
    suffix = post_instruction_ids(tokenizer)
    if suffix is None and positions is None:
        raise RoleVecError("the model has no chat template: pass --positions K (the last K prompt tokens)")
    k = len(suffix) if positions is None else int(positions)
    if k < 1 or (suffix is not None and k > len(suffix)):
        valid = f"1..{len(suffix)}" if suffix else ">= 1"
        raise RoleVecError(f"--positions {k} is not valid; valid: {valid}")
    names = tokenizer.convert_ids_to_tokens(suffix[-k:]) if suffix else [f"[{i - k}]" for i in range(k)]
    return k, names, suffix


def encode(tokenizer: Any, prompts: Sequence[str], chat: bool, k: int, max_length: int | None) -> list:
    """Token ids of each prompt (chat-templated when ``chat``), truncated from the left to ``max_length``."""
    texts = [_chat(tokenizer, p) if chat else p for p in prompts]
    ids = tokenizer(texts, add_special_tokens=not chat)["input_ids"]
    if short := sum(len(x) < k for x in ids):
        raise RoleVecError(f"{short} prompts have fewer than {k} tokens; lower --positions")
    if max_length is not None and (long := sum(len(x) > max_length for x in ids)):
        log.warning("%d prompts are longer than the model context (%d tokens): truncated from the left, "
                    "keeping the post-instruction tokens", long, max_length)
        ids = [x[-max_length:] for x in ids]
    return ids


def _batch(ids: list[list[int]], pad_id: int, side: str) -> tuple[Tensor, Tensor, Tensor]:
    """Padded ``input_ids``, ``attention_mask`` and mask-derived ``position_ids``, each ``[batch, pos]``."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        sl = slice(0, len(x)) if side == "right" else slice(width - len(x), width)
        input_ids[i, sl] = torch.tensor(x, dtype=torch.long)
        mask[i, sl] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding keeps real positions 0..len-1
    return input_ids, mask, position_ids


def last_token_index(mask: Tensor, k: int) -> Tensor:
    """``[batch, k]`` indices of the last ``k`` real tokens of each row (left or right padding)."""
    width = mask.shape[1]
    end = width - 1 - mask.flip(-1).argmax(-1)  # [batch] index of the last real token
    return end[:, None] - (k - 1) + torch.arange(k, device=mask.device)[None, :]


@torch.no_grad()
def mean_activations(
    model: nn.Module, tokenizer: Any, groups: Mapping[str, Sequence[str]], positions: int | None = None,
    layers: Sequence[int] | None = None, batch_size: int = 32, max_length: int | None = None,
    padding_side: str = "right", progress: bool = True,
) -> tuple[dict[str, Tensor], list[str]]:
    """Mean block-input activation per group, ``{group: [k, len(layers), d_model] float64}`` (layers sorted),
    and the position token names.

    ``positions`` = k, the number of last prompt tokens; with a chat template it defaults to (and may not
    exceed) the post-instruction tokens; without one it is required.
    """
    from tqdm.auto import tqdm

    if padding_side not in ("left", "right"):
        raise RoleVecError(f"padding_side={padding_side!r} is not valid; valid values: left, right")
    if batch_size < 1:
        raise RoleVecError(f"--batch-size {batch_size} is not valid; it must be >= 1")
    k, names, suffix = resolve_positions(tokenizer, positions)
    blocks = find_blocks(model)
    layers = list(range(len(blocks))) if layers is None else sorted({int(i) for i in layers})
    if not layers or not all(0 <= i < len(blocks) for i in layers):
        raise RoleVecError(f"layers={layers} is not valid; valid: 0..{len(blocks) - 1}")
    if max_length is None:
        max_length = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_length is not None and max_length < k:
        raise RoleVecError(f"--max-length {max_length} is shorter than --positions {k}")

    labels = list(groups)
    flat: list[tuple[int, list[int]]] = []  # (group, token ids): ints only, no activations are kept
    for g, name in enumerate(labels):
        if not groups[name]:
            raise RoleVecError(f"prompt set {name!r} is empty")
        flat.extend((g, x) for x in encode(tokenizer, groups[name], suffix is not None, k, max_length))
    flat.sort(key=lambda item: -len(item[1]))  # long first: the peak memory shows on the first batch
    counts = torch.tensor([len(groups[n]) for n in labels], dtype=torch.float64)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    device = next(model.parameters()).device
    pass_positions = "position_ids" in inspect.signature(model.forward).parameters
    d_model = model.get_input_embeddings().embedding_dim
    acc = torch.zeros(len(layers), len(labels), k, d_model, dtype=torch.float64, device=device)
    state: dict[str, Tensor] = {}

    def make_hook(j: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else kwargs["hidden_states"]  # [batch, pos, d_model]
            picked = x[state["rows"].to(x.device), state["idx"].to(x.device)].to(acc)  # [batch, k, d_model]
            acc[j].index_add_(0, state["group"].to(acc.device), picked)  # acc[j]: [n_groups, k, d_model]
            if j == len(layers) - 1:
                raise _Stop

        return hook

    model.eval()
    hooks = [blocks[i].register_forward_pre_hook(make_hook(j), with_kwargs=True)
             for j, i in enumerate(layers)]
    try:
        for s in tqdm(range(0, len(flat), batch_size), desc="extract", unit="batch", disable=not progress):
            chunk = flat[s : s + batch_size]
            input_ids, mask, pos = (t.to(device) for t in _batch([x for _, x in chunk], pad_id, padding_side))
            state["group"] = torch.tensor([g for g, _ in chunk], device=device)
            state["rows"] = torch.arange(len(chunk), device=device)[:, None]  # [batch, 1]
            state["idx"] = last_token_index(mask, k)  # [batch, k]
            try:
                model(input_ids=input_ids, attention_mask=mask, use_cache=False,
                      **({"position_ids": pos} if pass_positions else {}))
            except _Stop:
                pass
    finally:
        for h in hooks:
            h.remove()
    means = acc.cpu().permute(1, 2, 0, 3) / counts[:, None, None, None]  # [n_groups, k, n_layers, d_model]
    return {name: means[g] for g, name in enumerate(labels)}, names


def extract_role_vectors(
    model: nn.Module, tokenizer: Any, role_prompts: Mapping[str, Sequence[str]], base_prompts: Sequence[str],
    positions: int | None = None, batch_size: int = 32, max_length: int | None = None,
    padding_side: str = "right", center: bool = True, progress: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, RoleVector]:
    """Difference of means ``mean(role) - mean(base)`` at every block input and the last ``k`` positions.

    The ``centered`` tensor is each role's vector minus the mean over all roles given (omitted for a
    single role). ``meta`` is merged into every file's metadata.
    """
    from rolevec_lmeval.embedded import EMBEDDED_MODEL_ID, is_embedded
    from rolevec_lmeval.prompts import prompt_sha256
    from rolevec_lmeval.store import model_slug

    if not role_prompts or "\0base" in role_prompts:
        raise RoleVecError("no roles to extract" if not role_prompts else "role name '\\0base' is reserved")
    groups = {**role_prompts, "\0base": base_prompts}
    means, names = mean_activations(model, tokenizer, groups, positions, None, batch_size, max_length,
                                    padding_side, progress)
    base = means.pop("\0base")
    raw = {role: m - base for role, m in means.items()}  # each [k, n_layers, d_model] float64
    centre = torch.stack(list(raw.values())).mean(0) if center and len(raw) > 1 else None
    name = str(getattr(model.config, "name_or_path", "") or getattr(model.config, "_name_or_path", ""))
    model_id = EMBEDDED_MODEL_ID if name and Path(name).is_dir() and is_embedded(name) else name
    common = {  # positions: offsets from the prompt end (stored ones); recommended_position: index into them
        "model": model_id, "model_slug": model_slug(name or "model"), "method": "mean_diff",
        "positions": list(range(-len(names), 0)), "recommended_position": -1,
        "post_instruction_tokens": tokenizer.convert_ids_to_tokens(post_instruction_ids(tokenizer) or []),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)), "n_base_prompts": len(base_prompts),
        "base_prompt_sha256": prompt_sha256(base_prompts),
        "centered_over": sorted(raw) if centre is not None else [], **(meta or {}),
    }
    return {
        role: RoleVector(role, d.float(), None if centre is None else (d - centre).float(), list(names),
                         {**common, "n_prompts": len(role_prompts[role]),
                          "prompt_sha256": prompt_sha256(role_prompts[role])})
        for role, d in raw.items()
    }


# ---- command line -----------------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="compute role vectors (difference of means) for a model")
    p.add_argument("--model", default=None, help="HF id or dir (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--roles", default="all", help="all, paper, or a comma-separated list (default: all)")
    p.add_argument("--prompts", default=None, help="dir of <role>.jsonl + base.jsonl (default: shipped sets)")
    p.add_argument("--out", required=True, help="output directory for <role>.safetensors")
    p.add_argument("--n", type=int, default=128, help="prompts per role, seeded sample (default: 128)")
    p.add_argument("--n-base", type=int, default=None,
                   help="base prompts, seeded sample (default: all; their mean is computed once)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--positions", type=int, default=None,
                   help="keep the last K post-instruction tokens (required without a chat template)")
    p.add_argument("--max-length", type=int, default=None, help="context limit (default: the model's)")
    p.add_argument("--padding-side", choices=["right", "left"], default="right")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--overwrite", action="store_true", help="replace existing vector files")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolevec_lmeval import __version__
    from rolevec_lmeval.prompts import BASE, available_roles, load_prompt_set, prompt_set_name, resolve_roles
    from rolevec_lmeval.prompts import sample_prompts as sample

    roles = resolve_roles(args.roles, available_roles(args.prompts))
    out = Path(args.out)
    targets = [out / f"{r}.safetensors" for r in roles]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise RoleVecError(f"--out: {', '.join(existing)} exist (pass --overwrite to replace them)")
    role_prompts = {r: sample(load_prompt_set(args.prompts, r), args.n, args.seed, r) for r in roles}
    base = sample(load_prompt_set(args.prompts, BASE), args.n_base, args.seed, BASE)

    if args.model is None:
        from rolevec_lmeval.embedded import embedded_model_dir

        args.model = str(embedded_model_dir())
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        resolve_positions(tokenizer, args.positions)  # fail before loading the weights
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).to(device)
    except OSError as exc:
        raise RoleVecError(f"--model {args.model} cannot be loaded ({exc})") from None
    meta = {"prompt_set": prompt_set_name(args.prompts), "seed": args.seed, "tool_version": __version__}
    vectors = extract_role_vectors(model, tokenizer, role_prompts, base, args.positions, args.batch_size,
                                   args.max_length, args.padding_side, progress=not args.no_progress,
                                   meta=meta)
    for role, target in zip(roles, targets, strict=True):
        vectors[role].save(target, overwrite=True)
    v = vectors[roles[0]]
    print(f"wrote {len(roles)} role vector files to {out} ({v.meta['n_prompts']} prompts/role, {len(base)} "
          f"base, {v.n_positions} positions x {v.n_layers} layers)")
    return 0
