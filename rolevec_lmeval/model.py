"""``rolevec_hf``: lm-eval's HFLM with role-vector steering and persona prompting, set by model_args.

    lm_eval --model rolevec_hf --model_args role=chemist,layer=12,alpha=3 --tasks mmlu_high_school_chemistry

Omitting ``pretrained`` uses the embedded default model. ``role`` omitted (or ``alpha=0`` with
``intervention=add``) attaches no hook at all, so results equal ``--model hf`` exactly.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.interventions import INTERVENTIONS, Steering, n_layers_of, steering
from rolevec_lmeval.store import VectorStore, default_store, model_slug
from rolevec_lmeval.vectors import METHODS, RoleVector

log = logging.getLogger(__name__)
_ROLES_INDEX = Path(__file__).with_name("prompts") / "roles.json"


def _number(name: str, value: Any, cast: type) -> Any:
    if value is None or isinstance(value, bool):
        raise RoleVecError(f"{name}={value!r} is not a number")
    try:
        out = cast(value)
    except (TypeError, ValueError):
        raise RoleVecError(f"{name}={value!r} is not a {'integer' if cast is int else 'number'}") from None
    if cast is float and out != out or out in (float("inf"), float("-inf")):
        raise RoleVecError(f"{name}={value!r} must be finite")
    if cast is int and float(value) != out:
        raise RoleVecError(f"{name}={value!r} is not an integer")
    return out


def persona_text(persona: str) -> str:
    """``chemist`` / ``data_scientist`` -> "You are a chemist." ; any other text is used verbatim."""
    roles = json.loads(_ROLES_INDEX.read_text())["roles"]
    key = persona.strip().replace(" ", "_").lower()
    if key in roles:
        name = roles[key]["name"]
        return f"You are {'an' if name[0] in 'aeiou' else 'a'} {name}."
    return persona.strip()


def check_compatible(vec: RoleVector, model: torch.nn.Module, slug: str, strict_model: bool) -> None:
    """Refuse vectors whose shape does not fit the model; refuse (or warn) if made for another model."""
    hidden = getattr(model.config, "hidden_size", None)
    if hidden is not None and vec.d_model != hidden:
        raise RoleVecError(
            f"vectors for role {vec.role!r} have hidden size {vec.d_model} but the model's "
            f"hidden_size is {hidden} (made for {vec.meta.get('model', '?')})"
        )
    if vec.n_layers != n_layers_of(model):
        raise RoleVecError(
            f"vectors for role {vec.role!r} cover {vec.n_layers} layers but the model has "
            f"{n_layers_of(model)}"
        )
    made_for = vec.meta.get("model_slug")
    if made_for and made_for != slug:
        msg = f"vectors for role {vec.role!r} were made for {made_for!r}, not {slug!r}"
        if strict_model:
            raise RoleVecError(msg + " (pass strict_model=False to use them anyway)")
        log.warning(msg)


def resolve_steering(
    model: torch.nn.Module,
    store: VectorStore | None,
    role: str,
    layer: Any = None,
    alpha: Any = None,
    position: Any = None,
    intervention: str | None = None,
    method: str | None = None,
    slug: str = "",
    strict_model: bool = True,
) -> Steering:
    """Build the Steering for ``role`` ('a+b' sums vectors); unset values come from the store's index."""
    if store is None:
        raise RoleVecError(
            f"no vectors are shipped for model {slug!r}; pass vectors=<file or directory> "
            "(create them with `rolevec extract`)"
        )
    roles = [r.strip() for r in str(role).split("+") if r.strip()]
    if not roles:
        raise RoleVecError(f"role={role!r} is empty; available: {', '.join(store.roles())}")
    rec = store.recommended(roles[0]) if len(roles) == 1 else {}
    layer = rec.get("layer") if layer is None else layer
    alpha = rec.get("alpha") if alpha is None else alpha
    position = rec.get("position") if position is None else position
    intervention = intervention or rec.get("intervention") or "add"
    method = method or rec.get("method") or "raw"
    n = n_layers_of(model)
    if layer is None:
        raise RoleVecError(f"layer is required for role={role!r} (no recommended config); valid: 0..{n - 1}")
    layer = _number("layer", layer, int)
    if not 0 <= layer < n:
        raise RoleVecError(f"layer={layer} is out of range; valid: 0..{n - 1}")
    if alpha is None:
        alpha = 0.0 if intervention == "ablate" else None
    if alpha is None:
        raise RoleVecError(
            f"alpha is required for role={role!r} with intervention={intervention} "
            "(a number multiplying the raw vector, e.g. alpha=3)"
        )
    alpha = _number("alpha", alpha, float)
    if intervention not in INTERVENTIONS:
        raise RoleVecError(
            f"intervention={intervention!r} is not valid; valid values: {', '.join(INTERVENTIONS)}"
        )
    if method not in METHODS:
        raise RoleVecError(f"method={method!r} is not valid; valid values: {', '.join(METHODS)}")
    total = None
    for name in roles:
        vec = store.load(name)
        check_compatible(vec, model, slug, strict_model)
        pos = (
            vec.meta.get("recommended_position", -1)
            if position is None
            else _number("position", position, int)
        )
        d = vec.direction(layer, pos, method)
        total = d.clone() if total is None else total + d
    return Steering(total, layer, alpha, intervention)


