"""``rolevec sweep``: evaluate role-vector interventions over layers x positions x alphas; pick one per role.

    rolevec sweep --role chemist --layers 4:26:2 --positions -1,-2 --alphas 0.5,1,2,4,8 \\
        --interventions add,ablate --split validation --out runs/chemist

Every grid point is scored on the role's in-domain and off-domain MMLU subjects with lm-eval's own task
objects, plus the unsteered model and the persona prompt once each. Records go to ``DIR/sweep.jsonl``
(a re-run skips recorded points); then ``summary.md``, one heatmap per role and the selected config per
role in ``<vectors>/index.json``. ``--shard i/n`` writes ``sweep.shard-i-of-n.jsonl`` for a job array;
``rolevec sweep --merge --out DIR`` joins the shards and writes the outputs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from rolevec_lmeval.errors import RoleVecError

META = "meta.json"
RECORDS = "sweep.jsonl"
SETTINGS = ("model_slug", "dtype", "limit", "off_sample", "seed", "method")


def add_parser(subparsers: Any) -> None:
    """Register ``rolevec sweep``."""
    p = subparsers.add_parser("sweep", help="sweep layers x positions x alphas; select a config per role",
                              description=__doc__.split("\n\n")[0].replace("``", ""))
    # let "--positions -1,-2" / "--alphas -2,4" through as values (argparse knows only "-1" as a number)
    p._negative_number_matcher = re.compile(r"^-\d*\.?\d+(?:,\s*-?\d*\.?\d+)*$")
    p.add_argument("--model", help="HF model id or directory (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--role", default="all", help="role name, comma list, or 'all' (the 29 paper roles)")
    p.add_argument("--layers", default="4:26:2",
                   help="start:stop[:step] (stop exclusive), comma list, or 'best' (each role's selected "
                        "layer from DIR's records)")
    p.add_argument("--positions", default="-1", help="post-instruction positions, e.g. -1,-2")
    p.add_argument("--alphas", default="0.5,1,2,4,8", help="coefficients for add / add+ablate")
    p.add_argument("--interventions", default="add,ablate", help="comma list of add, ablate, add+ablate")
    p.add_argument("--method", default="raw", choices=["raw", "centered"], help="vector variant")
    p.add_argument("--split", default="validation", choices=["validation", "test", "dev"],
                   help="MMLU split (selection only ever uses validation)")
    p.add_argument("--limit", type=int, help="at most N questions per subject (first N, as lm_eval --limit)")
    p.add_argument("--off-sample", type=int, help="off-domain: a seeded sample of N questions per subject")
    p.add_argument("--seed", type=int, default=0, help="seed of the off-domain sample and the bootstrap")
    p.add_argument("--tasks", help="in-domain lm-eval tasks (comma list) instead of the role's domain")
    p.add_argument("--off-tasks", help="off-domain tasks instead of the other paper domains ('none': skip)")
    p.add_argument("--no-persona", action="store_true", help="skip the persona-prompt baseline")
    p.add_argument("--shard", help="i/n (1-based): compute only this deterministic part of the grid")
    p.add_argument("--merge", nargs="*", metavar="SRC", help="join shard jsonl files (default: DIR's)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumable)")
    p.add_argument("--vectors", help="vector directory (default: the shipped vectors for the model)")
    p.add_argument("--tolerance", type=float, default=1.0, help="max off-domain drop in points (default 1)")
    p.add_argument("--no-index", action="store_true", help="do not write <vectors>/index.json")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="model dtype (bfloat16: ~2x faster on AVX-512-BF16 CPUs, slightly different numbers)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="questions per forward")
    p.add_argument("--stack", type=int, default=8, help="edits (alphas x positions) stacked into one forward")
    p.add_argument("--cache-mb", type=int, default=4096, help="memory for cached residual streams")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ---- output directory ------------------------------------------------------------------------------------
def read_records(paths: list[Path]) -> list[dict]:
    """Records from jsonl files; a truncated last line (crash) is ignored; first record per key wins."""
    seen: dict[str, dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "key" in rec:
                seen.setdefault(rec["key"], rec)
    return list(seen.values())


def record_files(out: Path) -> list[Path]:
    return sorted(out.glob("sweep*.jsonl"))


def check_out_dir(out: Path, meta: dict[str, Any]) -> None:
    """Refuse a directory holding a sweep made with another model (or other settings); else write meta."""
    file = out / META
    if file.is_file():
        old = json.loads(file.read_text())
        if old.get("model_slug") != meta["model_slug"]:
            raise RoleVecError(f"--out {out} holds a sweep for model {old.get('model_slug')!r}, not "
                               f"{meta['model_slug']!r}; use another --out directory")
        if diff := [k for k in SETTINGS if old.get(k) != meta.get(k)]:
            raise RoleVecError(f"--out {out} holds a sweep with other settings ("
                               + ", ".join(f"{k}={old.get(k)!r} vs {meta.get(k)!r}" for k in diff)
                               + "); use another --out directory")
        return
    out.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(meta, indent=1) + "\n")


class Appender:
    """Appends records to a jsonl file, flushed and fsynced one by one (safe to interrupt); a partial
    last line left by a crash is cut off first."""

    def __init__(self, path: Path) -> None:
        self.path, self.n = path, 0
        if path.is_file() and (data := path.read_bytes()) and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def __call__(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.n += 1


# ---- commands --------------------------------------------------------------------------------------------
def run(args: Any) -> int:
    out = Path(args.out)
    if args.merge is not None:
        return merge(out, [Path(p) for p in args.merge], args)
    from rolevec_lmeval.sweep_plan import plan_and_run

    return plan_and_run(args, out)


def merge(out: Path, sources: list[Path], args: Any) -> int:
    """Join shard records (files or directories) into ``DIR/sweep.jsonl``, then report and select."""
    files: list[Path] = []
    for src in sources or [out]:
        if src.is_dir():
            files += [f for f in record_files(src) if f.name != RECORDS or src != out]
        elif src.is_file():
            files.append(src)
        else:
            raise RoleVecError(f"--merge: {src} is neither a jsonl file nor a directory")
    if (out / RECORDS).is_file():
        files.insert(0, out / RECORDS)
    records = read_records(list(dict.fromkeys(files)))
    if not records:
        raise RoleVecError(f"--merge: no sweep records in {', '.join(map(str, sources or [out]))}")
    models = sorted({r.get("model_slug") for r in records})
    if len(models) > 1:
        raise RoleVecError(f"--merge: records for different models {models}; merge each model separately")
    meta_file = out / META
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if meta and meta.get("model_slug") != models[0]:
        raise RoleVecError(f"--out {out} holds a sweep for model {meta.get('model_slug')!r}, "
                           f"not {models[0]!r}")
    if not meta:
        src_meta = [s / META for s in sources if (s / META).is_file()]
        meta = json.loads(src_meta[0].read_text()) if src_meta else {"model_slug": models[0]}
        out.mkdir(parents=True, exist_ok=True)
        meta_file.write_text(json.dumps(meta, indent=1) + "\n")
    tmp = out / (RECORDS + ".tmp")
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    os.replace(tmp, out / RECORDS)
    print(f"merged {len(records)} records from {len(files)} file(s) into {out / RECORDS}")
    return finalize(out, meta, records, args)


def _same_vectors(vectors: Path, role: str, row: dict) -> bool:
    """Only index roles whose direction (position, method) is still the one the sweep used."""
    from rolevec_lmeval.sweep_stats import direction_sha
    from rolevec_lmeval.vectors import RoleVector

    file, sha = vectors / f"{role}.safetensors", row.get("direction_sha256", "")
    try:
        now = direction_sha(RoleVector.load(file), int(row["position"]), row["method"])
    except (RoleVecError, IndexError, TypeError):
        now = "(missing)"
    if sha and now != sha:
        print(f"not indexing {role}: the directions in {file} ({now}) are not those the sweep used "
              f"({sha}); re-run the sweep", file=sys.stderr)
        return False
    return True


def finalize(out: Path, meta: dict[str, Any], records: list[dict], args: Any) -> int:
    """summary.md, heatmaps, and (unless --no-index) the selected configs in <vectors>/index.json."""
    from rolevec_lmeval.sweep_report import heatmap, summary_markdown
    from rolevec_lmeval.sweep_select import analyse, index_entry, persona_row, select, write_index

    df = analyse(records, seed=meta.get("seed", 0))
    picks = select(df, args.tolerance)
    maps = {}
    for role in sorted(set(df["role"])) if len(df) else []:
        if heatmap(df, role, picks.get(role), out / "heatmaps" / f"{role}.png") is not None:
            maps[role] = f"heatmaps/{role}.png"
    (out / "summary.md").write_text(summary_markdown(df, picks, meta, args.tolerance, maps))
    df.to_csv(out / "points.csv", index=False)
    vectors = getattr(args, "vectors", None) or meta.get("vectors")
    if picks and not args.no_index and vectors:
        sweep = {"out": str(out), "tolerance": args.tolerance, "limit": meta.get("limit"),
                 "off_sample": meta.get("off_sample"), "dtype": meta.get("dtype")}
        entries = {role: index_entry(row, persona_row(df, role), sweep) for role, row in picks.items()
                   if _same_vectors(Path(vectors), role, row)}
        if entries:
            path = write_index(Path(vectors) / "index.json", entries)
            print(f"selected configs for {len(entries)} role(s) written to {path}")
    print(f"summary: {out / 'summary.md'} ({len(maps)} heatmap(s))")
    return 0
