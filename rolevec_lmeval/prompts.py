"""Prompt sets: the shipped per-role JSONL files, user JSON/JSONL files, the roles index, sampling, hashing.

A prompt file is JSONL (one ``{"instruction": ...}`` object a line) or JSON (a list of such objects, or of
strings). The authors' split files (``target_train_<role>.json``, ``base_train.json``) are accepted as they
are, so ``--prompts`` may point at our ``prompts/data`` directory or at a copy of the authors' splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from rolevec_lmeval.errors import RoleVecError

PROMPTS_ROOT = Path(__file__).resolve().with_name("prompts")
DATA_DIR = PROMPTS_ROOT / "data"
ROLES_FILE = PROMPTS_ROOT / "roles.json"
BASE = "base"
FIELD = "instruction"
# File names tried, in order, for a role (or "base") inside a prompt directory.
_ROLE_NAMES = ("{role}.jsonl", "{role}.json", "target_train_{role}.json")
_BASE_NAMES = ("base.jsonl", "base.json", "base_train.json")


@cache
def roles_index() -> dict[str, dict[str, Any]]:
    """role -> {"name", "domain", "paper"} from ``prompts/roles.json`` (in file order)."""
    try:
        return dict(json.loads(ROLES_FILE.read_text())["roles"])
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise RoleVecError(f"roles index {ROLES_FILE} is missing or invalid ({exc})") from None


def all_roles(paper_only: bool = False) -> list[str]:
    """Every role of the index (file order); ``paper_only`` drops the extra history roles."""
    return [r for r, info in roles_index().items() if info.get("paper", True) or not paper_only]


def available_roles(directory: str | os.PathLike | None) -> list[str]:
    """Roles of a prompt directory: the index for the shipped sets; else the role files found (index order
    first; in the authors' split directory only ``target_train_<role>.json`` counts)."""
    if directory is None or Path(directory).resolve() == DATA_DIR:
        return all_roles()
    directory = Path(directory)
    if not directory.is_dir():
        raise RoleVecError(f"--prompts {directory} is not a directory")
    files = [f for f in directory.iterdir() if f.suffix in (".json", ".jsonl") and f.name not in _BASE_NAMES]
    authors = [f for f in files if f.name.startswith("target_train_")]  # the authors' split directory
    found = {f.name.rsplit(".", 1)[0].removeprefix("target_train_") for f in authors or files}
    found.discard(BASE)
    order = [r for r in all_roles() if r in found]
    return order + sorted(found - set(order))


def resolve_roles(spec: str | Sequence[str], known: Sequence[str] | None = None) -> list[str]:
    """``"all"``, ``"paper"`` or ``"chemist,lawyer"`` -> a de-duplicated list of known role names."""
    known = list(known) if known is not None else all_roles()
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if items == ["all"]:
        return known
    if items == ["paper"]:
        return [r for r in all_roles(paper_only=True) if r in known]
    unknown = [r for r in items if r not in known]
    if not items or unknown:
        raise RoleVecError(
            f"--roles {','.join(unknown) or repr(spec)} is not valid; valid values: all, paper, "
            f"or a comma-separated list of: {', '.join(known)}"
        )
    return list(dict.fromkeys(items))


def load_prompt_file(path: str | os.PathLike) -> list[str]:
    """The instructions of a JSON or JSONL prompt file, in file order (empty strings are refused)."""
    path = Path(path)
    if not path.is_file():
        raise RoleVecError(f"prompt file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise RoleVecError(f"prompt file {path} is empty")
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise RoleVecError(f"prompt file {path} is not valid JSON or JSONL ({exc})") from None
    out: list[str] = []
    for i, rec in enumerate(records):
        value = rec.get(FIELD) if isinstance(rec, dict) else rec
        if not isinstance(value, str) or not value.strip():
            raise RoleVecError(
                f"prompt file {path}: record {i} has no non-empty {FIELD!r} string "
                f'(expected {{"{FIELD}": "..."}} objects or strings)'
            )
        out.append(value)
    if not out:
        raise RoleVecError(f"prompt file {path} has no prompts")
    return out


def find_prompt_file(directory: str | os.PathLike, role: str) -> Path:
    """``<dir>/<role>.jsonl`` (or ``.json``, or the authors' ``target_train_<role>.json``); base likewise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RoleVecError(f"--prompts {directory} is not a directory")
    names = _BASE_NAMES if role == BASE else tuple(n.format(role=role) for n in _ROLE_NAMES)
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise RoleVecError(f"no prompt file for {role!r} in {directory} (looked for: {', '.join(names)})")


def load_prompt_set(directory: str | os.PathLike | None, role: str) -> list[str]:
    """Prompts of ``role`` (or ``"base"``) from ``directory``; None = the shipped sets."""
    return load_prompt_file(find_prompt_file(DATA_DIR if directory is None else directory, role))


def prompt_set_name(directory: str | os.PathLike | None) -> str:
    """``"rolevec"`` for the shipped sets, else the directory's name (recorded in vector metadata)."""
    if directory is None or Path(directory).resolve() == DATA_DIR:
        return "rolevec"
    return Path(directory).resolve().name


def sample_prompts(prompts: Sequence[str], n: int | None, seed: int, name: str) -> list[str]:
    """``n`` prompts drawn without replacement, seeded by ``(seed, name)``; file order is kept.

    Seeding by name makes a role's sample independent of which other roles are extracted.
    ``n=None`` keeps every prompt.
    """
    if n is None:
        return list(prompts)
    if n < 1:
        raise RoleVecError(f"--n {n} is not valid; it must be >= 1")
    if len(prompts) < n:
        raise RoleVecError(
            f"{name!r} has {len(prompts)} prompts, fewer than --n {n}; pass --n {len(prompts)} or less"
        )
    keep = sorted(random.Random(f"{seed}/{name}").sample(range(len(prompts)), n))
    return [prompts[i] for i in keep]


def prompt_sha256(prompts: Sequence[str]) -> str:
    """sha256 of a prompt list (order-sensitive; the canonical JSON of the strings, one a line)."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(json.dumps(p, ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()
