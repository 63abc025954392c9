"""Where vector files live: a directory of ``<role>.safetensors`` plus an optional ``index.json``.

``index.json`` (written by ``rolevec sweep``) maps role -> recommended config
(layer, position, alpha, intervention, method) so that ``role=chemist`` alone is enough.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.vectors import RoleVector

SUFFIX = ".safetensors"


def shipped_vectors_root() -> Path:
    """``rolevec_lmeval/_vectors`` in an installed wheel, else the repository's top-level ``vectors/``."""
    here = Path(__file__).resolve().parent
    packaged = here / "_vectors"
    return packaged if packaged.is_dir() else here.parent / "vectors"


def model_slug(name_or_path: str | os.PathLike) -> str:
    """``HuggingFaceTB/SmolLM2-135M-Instruct`` and the embedded cache dir -> ``smollm2-135m-instruct``."""
    from rolevec_lmeval.embedded import EMBEDDED_SLUG, is_embedded

    if os.path.isdir(name_or_path) and is_embedded(name_or_path):
        return EMBEDDED_SLUG
    base = str(name_or_path).rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-") or "model"


class VectorStore:
    """Role vectors of one model: a directory (``<role>.safetensors``) or a single vector file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise RoleVecError(
                f"vectors={self.path} does not exist (a .safetensors file or a directory of them)"
            )
        if self.path.is_file() and self.path.suffix != SUFFIX:
            raise RoleVecError(f"vectors={self.path} must be a {SUFFIX} file or a directory")

    def roles(self) -> list[str]:
        if self.path.is_file():
            return [RoleVector.load(self.path).role]
        return sorted(p.name[: -len(SUFFIX)] for p in self.path.glob(f"*{SUFFIX}"))

    def load(self, role: str) -> RoleVector:
        if self.path.is_file():
            vec = _load_cached(str(self.path), self.path.stat().st_mtime_ns)
            if vec.role != role:
                raise RoleVecError(f"role={role!r} is not in {self.path}; available: {vec.role}")
            return vec
        file = self.path / f"{role}{SUFFIX}"
        if not file.is_file():
            available = ", ".join(self.roles()) or "(none)"
            raise RoleVecError(f"role={role!r} is unknown for vectors in {self.path}; available: {available}")
        return _load_cached(str(file), file.stat().st_mtime_ns)

    def index(self) -> dict[str, Any]:
        file = (self.path if self.path.is_dir() else self.path.parent) / "index.json"
        if not file.is_file():
            return {}
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise RoleVecError(f"{file} is not valid JSON ({exc})") from None
        return data.get("roles", data) if isinstance(data, dict) else {}

    def recommended(self, role: str) -> dict[str, Any]:
        entry = self.index().get(role, {})
        return entry if isinstance(entry, dict) else {}


@cache
def _load_cached(path: str, mtime_ns: int) -> RoleVector:
    return RoleVector.load(path)


def default_store(name_or_path: str | os.PathLike) -> VectorStore | None:
    """The shipped vectors for this model, or None when none are shipped."""
    path = shipped_vectors_root() / model_slug(name_or_path)
    return VectorStore(path) if path.is_dir() else None
