"""``summary.md`` and per-role heatmaps (layer x alpha, colour = in-domain Delta acc) of a sweep."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rolevec_lmeval.sweep_select import SELECTION_SPLIT, persona_row


def _pt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _delta(row: dict[str, Any], side: str, p: bool = True) -> str:
    if row is None or row.get(f"n_{side}", 0) == 0:
        return "n/a"
    out = f"{_pt(row[f'delta_{side}'])} [{_pt(row[f'delta_{side}_lo'])}, {_pt(row[f'delta_{side}_hi'])}]"
    if p:
        holm = row.get(f"p_{side}_holm")
        adj = "" if holm is None or (isinstance(holm, float) and math.isnan(holm)) else f", Holm {holm:.2g}"
        out += f" (p {row[f'p_{side}']:.2g}{adj})"
    return out


def config_text(row: dict[str, Any]) -> str:
    if row["intervention"] == "ablate":
        return f"ablate l{int(row['layer'])} p{int(row['position'])}"
    return f"{row['intervention']} l{int(row['layer'])} p{int(row['position'])} α={row['alpha']:g}"


def summary_markdown(df: pd.DataFrame, picks: dict[str, dict], meta: dict[str, Any], tolerance: float,
                     heatmaps: dict[str, str]) -> str:
    """The summary table (validation-selected config per role) and, separately, test-split numbers."""
    n_points = int((df["kind"] == "steer").sum()) if len(df) else 0
    lines = [f"# rolevec sweep: {meta.get('model_slug', '?')}", "",
             f"- model: `{meta.get('model', '?')}` ({meta.get('dtype', '?')}); "
             f"vectors: `{meta.get('vectors', '?')}`",
             f"- questions: limit={meta.get('limit')} per subject, off-domain sample="
             f"{meta.get('off_sample')} per subject (seed {meta.get('seed')}); grid points: {n_points}",
             f"- selection: best in-domain {SELECTION_SPLIT} accuracy with off-domain drop <= {tolerance:g} "
             "points, ties -> smaller |α|; Δ in accuracy points vs the unsteered model on the same "
             "questions, 95% paired-bootstrap CI, exact McNemar p, Holm over the role's grid", ""]
    lines += ["| role | best config | in-domain acc (base) | in-domain Δ [95% CI] (p) "
              "| off-domain Δ [95% CI] | persona Δ in / off | n in / off |", "|---|---|---|---|---|---|---|"]
    roles = sorted(set(df["role"])) if len(df) else []
    for role in roles:
        row, persona = picks.get(role), persona_row(df, role)
        per = f"{_pt(persona['delta_in'])} / {_pt(persona['delta_off'])}" if persona else "n/a"
        if row is None:
            lines.append(f"| {role} | none within tolerance | | | | {per} | |")
            continue
        acc = f"{100 * row['acc_in']:.1f} ({100 * row['base_in']:.1f})"
        lines.append(f"| {role} | {config_text(row)} | {acc} | {_delta(row, 'in')} "
                     f"| {_delta(row, 'off', p=False)} | {per} | {int(row['n_in'])} / {int(row['n_off'])} |")
    sig = df[(df["kind"] == "steer") & (df["split"] == SELECTION_SPLIT)] if len(df) else df
    if len(sig):
        n_up = int(((sig["p_in_holm"] < 0.05) & (sig["delta_in"] > 0)).sum())
        n_down = int(((sig["p_in_holm"] < 0.05) & (sig["delta_in"] < 0)).sum())
        lines += ["", f"Over all {len(sig)} {SELECTION_SPLIT} grid points: {n_up} significant in-domain "
                  f"gains and {n_down} significant losses after Holm correction (alpha 0.05)."]
    test = df[(df["split"] == "test") & (df["kind"] == "steer")] if len(df) else df
    if len(test):
        lines += ["", "## Test split (reported only; never used for selection)", "",
                  "| role | config (selected on validation) | in-domain Δ [95% CI] (p) | off-domain Δ "
                  "| persona Δ in / off |",
                  "|---|---|---|---|---|"]
        for role, row in sorted(picks.items()):
            hit = test[test["key"] == row["key"].replace(f"{SELECTION_SPLIT}|", "test|", 1)]
            persona = persona_row(df, role, "test")
            per = f"{_pt(persona['delta_in'])} / {_pt(persona['delta_off'])}" if persona else "n/a"
            cell = _delta(hit.iloc[0].to_dict(), "in") if len(hit) else "not evaluated on test"
            off = _delta(hit.iloc[0].to_dict(), "off", p=False) if len(hit) else ""
            lines.append(f"| {role} | {config_text(row)} | {cell} | {off} | {per} |")
    if heatmaps:
        lines += ["", "## Heatmaps (in-domain Δ acc, validation; □ = selected)", ""]
        lines += [f"![{role}]({path})" for role, path in sorted(heatmaps.items())]
    return "\n".join(lines) + "\n"


def heatmap(df: pd.DataFrame, role: str, pick: dict | None, path: Path,
            split: str = SELECTION_SPLIT) -> Path | None:
    """PNG: one panel per position, layers x alphas of ``add`` (+ an 'ablate' column when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = df[(df["role"] == role) & (df["kind"] == "steer") & (df["split"] == split)]
    if g.empty:
        return None
    positions = sorted(set(g["position"]), reverse=True)
    layers = sorted(set(g["layer"]))
    cols = [("add", a) for a in sorted(set(g.loc[g["intervention"] == "add", "alpha"]))]
    cols += [(iv, a) for iv in ("add+ablate", "ablate")
             for a in sorted(set(g.loc[g["intervention"] == iv, "alpha"]))]
    vmax = max(0.01, float(np.nanmax(np.abs(g["delta_in"].to_numpy(dtype=float)))))
    size = (1.5 + 0.7 * len(cols) * len(positions), 1.0 + 0.35 * len(layers))
    fig, axes = plt.subplots(1, len(positions), figsize=size, squeeze=False)
    for ax, pos in zip(axes[0], positions, strict=True):
        grid = np.full((len(layers), len(cols)), np.nan)
        for _, r in g[g["position"] == pos].iterrows():
            grid[layers.index(r["layer"]), cols.index((r["intervention"], r["alpha"]))] = 100 * r["delta_in"]
        im = ax.imshow(grid, cmap="RdBu", vmin=-100 * vmax, vmax=100 * vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:+.0f}", ha="center", va="center", fontsize=7)
        if pick is not None and pick["position"] == pos:
            i, j = layers.index(pick["layer"]), cols.index((pick["intervention"], pick["alpha"]))
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
        names = {"add": "{:g}", "ablate": "abl", "add+ablate": "a+a {:g}"}
        ax.set_xticks(range(len(cols)), [names[iv].format(a) for iv, a in cols], fontsize=7)
        ax.set_yticks(range(len(layers)), [str(x) for x in layers], fontsize=7)
        ax.set_xlabel("α (add)")
        if pos == positions[0]:
            ax.set_ylabel("layer")
        ax.set_title(f"{role} pos {pos}", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), label="in-domain Δ acc (points)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
