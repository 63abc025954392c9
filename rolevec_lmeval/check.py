"""``rolevec check``: fail CI when steering results regress against a stored lm_eval result.

    rolevec check --baseline tests/regression/smollm2-135m-instruct --results out/ [--max-drop 1.0]

Task by task (lm_eval groups and their subtasks), a drop of more than ``--max-drop`` points (metric x100)
is a regression when it is also significant at ``--alpha``: an exact one-sided McNemar test on the questions
both runs answered (0/1 scores from ``--log_samples``), a one-sided paired t-test (other per-sample scores),
or a z-test on lm_eval's standard errors when samples were not logged; with neither, the drop alone decides.
Prints a Markdown table; exit status 0 = no regression, 1 = regression, 2 = unusable input.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.results import Run, add_metric_args, find_result_files, load_run

if TYPE_CHECKING:
    import argparse

    import pandas as pd


def load_one(path: str | Path, option: str) -> Run:
    """The single results file at ``path`` (a file or an --output_path directory holding one run)."""
    try:
        files = find_result_files([path])
    except RoleVecError as exc:
        raise RoleVecError(f"{option}: {exc}") from None
    if len(files) != 1:
        names = ", ".join(str(f) for f in files)
        raise RoleVecError(f"{option} {path} holds {len(files)} results files ({names}); pass one file")
    return load_run(files[0])


def paired_test(base: pd.Series, new: pd.Series, higher_is_better: bool) -> tuple[float, str]:
    """One-sided p-value that ``new`` is worse than ``base`` on the same questions, and the test's name."""
    from scipy import stats

    sign = 1.0 if higher_is_better else -1.0
    diff = (new - base) * sign
    if base.isin([0.0, 1.0]).all() and new.isin([0.0, 1.0]).all():
        worse, better = int((diff < 0).sum()), int((diff > 0).sum())
        if worse + better == 0:
            return 1.0, "McNemar"
        return float(stats.binomtest(worse, worse + better, 0.5, alternative="greater").pvalue), "McNemar"
    if len(diff) < 2 or diff.std() == 0:
        return (0.0 if diff.mean() < 0 else 1.0), "paired t"
    return float(stats.ttest_1samp(diff, 0.0, alternative="less").pvalue), "paired t"


def compare(base: Run, new: Run, metric: str = "acc", filt: str = "none", max_drop: float = 1.0,
            alpha: float = 0.05) -> pd.DataFrame:
    """One row per task of the baseline: scores (x100), drop, test, p-value and verdict."""
    import pandas as pd
    from scipy import stats

    tasks = [t for t in base.tasks() if base.has(t, metric, filt)]
    if not tasks:
        raise RoleVecError(f"{base.path}: no task has metric '{metric},{filt}'")
    missing = [t for t in tasks if not new.has(t, metric, filt)]
    if missing:
        raise RoleVecError(f"--results {new.path} lacks baseline tasks (or their '{metric},{filt}'): "
                           f"{', '.join(missing)}")
    rows: list[dict[str, Any]] = []
    for task in tasks:
        hib = base.higher_is_better(task, metric)
        sb, sn = base.samples(task, metric, filt), new.samples(task, metric, filt)
        if sb is not None and sn is not None:
            sb, sn = sb.align(sn, join="inner")
        if sb is not None and sn is not None and len(sb):
            vb, vn, n = float(sb.mean()), float(sn.mean()), len(sb)
            p, test = paired_test(sb, sn, hib)
        else:
            vb, vn = base.value(task, metric, filt), new.value(task, metric, filt)
            n = min(base.n(task), new.n(task))
            eb, en = base.stderr(task, metric, filt), new.stderr(task, metric, filt)
            se = math.hypot(eb, en) if eb is not None and en is not None else 0.0
            z = ((vb - vn) if hib else (vn - vb)) / se if se > 0 else math.nan
            p, test = (float(stats.norm.sf(z)), "z (stderr)") if se > 0 else (math.nan, "none")
        drop = ((vb - vn) if hib else (vn - vb)) * 100
        if drop > max_drop:
            verdict = "REGRESSION" if math.isnan(p) or p <= alpha else "drop, n.s."
        else:
            verdict = "better" if -drop > max_drop else "ok"
        rows.append(dict(task=task, n=n, baseline=vb * 100, results=vn * 100, drop=drop, test=test, p=p,
                         verdict=verdict))
    return pd.DataFrame(rows)


def notes(base: Run, new: Run) -> list[str]:
    """Refuse runs of different models; describe other differences worth knowing."""
    if base.model != new.model:
        raise RoleVecError(f"--baseline {base.path} is model {base.model!r} but --results {new.path} is "
                           f"{new.model!r}; compare runs of one model")
    out = []
    if (base.role, base.persona, base.config) != (new.role, new.persona, new.config):
        out.append(f"steering differs: baseline {base.role or base.persona or '-'} {base.config}, "
                   f"results {new.role or new.persona or '-'} {new.config}")
    for task in base.leaves():
        if task in new.data["results"] and base.n(task) != new.n(task):
            out.append(f"{task}: {base.n(task)} vs {new.n(task)} questions (--limit differs); "
                       "compared on the questions both answered where samples were logged")
    versions = new.data.get("versions") or {}
    changed = [t for t, v in (base.data.get("versions") or {}).items() if t in versions and versions[t] != v]
    if changed:
        out.append(f"task versions differ: {', '.join(changed)}")
    return out


def add_parser(subparsers: Any) -> None:
    """Register ``rolevec check``."""
    p = subparsers.add_parser(
        "check", help="CI regression check of lm_eval results against a stored baseline",
        description="Compare a new lm_eval result with a stored baseline task by task; exit 1 when a drop of "
                    "more than --max-drop points is significant (paired test on logged samples, else "
                    "standard errors), 0 otherwise, 2 on unusable input.")
    p.add_argument("--baseline", required=True, metavar="BASE", help="stored results JSON (or its directory)")
    p.add_argument("--results", required=True, metavar="NEW", help="new results JSON (or --output_path dir)")
    p.add_argument("--max-drop", type=float, default=1.0,
                   help="largest tolerated drop in points, metric x100 (default: 1.0)")
    add_metric_args(p)
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_drop < 0 or not math.isfinite(args.max_drop):
        raise RoleVecError(f"--max-drop={args.max_drop} must be a finite number >= 0")
    if not 0 < args.alpha < 1:
        raise RoleVecError(f"--alpha={args.alpha} must be between 0 and 1")
    base, new = load_one(args.baseline, "--baseline"), load_one(args.results, "--results")
    remarks = notes(base, new)
    table = compare(base, new, args.metric, args.filt, args.max_drop, args.alpha)
    print(f"rolevec check: {base.model}, metric {args.metric},{args.filt}")
    print(f"baseline: {base.path}\nresults:  {new.path}\n")
    print(table.to_markdown(index=False, floatfmt=".3g"))
    for remark in remarks:
        print(f"note: {remark}")
    bad = table[table.verdict == "REGRESSION"]
    print(f"\n{len(bad)} regression(s) in {len(table)} task(s) (max drop {args.max_drop:g} points, "
          f"alpha {args.alpha:g})" + (f": {', '.join(bad.task)}" if len(bad) else ""))
    return 1 if len(bad) else 0