@register_model("rolevec_hf")
class RoleVecLM(HFLM):
    """HFLM + role vectors. Extra model_args: role, layer, alpha, position, intervention, method,
    vectors, persona, strict_model (see README)."""

    def __init__(
        self,
        pretrained: Any = None,
        role: str | None = None,
        layer: int | None = None,
        alpha: float | None = None,
        position: int | None = None,
        intervention: str | None = None,
        method: str | None = None,
        vectors: str | None = None,
        persona: str | None = None,
        strict_model: bool = True,
        **kwargs: Any,
    ) -> None:
        if intervention is not None and intervention not in INTERVENTIONS:  # fail before loading a model
            raise RoleVecError(
                f"intervention={intervention!r} is not valid; valid values: {', '.join(INTERVENTIONS)}"
            )
        if pretrained is None:
            from rolevec_lmeval.embedded import embedded_model_dir

            pretrained = str(embedded_model_dir())
        kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(pretrained=pretrained, **kwargs)
        name = pretrained if isinstance(pretrained, (str, os.PathLike)) else self.model.config.name_or_path
        self.model_slug = model_slug(name)
        self.persona = persona_text(str(persona)) if persona else None
        self._persona_in_template = False
        self.steerings: list[Steering] = []
        if role:
            store = VectorStore(vectors) if vectors else default_store(name)
            s = resolve_steering(
                self.model,
                store,
                str(role),
                layer,
                alpha,
                position,
                intervention,
                method,
                self.model_slug,
                bool(strict_model),
            )
            if not s.is_noop:
                s.edits(self.model)  # validate hook points now, not in the middle of an evaluation
                self.steerings.append(s)
        elif any(v is not None for v in (layer, alpha, position, vectors)):
            log.warning("rolevec_hf: layer/alpha/position/vectors given without role: no steering applied")

    # ---- steering: only the two model entry points are wrapped -----------------------------------------
    def _model_call(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with steering(self.model, self.steerings):
            return super()._model_call(*args, **kwargs)

    def _model_generate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with steering(self.model, self.steerings):
            return super()._model_generate(*args, **kwargs)

    # ---- persona prompting (the paper's baseline) --------------------------------------------------------
    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        if self.persona:
            self._persona_in_template = True
            history = [dict(m) for m in chat_history]
            if history and history[0].get("role") == "system":
                history[0]["content"] = f"{self.persona} {history[0]['content']}"
            else:
                history.insert(0, {"role": "system", "content": self.persona})
            chat_history = history
        return super().apply_chat_template(chat_history, add_generation_prompt)

    def _with_persona(self, requests: list) -> list:
        if not self.persona or self._persona_in_template:
            return requests
        out = []
        for req in requests:
            req = copy.copy(req)
            req.arguments = (f"{self.persona}\n\n{req.args[0]}", *req.args[1:])
            out.append(req)
        return out

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list:
        return super().loglikelihood(self._with_persona(requests), disable_tqdm=disable_tqdm)

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list:
        return super().generate_until(self._with_persona(requests), disable_tqdm=disable_tqdm)

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info["rolevec"] = [
            {"layer": s.layer, "alpha": s.alpha, "intervention": s.intervention} for s in self.steerings
        ]
        info["rolevec_persona"] = self.persona
        return info
