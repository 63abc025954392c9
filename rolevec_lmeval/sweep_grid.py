"""The sweep grid: parsing and checking ``--layers/--positions/--alphas/--interventions/--shard``, the
points (one jsonl record each) and the work units they are computed in.

A *unit* is what the engine computes in one go: ``base`` (unsteered), ``persona`` (one role), ``add`` at
one (role, layer) — every position x alpha on the fast path — and ``ablate`` / ``add+ablate`` points
(hooked full forwards). Shards split the sorted unit list round-robin, so ``--shard i/n`` is
deterministic and the n shards together cover the grid exactly once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.interventions import INTERVENTIONS

KINDS = ("base", "persona", "steer")


@dataclass(frozen=True)
class Point:
    """One grid point = one record of ``sweep.jsonl``."""

    kind: str  # base | persona | steer
    role: str = ""
    layer: int = -1
    position: int = 0
    alpha: float = 0.0
    intervention: str = ""
    task: str = ""  # base records are per task

    def key(self, split: str) -> str:
        if self.kind == "base":
            return f"{split}|base|{self.task}"
        if self.kind == "persona":
            return f"{split}|{self.role}|persona"
        return f"{split}|{self.role}|{self.intervention}|l{self.layer}|p{self.position}|a{self.alpha:g}"


@dataclass
class Unit:
    """Points computed together; ``layer`` is the fast-path split layer for ``add`` units."""

    kind: str  # base | persona | add | hooked
    role: str = ""
    layer: int = -1
    points: list[Point] = field(default_factory=list)

    @property
    def sort_key(self) -> tuple:
        return (("base", "persona", "add", "hooked").index(self.kind), self.role, self.layer,
                [(p.intervention, p.position, p.alpha) for p in self.points])


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``4:26:2`` (Python range: stop exclusive), ``6,12,18`` or a mix; every layer in 0..n_layers-1."""
    out: list[int] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        if ":" in part:
            bits = part.split(":")
            if len(bits) not in (2, 3) or not all(re.fullmatch(r"-?\d+", b.strip()) for b in bits):
                raise RoleVecError(f"--layers: {part!r} is not start:stop[:step] (e.g. 4:26:2)")
            start, stop, step = (int(b) for b in (*bits, "1")[:3])
            if step <= 0:
                raise RoleVecError(f"--layers: step in {part!r} must be positive")
            out.extend(range(start, stop, step))
        elif re.fullmatch(r"-?\d+", part):
            out.append(int(part))
        else:
            raise RoleVecError(f"--layers: {part!r} is not an integer or start:stop[:step]")
    if not out:
        raise RoleVecError(f"--layers {spec!r} gives an empty grid; valid layers: 0..{n_layers - 1}")
    if bad := [x for x in out if not 0 <= x < n_layers]:
        raise RoleVecError(f"--layers: {bad} outside the model; valid: 0..{n_layers - 1}")
    return sorted(set(out))


def parse_positions(spec: str, n_positions: int) -> list[int]:
    """``-1,-2``: post-instruction token positions of the vector files (negative = from the end)."""
    try:
        out = [int(p) for p in str(spec).split(",") if p.strip()]
    except ValueError:
        raise RoleVecError(f"--positions {spec!r}: comma-separated integers expected (e.g. -1,-2)") from None
    if not out:
        raise RoleVecError(f"--positions {spec!r} gives an empty grid")
    if bad := [p for p in out if not -n_positions <= p < n_positions]:
        raise RoleVecError(f"--positions: {bad} out of range; valid: {-n_positions}..{n_positions - 1}")
    return list(dict.fromkeys(out))


def parse_alphas(spec: str) -> list[float]:
    """``0.5,1,2,4,8``: finite numbers (NaN / inf refused); 0 with ``add`` is the unsteered model."""
    out = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise RoleVecError(f"--alphas: {part!r} is not a number") from None
        if not math.isfinite(value):
            raise RoleVecError(f"--alphas: {part!r} is not finite (NaN / inf are refused)")
        out.append(value)
    if not out:
        raise RoleVecError(f"--alphas {spec!r} gives an empty grid (e.g. --alphas 0.5,1,2,4,8)")
    return list(dict.fromkeys(out))


def parse_interventions(spec: str) -> list[str]:
    out = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not out:
        raise RoleVecError(f"--interventions {spec!r} is empty; valid: {', '.join(INTERVENTIONS)}")
    if bad := [p for p in out if p not in INTERVENTIONS]:
        raise RoleVecError(f"--interventions: {', '.join(bad)} not valid; valid: {', '.join(INTERVENTIONS)}")
    return list(dict.fromkeys(out))


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``i/n`` with 1 <= i <= n (1-based, as job-array task ids); None -> (1, 1)."""
    if spec is None:
        return 1, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise RoleVecError(f"--shard {spec!r} is not i/n with 1 <= i <= n (e.g. 1/4 .. 4/4)")
    return int(m[1]), int(m[2])


def build_units(roles: list[str], layers: list[int], positions: list[int], alphas: list[float],
                interventions: list[str], base_tasks: list[str], persona: bool = True) -> list[Unit]:
    """All units of the grid, sorted. ``ablate`` ignores alpha (one point per layer x position)."""
    units = [Unit("base", points=[Point("base", task=t) for t in sorted(base_tasks)])]
    for role in roles:
        if persona:
            units.append(Unit("persona", role, points=[Point("persona", role)]))
        for layer in layers:
            if "add" in interventions:
                pts = [Point("steer", role, layer, pos, a, "add") for pos in positions for a in alphas
                       if a != 0]
                if pts:
                    units.append(Unit("add", role, layer, pts))
            for pos in positions:
                if "ablate" in interventions:
                    pt = Point("steer", role, layer, pos, 0.0, "ablate")
                    units.append(Unit("hooked", role, layer, [pt]))
                if "add+ablate" in interventions:
                    pts = [Point("steer", role, layer, pos, a, "add+ablate") for a in alphas]
                    units.extend(Unit("hooked", role, layer, [pt]) for pt in pts)
    return sorted(units, key=lambda u: u.sort_key)


def shard_units(units: list[Unit], shard: tuple[int, int]) -> list[Unit]:
    """Round-robin over the sorted units: shard i of n gets units i-1, i-1+n, ..."""
    i, n = shard
    return [u for j, u in enumerate(units) if j % n == i - 1]


def pending(units: list[Unit], done: set[str], split: str) -> list[Unit]:
    """Units with their already-recorded points removed (resume); empty units dropped."""
    out = []
    for u in units:
        pts = [p for p in u.points if p.key(split) not in done]
        if pts:
            out.append(Unit(u.kind, u.role, u.layer, pts))
    return out
