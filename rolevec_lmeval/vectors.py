"""Role-vector files: a value object with symmetric, self-describing save/load.

A file ``<dir>/<role>.safetensors`` holds tensor ``directions`` (raw difference of means) and optionally
``centered`` (role-centred variant), each ``Float[Tensor, "n_positions n_layers d_model"]`` float32, plus
JSON metadata under the safetensors metadata key ``rolevec``. Never unpickles anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rolevec_lmeval import __version__
from rolevec_lmeval.errors import RoleVecError

FORMAT = "rolevec/1"
METHODS = ("raw", "centered")
_TENSOR_FOR = {"raw": "directions", "centered": "centered"}


@dataclass(frozen=True)
class RoleVector:
    role: str
    directions: Tensor  # [n_positions, n_layers, d_model] float32, raw mean(role) - mean(base)
    centered: Tensor | None = None  # same shape: directions - mean over all extracted roles
    position_tokens: list[str] = field(default_factory=list)  # post-instruction tokens, in order
    meta: dict[str, Any] = field(default_factory=dict)  # model, model_slug, prompt_set, sha256, ...

    def __post_init__(self) -> None:
        _check_tensor(self.directions, "directions", self.role)
        if self.centered is not None:
            _check_tensor(self.centered, "centered", self.role)
            if self.centered.shape != self.directions.shape:
                raise RoleVecError(f"role {self.role!r}: 'centered' shape differs from 'directions'")
        if self.position_tokens and len(self.position_tokens) != self.n_positions:
            raise RoleVecError(
                f"role {self.role!r}: {len(self.position_tokens)} position tokens "
                f"for {self.n_positions} positions"
            )

    @property
    def n_positions(self) -> int:
        return self.directions.shape[0]

    @property
    def n_layers(self) -> int:
        return self.directions.shape[1]

    @property
    def d_model(self) -> int:
        return self.directions.shape[2]

    def direction(self, layer: int, position: int = -1, method: str = "raw") -> Tensor:
        """The ``[d_model]`` vector at block-input ``layer`` for post-instruction ``position``."""
        if method not in METHODS:
            raise RoleVecError(f"method={method!r} is not valid; valid values: {', '.join(METHODS)}")
        tensor = self.directions if method == "raw" else self.centered
        if tensor is None:
            raise RoleVecError(f"role {self.role!r} has no 'centered' tensor; use method=raw")
        if not -self.n_layers <= layer < self.n_layers:
            raise RoleVecError(f"layer={layer} is out of range; valid: 0..{self.n_layers - 1}")
        if not -self.n_positions <= position < self.n_positions:
            raise RoleVecError(
                f"position={position} is out of range; valid: "
                f"{-self.n_positions}..{self.n_positions - 1} (negative = from the end)"
            )
        return tensor[position, layer]

    # ---- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write atomically (temp file + rename): a crash never leaves a half-written file."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists (pass --overwrite to replace it)")
        tensors = {"directions": self.directions.float().contiguous()}
        if self.centered is not None:
            tensors["centered"] = self.centered.float().contiguous()
        meta = {
            **self.meta,
            "format": FORMAT,
            "role": self.role,
            "position_tokens": self.position_tokens,
            "n_positions": self.n_positions,
            "n_layers": self.n_layers,
            "hidden_size": self.d_model,
        }
        meta.setdefault("tool_version", __version__)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"rolevec": json.dumps(meta, sort_keys=True)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RoleVector:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise RoleVecError(f"vectors file {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as fh:
                raw_meta = (fh.metadata() or {}).get("rolevec")
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as exc:  # safetensors raises several types for truncated/corrupt headers
            raise RoleVecError(
                f"vectors file {path} is truncated or corrupt ({type(exc).__name__}: {exc})"
            ) from None
        if raw_meta is None or "directions" not in tensors:
            raise RoleVecError(
                f"vectors file {path} is not a rolevec file (needs tensor 'directions' "
                "and metadata key 'rolevec')"
            )
        try:
            meta = json.loads(raw_meta)
        except json.JSONDecodeError as exc:
            raise RoleVecError(f"vectors file {path}: metadata is not valid JSON ({exc})") from None
        role = meta.pop("role", path.stem)
        tokens = meta.pop("position_tokens", [])
        for key in ("format", "n_positions", "n_layers", "hidden_size"):
            meta.pop(key, None)
        try:
            return cls(role, tensors["directions"], tensors.get("centered"), tokens, meta)
        except RoleVecError as exc:
            raise RoleVecError(f"vectors file {path}: {exc}") from None


def _check_tensor(t: Tensor, name: str, role: str) -> None:
    if not isinstance(t, Tensor) or t.ndim != 3:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise RoleVecError(
            f"role {role!r}: tensor {name!r} must be [n_positions, n_layers, d_model], got {shape}"
        )
    if t.dtype != torch.float32:
        raise RoleVecError(f"role {role!r}: tensor {name!r} must be float32, got {t.dtype}")
    if not torch.isfinite(t).all():
        raise RoleVecError(f"role {role!r}: tensor {name!r} contains NaN or inf values")
