"""``rolevec report``: leaderboard, role x domain heatmaps and the cross-model view from lm_eval results.

    rolevec report out/base out/persona_chemist out/chemist_L12 ... -o report/

Runs of one (model, role, persona, steering config) are merged (per task, the run with the most
questions wins; the newest on ties). Per-domain
scores are the question-weighted mean over the MMLU subject tasks of that domain (roles.json), as lm_eval's
groups aggregate. Deltas are paired over the questions both runs answered when samples were logged
(``--log_samples``; those also give the confidence intervals), else computed from the per-task scores.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.results import Run, add_metric_args, load_runs, roles_index

if TYPE_CHECKING:
    import argparse

    import pandas as pd

KINDS = {"base": 0, "persona": 1, "steered": 2}


@dataclass
class Entry:
    """The runs of one (model, role, persona, config): leaf task -> the run with most questions on it."""

    model: str
    kind: str
    role: str
    persona: str
    config: str
    leaves: dict[str, Run] = field(default_factory=dict)


def merge(runs: list[Run]) -> list[Entry]:
    entries: dict[tuple, Entry] = {}
    for run in sorted(runs, key=lambda r: r.date):
        key = (run.model, run.kind, run.role, run.persona, run.config)
        entry = entries.setdefault(key, Entry(*key))
        for leaf in run.leaves():
            if leaf not in entry.leaves or run.n(leaf) >= entry.leaves[leaf].n(leaf):
                entry.leaves[leaf] = run
    return list(entries.values())


def score(entry: Entry, leaves: list[str], metric: str, filt: str) -> tuple[float, int, pd.Series | None]:
    """(score, n, per-sample scores or None) over ``leaves``, weighted by questions."""
    import pandas as pd

    samples = [entry.leaves[t].samples(t, metric, filt) for t in leaves]
    if leaves and all(s is not None for s in samples):
        s = pd.concat(samples)
        return (float(s.mean()) if len(s) else math.nan), len(s), s
    n = [entry.leaves[t].n(t) for t in leaves]
    values = [entry.leaves[t].value(t, metric, filt) for t in leaves]
    total = sum(n)
    return (sum(v * k for v, k in zip(values, n, strict=True)) / total if total else math.nan), total, None


def interval(s: pd.Series | None, level: float, wilson: bool = True) -> tuple[float, float]:
    """CI of the mean of ``s``: Wilson for 0/1 scores (if ``wilson``), else a t interval."""
    from scipy import stats

    if s is None or len(s) < (1 if wilson else 2):
        return math.nan, math.nan
    if wilson and s.isin([0.0, 1.0]).all():
        ci = stats.binomtest(int(s.sum()), len(s)).proportion_ci(level, method="wilson")
        return ci.low, ci.high
    mean, sem = float(s.mean()), float(s.sem()) if len(s) > 1 else math.nan
    if not sem > 0:
        return (mean, mean) if sem == 0 else (math.nan, math.nan)
    lo, hi = stats.t.interval(level, len(s) - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


def delta(a: Entry, b: Entry | None, domain_leaves: list[str], metric: str, filt: str,
          level: float) -> tuple[float, float, float, float]:
    """(a - b, CI low, CI high, b's score) over the tasks (and, if logged, questions) both have."""
    import pandas as pd

    nan = (math.nan,) * 4
    if b is None:
        return nan
    common = [t for t in domain_leaves if t in a.leaves and t in b.leaves]
    if not common:
        return nan
    va, _, sa = score(a, common, metric, filt)
    vb, _, sb = score(b, common, metric, filt)
    if sa is None or sb is None:
        return va - vb, math.nan, math.nan, vb
    sa, sb = sa.align(sb, join="inner")
    if not len(sa):
        return nan
    lo, hi = interval(sa - sb, level, wilson=False)
    if pd.concat([sa, sb]).isin([0.0, 1.0]).all():  # 0/1 scores: a difference lies in [-1, 1]
        lo, hi = max(lo, -1.0), min(hi, 1.0)
    return float((sa - sb).mean()), lo, hi, float(sb.mean())


def leaderboard(entries: list[Entry], metric: str = "acc", filt: str = "none",
                level: float = 0.95) -> pd.DataFrame:
    """One row per (entry, domain): score, CI, deltas vs the model's unsteered and persona runs (x100)."""
    import pandas as pd

    index = roles_index()
    subject_domain = {f"mmlu_{s}": d for d, spec in index["domains"].items() for s in spec["subjects"]}
    role_domain = {r: spec["domain"] for r, spec in index["roles"].items()}
    rows: list[dict[str, Any]] = []
    for e in entries:
        for domain in index["domains"]:
            leaves = sorted(t for t in e.leaves if subject_domain.get(t) == domain)
            if not leaves:
                continue
            value, n, s = score(e, leaves, metric, filt)
            lo, hi = interval(s, level)
            bases = [b for b in entries if b.model == e.model and b.kind == "base" and b is not e]
            base = max(bases, key=lambda b: sum(t in b.leaves for t in leaves), default=None)
            persona = next((p for p in entries if e.kind == "steered" and p.model == e.model
                            and p.kind == "persona" and p.persona == e.role), None)
            db, db_lo, db_hi, base_value = delta(e, base, leaves, metric, filt, level)
            dp, dp_lo, dp_hi, _ = delta(e, persona, leaves, metric, filt, level)
            roles = e.role.split("+") if e.role else []
            rows.append(dict(
                model=e.model, kind=e.kind, role=e.role or (f"persona:{e.persona}" if e.persona else "-"),
                config=e.config, domain=domain, in_domain=any(role_domain.get(r) == domain for r in roles),
                n=n, score=value, score_lo=lo, score_hi=hi, d_base=db, d_base_lo=db_lo, d_base_hi=db_hi,
                rel_base_pct=db / base_value if base_value else math.nan,
                d_persona=dp, d_persona_lo=dp_lo, d_persona_hi=dp_hi,
            ))
    df = pd.DataFrame(rows)
    if df.empty:
        raise RoleVecError(f"no run has an MMLU subject task of a roles.json domain (metric {metric!r})")
    for col in df.columns[df.columns.str.startswith(("score", "d_", "rel_"))]:
        df[col] = df[col] * 100
    keys = ["model", "role", "config"]  # sorted: per model base, persona, then by in-domain gain
    gain = df[df.in_domain].groupby(keys).d_base.mean().rename("gain")
    df = df.join(gain, on=keys).assign(k=df.kind.map(KINDS))
    df = df.sort_values(["model", "k", "gain", "role", "config"], ascending=[1, 1, 0, 1, 1], kind="stable")
    return df.drop(columns=["k", "gain"]).reset_index(drop=True)


def _cell(v: float, lo: float, hi: float, bold: bool, *, sign: bool) -> str:
    if math.isnan(v):
        return ""
    text = f"{v:+.1f}" if sign else f"{v:.1f}"
    text += "" if math.isnan(lo) else f" [{lo:.1f}, {hi:.1f}]"
    return f"**{text}**" if bold else text


def wide(df: pd.DataFrame, col: str, sign: bool) -> pd.DataFrame:
    """Runs x domains, cells ``value [lo, hi]``; in-domain cells bold."""
    parts = df[[col, f"{col}_lo", f"{col}_hi", "in_domain"]].itertuples(index=False)
    cells = df.assign(cell=[_cell(*r, sign=sign) for r in parts])
    keys = ["model", "role", "config"]
    table = cells.pivot(index=keys, columns="domain", values="cell")
    table = table.reindex(df.drop_duplicates(keys).set_index(keys).index)
    return table[[d for d in roles_index()["domains"] if d in table.columns]].fillna("").reset_index()


def plot_matrix(values: Any, rows: list[str], cols: list[str], labels: Any, path: Path, title: str,
                bar: str, limit: float, outline: Any = None) -> Path:
    """A diverging heatmap (PNG) with a text label per cell; ``outline`` cells are boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(max(5.0, 2.4 + 0.9 * len(cols)), 1.8 + 0.4 * len(rows)))
    im = ax.imshow(values, cmap="RdBu", norm=TwoSlopeNorm(0, -limit, limit), aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), text in np.ndenumerate(labels):
        boxed = outline is not None and outline[i, j]
        dark = abs(values[i, j]) > 0.6 * limit if np.isfinite(values[i, j]) else False
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black",
                fontweight="bold" if boxed else "normal")
        if boxed:
            ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, lw=2.5, ec="black"))
    fig.colorbar(im, ax=ax, label=bar)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heatmap(df: pd.DataFrame, model: str, path: Path) -> Path | None:
    """Role x domain % improvement over the unsteered run; in-domain cells outlined."""
    sub = df[(df.model == model) & (df.kind == "steered")].copy()
    if sub.rel_base_pct.isna().all():
        return None
    multi = sub.groupby("role").config.transform("nunique") > 1
    sub["row"] = sub.role.where(~multi, sub.role + " (" + sub.config + ")")
    grid = sub.pivot(index="row", columns="domain", values="rel_base_pct")
    grid = grid[[d for d in roles_index()["domains"] if d in grid.columns]]
    inside = sub.pivot(index="row", columns="domain", values="in_domain").reindex_like(grid).eq(True)
    labels = grid.map(lambda v: "" if math.isnan(v) else f"{v:+.0f}")
    return plot_matrix(grid.to_numpy(float), list(grid.index), list(grid.columns), labels.to_numpy(), path,
                       f"{model}\n% improvement vs unsteered (boxed: in-domain)", "% improvement",
                       max(float(grid.abs().max().max()), 1e-9), inside.to_numpy())


def stars(p: float) -> str:
    return "***" if p <= 0.001 else "**" if p <= 0.01 else "*" if p <= 0.05 else ""


def cross_model(df: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of per-(role, domain) % improvements between every pair of models.

    Per (model, role) the config with the largest mean in-domain improvement is used.
    """
    import pandas as pd
    from scipy import stats

    steered = df[df.kind == "steered"].dropna(subset=["rel_base_pct"])
    best = steered[steered.in_domain].groupby(["model", "role", "config"]).rel_base_pct.mean()
    best = best.reset_index().sort_values("rel_base_pct", ascending=False).drop_duplicates(["model", "role"])
    chosen = steered.merge(best[["model", "role", "config"]], on=["model", "role", "config"])
    series = {m: g.set_index(["role", "domain"]).rel_base_pct for m, g in chosen.groupby("model")}
    rows = []
    models = sorted(series)
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            x, y = series[a].align(series[b], join="inner")
            with warnings.catch_warnings():  # constant input: rho is nan, with a warning
                warnings.simplefilter("ignore")
                rho, p = stats.spearmanr(x, y) if len(x) >= 3 else (math.nan, math.nan)
            rows.append(dict(model_a=a, model_b=b, n=len(x), rho=float(rho), p=float(p), stars=stars(p)))
    return pd.DataFrame(rows, columns=["model_a", "model_b", "n", "rho", "p", "stars"])


def cross_model_png(cm: pd.DataFrame, path: Path) -> Path:
    import numpy as np

    models = sorted(set(cm.model_a) | set(cm.model_b))
    k = {m: i for i, m in enumerate(models)}
    rho, label = np.eye(len(models)), np.full((len(models),) * 2, "", dtype=object)
    for r in cm.itertuples():
        for i, j in ((k[r.model_a], k[r.model_b]), (k[r.model_b], k[r.model_a])):
            rho[i, j], label[i, j] = r.rho, "" if math.isnan(r.rho) else f"{r.rho:.2f}{r.stars}"
    return plot_matrix(rho, models, models, label, path, "Spearman rho of steering gains across models\n"
                       "* p<=.05  ** p<=.01  *** p<=.001", "Spearman rho", 1.0)


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)


