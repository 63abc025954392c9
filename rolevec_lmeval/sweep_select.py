"""From sweep records to statistics per grid point, the selected configuration per role, and index.json.

Selection uses validation records only: the highest in-domain accuracy among the steered points whose
off-domain accuracy drops by at most ``tolerance`` points against the unsteered model; ties go to the
smaller |alpha| (ablate, which has none, after all alphas; then smaller layer, then position -1 before -2,
then intervention name).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.sweep_stats import accuracy, bits, holm, paired

SELECTION_SPLIT = "validation"


def _aligned(rec: dict, tasks: list[str], base: dict[tuple[str, str], str]) -> tuple[np.ndarray, np.ndarray]:
    """0/1 arrays (steered, base) over the questions both evaluated, for ``tasks``."""
    s_all, b_all = [], []
    for task in tasks:
        s, b = rec["correct"].get(task), base.get((rec["split"], task))
        if s is None:
            continue
        if b is None:
            raise RoleVecError(f"no unsteered (base) record for task {task} on split {rec['split']}: run the "
                               "shard that holds the base unit, then `rolevec sweep --merge`")
        keep = [i for i, (x, y) in enumerate(zip(s, b, strict=True)) if x != "-" and y != "-"]
        s_all.append(bits("".join(s[i] for i in keep)))
        b_all.append(bits("".join(b[i] for i in keep)))
    if not s_all:
        return np.zeros(0, np.int8), np.zeros(0, np.int8)
    return np.concatenate(s_all), np.concatenate(b_all)


def analyse(records: list[dict], seed: int = 0) -> pd.DataFrame:
    """One row per steered / persona record: accuracies with CI, Delta vs base with CI, McNemar p, Holm p
    (family = one role's steered points on one split, in-domain and off-domain adjusted separately)."""
    base = {(r["split"], r["task"]): r["correct"][r["task"]] for r in records if r["kind"] == "base"}
    rows = []
    for rec in records:
        if rec["kind"] == "base":
            continue
        row = {k: rec[k] for k in ("key", "kind", "role", "split", "layer", "position", "alpha",
                                   "intervention", "method")}
        row["direction_sha256"] = rec.get("direction_sha256", "")
        for side in ("in", "off"):
            s, b = _aligned(rec, rec[f"{side}_tasks"], base)
            acc, bacc, pr = accuracy(s, seed), accuracy(b, seed), paired(s, b, seed)
            row.update({f"acc_{side}": acc.acc, f"acc_{side}_lo": acc.lo, f"acc_{side}_hi": acc.hi,
                        f"base_{side}": bacc.acc, f"n_{side}": acc.n, f"delta_{side}": pr.delta,
                        f"delta_{side}_lo": pr.lo, f"delta_{side}_hi": pr.hi, f"p_{side}": pr.p,
                        f"gained_{side}": pr.gained, f"lost_{side}": pr.lost})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for side in ("in", "off"):
        df[f"p_{side}_holm"] = np.nan
        steer = df["kind"] == "steer"
        for _, idx in df[steer].groupby(["split", "role"]).groups.items():
            df.loc[idx, f"p_{side}_holm"] = holm(df.loc[idx, f"p_{side}"].tolist())
    return df.sort_values(["split", "role", "kind", "intervention", "layer", "position", "alpha"],
                          ignore_index=True)


def select(df: pd.DataFrame, tolerance: float = 1.0) -> dict[str, dict[str, Any]]:
    """role -> the chosen validation row (as a dict); roles with no point within tolerance are absent."""
    if df.empty:
        return {}
    val = df[(df["split"] == SELECTION_SPLIT) & (df["kind"] == "steer")].copy()
    val = val[val["delta_off"].isna() | (val["delta_off"] >= -tolerance / 100 - 1e-12)]
    # ablate has no alpha: on ties it ranks after every add point (it is not the "smaller" intervention)
    val["abs_alpha"] = val["alpha"].abs().where(val["intervention"] != "ablate", np.inf)
    val["neg_position"] = -val["position"]
    out = {}
    for role, g in val.groupby("role"):
        g = g.sort_values(["acc_in", "abs_alpha", "layer", "neg_position", "intervention"],
                          ascending=[False, True, True, True, True])
        out[role] = g.iloc[0].drop(["abs_alpha", "neg_position"]).to_dict()
    return out


def persona_row(df: pd.DataFrame, role: str, split: str = SELECTION_SPLIT) -> dict[str, Any] | None:
    rows = df[(df["kind"] == "persona") & (df["role"] == role) & (df["split"] == split)]
    return None if rows.empty else rows.iloc[0].to_dict()


def _r(x: Any, nd: int = 4) -> Any:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd)


def index_entry(row: dict[str, Any], persona: dict[str, Any] | None, sweep: dict[str, Any]) -> dict:
    """The index.json entry for one role: config + validation numbers (never test numbers)."""
    val = {k: _r(row[k]) for k in ("acc_in", "base_in", "delta_in", "p_in", "p_in_holm",
                                   "acc_off", "base_off", "delta_off", "p_off", "p_off_holm")}
    val.update({"delta_in_ci": [_r(row["delta_in_lo"]), _r(row["delta_in_hi"])],
                "delta_off_ci": [_r(row["delta_off_lo"]), _r(row["delta_off_hi"])],
                "n_in": int(row["n_in"]), "n_off": int(row["n_off"]),
                "significant": bool(row["p_in_holm"] < 0.05 and row["delta_in"] > 0)})
    if persona is not None:
        val.update({"persona_delta_in": _r(persona["delta_in"]),
                    "persona_delta_off": _r(persona["delta_off"])})
    return {"layer": int(row["layer"]), "position": int(row["position"]), "alpha": float(row["alpha"]),
            "intervention": row["intervention"], "method": row["method"], "validation": val,
            "sweep": {**sweep, "direction_sha256": row.get("direction_sha256", "")}}


def write_index(path: str | os.PathLike, entries: dict[str, dict]) -> Path:
    """Merge ``entries`` into ``path`` (index.json, {"roles": {...}}), atomically; other roles are kept."""
    path = Path(path)
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RoleVecError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    roles = data.get("roles", {}) if isinstance(data, dict) else {}
    roles.update(entries)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    data = {**(data if isinstance(data, dict) else {}), "roles": dict(sorted(roles.items())),
            "written_by": "rolevec sweep", "updated": now}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".index.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    return path