def write_report(paths: list[str], out: Path, metric: str = "acc", filt: str = "none",
                 level: float = 0.95) -> list[Path]:
    """Write leaderboard.{md,csv}, heatmap_<model>.png and cross_model.{csv,png}; returns the files."""
    import pandas as pd

    runs = load_runs(paths)
    df = leaderboard(merge(runs), metric, filt, level)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "leaderboard.csv", out / "leaderboard.md"]
    df.to_csv(files[0], index=False, float_format="%.4g")
    pct = f"{level:.0%}"
    md = [
        "# rolevec report", "",
        f"Metric `{metric}` (filter `{filt}`) x100 per roles.json domain (question-weighted mean of its MMLU "
        "subjects); deltas in points. **Bold**: the role's own domain. Brackets: "
        f"{pct} CI where samples were logged (Wilson for scores; paired t over the same questions for "
        "deltas).",
        "", "## Score", "", wide(df, "score", sign=False).pipe(_md),
        "", "## Δ vs the model's unsteered run", "",
        wide(df[df.kind != "base"], "d_base", sign=True).pipe(_md),
    ]
    with_persona = df[df.groupby(["model", "role", "config"]).d_persona.transform("count") > 0]
    if len(with_persona):
        md += ["", "## Δ vs the model's persona run (persona = the role)", "",
               wide(with_persona, "d_persona", sign=True).pipe(_md)]
    maps = {m: heatmap(df, m, out / f"heatmap_{m}.png") for m in df.model.unique()}
    md += ["", "## % improvement over the unsteered run (role x domain)", ""]
    md += [f"![{p.stem}]({p.name})\n" if p else f"{m}: no heatmap (needs steered runs and an unsteered "
           "run with a non-zero score)\n" for m, p in maps.items()]
    files += [p for p in maps.values() if p]
    cm = cross_model(df)
    if cm.empty and len(maps) > 1:
        md += ["", "Cross-model view: needs the heatmap data of at least two models."]
    elif not cm.empty:
        cm.to_csv(out / "cross_model.csv", index=False, float_format="%.4g")
        files += [out / "cross_model.csv", cross_model_png(cm, out / "cross_model.png")]
        md += ["", "## Cross-model agreement of steering gains", "",
               "Spearman correlation of per-(role, domain) % improvements (per model and role the config "
               "with the best in-domain gain); * p <= .05, ** p <= .01, *** p <= .001.", "",
               cm.assign(rho=cm.rho.map("{:.2f}".format), p=cm.p.map("{:.2g}".format)).pipe(_md), "",
               "![cross-model](cross_model.png)"]
    listing = [dict(file=str(r.path), model=r.model, kind=r.kind, role=r.role or r.persona or "-",
                    config=r.config, tasks=len(r.leaves()), samples="yes" if r.samples_files else "no")
               for r in runs]
    md += ["", "## Runs", "", pd.DataFrame(listing).pipe(_md), ""]
    files[1].write_text("\n".join(md), encoding="utf-8")
    return files


def add_parser(subparsers: Any) -> None:
    """Register ``rolevec report``."""
    p = subparsers.add_parser(
        "report", help="leaderboard, heatmaps and cross-model view from lm_eval results",
        description="Compare lm_eval results of any number of runs (roles, configs, models): leaderboard "
                    "(Markdown + CSV), role x domain heatmaps (PNG) and cross-model Spearman correlations.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="lm_eval results JSON files or --output_path directories (searched recursively)")
    p.add_argument("-o", "--out", type=Path, default=Path("rolevec-report"), help="output directory")
    add_metric_args(p)
    p.add_argument("--confidence", type=float, default=0.95, help="CI level (default: 0.95)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.confidence < 1:
        raise RoleVecError(f"--confidence={args.confidence} must be between 0 and 1")
    for f in write_report(args.paths, args.out, args.metric, args.filt, args.confidence):
        print(f)
    return 0
