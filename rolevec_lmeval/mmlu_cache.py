"""``rolevec data mmlu``: build the ``datasets`` Arrow cache of ``cais/mmlu`` from a local copy.

lm-eval's standard ``mmlu_*`` tasks call ``load_dataset("cais/mmlu", <subject>)``; offline, datasets 5.x
only finds a prepared cache ``$HF_DATASETS_CACHE/cais___mmlu/<subject>/0.0.0/<hash>/`` (hub snapshots are
not used), so that is what this writes (hash ``local``). The whole source is validated before anything is
written; each subject is built in a hidden temp dir beside the target, then renamed into place.
Sources: cais/mmlu parquet (``<subject>/{test,validation,dev}-*.parquet``) or the Hendrycks CSVs
(``[data/]{dev,val,test}/<subject>_<split>.csv``, header-less rows ``question,A,B,C,D,answer_letter``).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolevec_lmeval.errors import RoleVecError

if TYPE_CHECKING:
    import argparse

    import pyarrow as pa

SPLITS = ("test", "validation", "dev")
CSV_SPLIT_DIRS = {"test": "test", "validation": "val", "dev": "dev"}
FIELDS = ("question", "subject", "choices", "answer")
DATASET_DIR = "cais___mmlu"  # datasets' cache folder for the hub id "cais/mmlu"
CACHE_HASH = "local"
# Standard release (cais/mmlu = Hendrycks' data.tar): "subject test validation"; dev is 5 rows everywhere.
_COUNTS = """abstract_algebra 100 11, anatomy 135 14, astronomy 152 16, business_ethics 100 11,
clinical_knowledge 265 29, college_biology 144 16, college_chemistry 100 8, college_computer_science 100 11,
college_mathematics 100 11, college_medicine 173 22, college_physics 102 11, computer_security 100 11,
conceptual_physics 235 26, econometrics 114 12, electrical_engineering 145 16,
elementary_mathematics 378 41, formal_logic 126 14, global_facts 100 10, high_school_biology 310 32,
high_school_chemistry 203 22, high_school_computer_science 100 9, high_school_european_history 165 18,
high_school_geography 198 22, high_school_government_and_politics 193 21, high_school_macroeconomics 390 43,
high_school_mathematics 270 29, high_school_microeconomics 238 26, high_school_physics 151 17,
high_school_psychology 545 60, high_school_statistics 216 23, high_school_us_history 204 22,
high_school_world_history 237 26, human_aging 223 23, human_sexuality 131 12, international_law 121 13,
jurisprudence 108 11, logical_fallacies 163 18, machine_learning 112 11, management 103 11,
marketing 234 25, medical_genetics 100 11, miscellaneous 783 86, moral_disputes 346 38,
moral_scenarios 895 100, nutrition 306 33, philosophy 311 34, prehistory 324 35,
professional_accounting 282 31, professional_law 1534 170, professional_medicine 272 31,
professional_psychology 612 69, public_relations 110 12, security_studies 245 27, sociology 201 22,
us_foreign_policy 100 11, virology 166 18, world_religions 171 19"""
SUBJECT_COUNTS: dict[str, dict[str, int]] = {
    name: {"test": int(test), "validation": int(val), "dev": 5}
    for name, test, val in (item.split() for item in _COUNTS.split(","))
}
MMLU_SUBJECTS: tuple[str, ...] = tuple(sorted(SUBJECT_COUNTS))
TOTALS = {split: sum(c[split] for c in SUBJECT_COUNTS.values()) for split in SPLITS}


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{split} {counts[split]}" for split in SPLITS)


@dataclass
class CacheReport:
    """Outcome of :func:`build_mmlu_cache` / :func:`check_mmlu_cache`: per-subject status and rows."""

    cache_dir: Path  # the .../cais___mmlu folder
    source: str = ""  # "parquet DIR" / "csv DIR"; "" for a cache check
    built: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)  # already there with the same row counts
    missing: list[str] = field(default_factory=list)  # wanted, absent from the source (or the cache)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing

    def totals(self) -> dict[str, int]:
        return {split: sum(r[split] for r in self.rows.values()) for split in SPLITS}

    def summary(self) -> str:
        off = sorted(s for s, r in self.rows.items() if r != SUBJECT_COUNTS[s])
        std = (f"NOT the standard counts for {', '.join(off)}" if off else "the standard release"
               if self.totals() == TOTALS else f"standard counts (all 57: {_fmt(TOTALS)})")
        lines = [f"cais/mmlu cache: {self.cache_dir} ({f'from {self.source}, ' if self.source else ''}"
                 f"{self.seconds:.1f} s)",
                 f"  subjects: {len(self.built)} built, {len(self.cached)} already cached, "
                 f"{len(self.missing)} missing (of {len(self.rows) + len(self.missing)})",
                 f"  rows: {_fmt(self.totals())} = {std}" if self.rows else "  rows: none"]
        if self.missing:
            where = "source" if self.source else "cache"
            lines.append(f"  MISSING from the {where}: {', '.join(self.missing)}")
        return "\n".join(lines)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The ``cais___mmlu`` folder under ``cache_dir`` (default: datasets' ``HF_DATASETS_CACHE``)."""
    if cache_dir is None:
        import datasets.config

        cache_dir = datasets.config.HF_DATASETS_CACHE
    return Path(cache_dir).expanduser() / DATASET_DIR


def _wanted(subjects: Iterable[str] | None) -> list[str]:
    wanted = list(MMLU_SUBJECTS) if subjects is None else list(dict.fromkeys(subjects))
    if not wanted or (unknown := [s for s in wanted if s not in SUBJECT_COUNTS]):
        raise RoleVecError(f"--subjects: unknown MMLU subject(s) {', '.join(unknown) or '(none)'}; "
                           f"valid: {', '.join(MMLU_SUBJECTS)}")
    return wanted


def _find_sources(src: Path) -> tuple[str, dict[str, dict[str, list[Path]]]]:
    """Detect the layout of ``src``: (layout, {subject present: {split: files}})."""
    if not src.is_dir():
        raise RoleVecError(f"--from: {src} is not a directory")
    base = src / "data" if (src / "data" / "test").is_dir() else src
    layouts = {
        "parquet": {s: {sp: sorted((src / s).glob(f"{sp}-*.parquet")) for sp in SPLITS}
                    for s in MMLU_SUBJECTS},
        "csv": {s: {sp: [p] if (p := base / d / f"{s}_{d}.csv").is_file() else []
                    for sp, d in CSV_SPLIT_DIRS.items()} for s in MMLU_SUBJECTS}}
    for layout, files in layouts.items():
        if found := {s: f for s, f in files.items() if any(f.values())}:
            for subject, f in found.items():
                if absent := [sp for sp in SPLITS if not f[sp]]:
                    raise RoleVecError(f"--from: {src}: subject {subject} has no {'/'.join(absent)} split")
            return layout, found
    raise RoleVecError(f"--from: no MMLU data in {src}; expected the cais/mmlu layout "
                       "<subject>/{test,validation,dev}-00000-of-00001.parquet or the Hendrycks CSV layout "
                       "[data/]{dev,val,test}/<subject>_<split>.csv")


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("question", pa.string()), ("subject", pa.string()),
                      ("choices", pa.list_(pa.string())), ("answer", pa.int64())])


def _read_csv(path: Path, subject: str) -> pa.Table:
    import pyarrow as pa

    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    for i, row in enumerate(rows, 1):
        if len(row) != 6 or row[5] not in ("A", "B", "C", "D"):
            raise RoleVecError(f"--from: {path}:{i}: expected 6 fields question,A,B,C,D,answer with the "
                               f"answer a letter A-D; got {len(row)} field(s) ending in {row[-1:]!r}")
    return pa.table({"question": [r[0] for r in rows], "subject": [subject] * len(rows),
                     "choices": [r[1:5] for r in rows], "answer": ["ABCD".index(r[5]) for r in rows]},
                    schema=_schema())


def _read_parquet(path: Path, subject: str) -> pa.Table:
    """Read one parquet file, check the cais/mmlu schema, return it with canonical columns and types."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def refuse(msg: str) -> RoleVecError:
        return RoleVecError(f"--from: {path}: {msg}; the cais/mmlu schema is question str, subject str, "
                            "choices list of 4 str, answer int 0..3 / ClassLabel A-D")

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise RoleVecError(f"--from: {path}: not a readable parquet file ({exc})") from exc
    if sorted(table.column_names) != sorted(FIELDS):
        raise refuse(f"columns are {', '.join(table.column_names)}")
    kind = {name: table.schema.field(name).type for name in FIELDS}
    is_str = lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)  # noqa: E731
    if bad := [name for name in ("question", "subject") if not is_str(kind[name])]:
        raise refuse(f"column {bad[0]!r} has type {kind[bad[0]]}, not string")
    if not (pa.types.is_list(kind["choices"]) or pa.types.is_large_list(kind["choices"])) \
            or not is_str(kind["choices"].value_type):
        raise refuse(f"column 'choices' has type {kind['choices']}, not a list of strings")
    if not pa.types.is_integer(kind["answer"]):
        got = "letter strings" if is_str(kind["answer"]) else str(kind["answer"])
        raise refuse(f"column 'answer' holds {got}, not int class indices")
    if nulls := [name for name in FIELDS if table.column(name).null_count]:
        raise refuse(f"null values in {', '.join(nulls)}")
    if table.num_rows:
        n = pc.min_max(pc.list_value_length(table.column("choices"))).as_py()
        if n != {"min": 4, "max": 4}:
            raise refuse(f"'choices' lists have {n['min']}..{n['max']} items, not 4")
        if (a := pc.min_max(table.column("answer")).as_py())["min"] < 0 or a["max"] > 3:
            raise refuse(f"'answer' ranges {a['min']}..{a['max']}, not 0..3")
        if others := set(pc.unique(table.column("subject")).to_pylist()) - {subject}:
            raise refuse(f"'subject' is {sorted(others)[0]!r} in a file of subject {subject!r}")
    return table.select(list(FIELDS)).cast(_schema())


def _read_subject(layout: str, subject: str, files: dict[str, list[Path]]) -> dict[str, pa.Table]:
    import pyarrow as pa

    if layout == "csv":
        return {split: _read_csv(files[split][0], subject) for split in SPLITS}
    return {split: pa.concat_tables([_read_parquet(p, subject) for p in files[split]]) for split in SPLITS}


def _cached_rows(out: Path, subject: str) -> dict[str, int] | None:
    """Row counts of a prepared cache folder (``None``: absent, incomplete or another config)."""
    try:
        info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
        splits = info["splits"]
        if info.get("config_name") != subject or not all(any(out.glob(f"mmlu-{s}*.arrow")) for s in splits):
            return None
        return {split: int(splits[split]["num_examples"]) for split in SPLITS}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _build_subject(root: Path, subject: str, tables: dict[str, pa.Table]) -> None:
    """Prepare one subject in a hidden temp dir under ``root`` (datasets' globs skip it), then rename it."""
    import datasets
    import pyarrow.parquet as pq
    from datasets.packaged_modules.parquet.parquet import Parquet

    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{subject}.tmp-", dir=root))
    try:
        files = {split: str(work / f"{split}.parquet") for split in tables}
        for split, table in tables.items():
            pq.write_table(table, files[split])
        features = datasets.Features({
            "question": datasets.Value("string"), "subject": datasets.Value("string"),
            "choices": datasets.List(datasets.Value("string")),
            "answer": datasets.ClassLabel(names=["A", "B", "C", "D"])})
        out = work / CACHE_HASH
        Parquet(cache_dir=str(work / "builder"), dataset_name="mmlu", config_name=subject, hash=CACHE_HASH,
                data_files=files, features=features).download_and_prepare(output_dir=str(out))
        expected = {split: t.num_rows for split, t in tables.items()}
        if _cached_rows(out, subject) != expected:
            raise RoleVecError(f"cais/mmlu {subject}: the prepared cache lacks the rows {expected}")
        target = root / subject / "0.0.0" / CACHE_HASH
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # stale or --force: move it aside (deleted with `work`)
            target.rename(work / "replaced")
        try:
            out.rename(target)
        except OSError:  # a concurrent run renamed its copy first
            if _cached_rows(target, subject) != expected:
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_mmlu_cache(src: str | Path, cache_dir: str | Path | None = None,
                     subjects: Iterable[str] | None = None, *, force: bool = False,
                     check_counts: bool = True) -> CacheReport:
    """Build the ``cais/mmlu`` Arrow cache of ``subjects`` (default: all 57) from the local copy ``src``.

    Idempotent: subjects cached with the same row counts are skipped unless ``force``. ``check_counts``
    requires the standard release's row counts. A bad source raises :class:`RoleVecError` before anything
    is written; subjects absent from ``src`` are reported (``report.missing``) when ``subjects`` is None.
    """
    import datasets
    from datasets.utils import logging as ds_logging

    start = time.perf_counter()
    src, wanted = Path(src).expanduser().resolve(), _wanted(subjects)
    layout, found = _find_sources(src)
    missing = [s for s in wanted if s not in found]
    if subjects is not None and missing:
        raise RoleVecError(f"--subjects: not in {src}: {', '.join(missing)}")
    tables = {s: _read_subject(layout, s, found[s]) for s in wanted if s in found}
    rows = {s: {split: t.num_rows for split, t in tt.items()} for s, tt in tables.items()}
    if check_counts and (bad := [s for s in rows if rows[s] != SUBJECT_COUNTS[s]]):
        detail = "; ".join(f"{s} has {_fmt(rows[s])}, expected {_fmt(SUBJECT_COUNTS[s])}" for s in bad[:3])
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise RoleVecError(f"--from: row counts differ from the standard MMLU release: {detail}{more}; "
                           "pass --no-count-check to accept them")
    report = CacheReport(cache_root(cache_dir), f"{layout} {src}", missing=missing, rows=rows)
    bars, level = ds_logging.is_progress_bar_enabled(), ds_logging.get_verbosity()
    datasets.disable_progress_bars()
    ds_logging.set_verbosity_error()
    try:
        for subject, split_tables in tables.items():
            target = report.cache_dir / subject / "0.0.0" / CACHE_HASH
            if not force and _cached_rows(target, subject) == rows[subject]:
                report.cached.append(subject)
            else:
                _build_subject(report.cache_dir, subject, split_tables)
                report.built.append(subject)
    finally:
        ds_logging.set_verbosity(level)
        if bars:
            datasets.enable_progress_bars()
    report.seconds = time.perf_counter() - start
    return report


def check_mmlu_cache(cache_dir: str | Path | None = None,
                     subjects: Iterable[str] | None = None) -> CacheReport:
    """Report which of ``subjects`` (default: all 57) the ``cais/mmlu`` cache holds; needs no source."""
    report = CacheReport(cache_root(cache_dir))
    for subject in _wanted(subjects):
        if (counts := _cached_rows(report.cache_dir / subject / "0.0.0" / CACHE_HASH, subject)) is None:
            report.missing.append(subject)
        else:
            report.cached.append(subject)
            report.rows[subject] = counts
    return report


def add_parser(subparsers: Any) -> None:
    """Register ``rolevec data mmlu``."""
    data = subparsers.add_parser("data", help="prepare benchmark data for offline runs",
                                 description="Prepare benchmark data for offline (air-gapped) runs.")
    sub = data.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    p = sub.add_parser("mmlu", help="build the datasets cache of cais/mmlu from a local copy",
                       description="Build the `datasets` Arrow cache of cais/mmlu from a local copy, so that "
                                   "lm-eval's standard mmlu_* tasks run with HF_HUB_OFFLINE=1 "
                                   "HF_DATASETS_OFFLINE=1.")
    p.add_argument("--from", dest="src", metavar="DIR",
                   help="local MMLU copy: cais/mmlu parquet layout (<subject>/test-00000-of-00001.parquet, "
                        "...) or Hendrycks CSVs ([data/]{dev,val,test}/<subject>_<split>.csv)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="datasets cache to write (default: HF_DATASETS_CACHE); lm_eval must use the same")
    p.add_argument("--subjects", nargs="+", metavar="SUBJECT", help="only these subjects (default: all 57)")
    p.add_argument("--force", action="store_true", help="rebuild subjects that are already cached")
    p.add_argument("--no-count-check", action="store_true",
                   help="accept row counts that differ from the standard release")
    p.add_argument("--check", action="store_true", help="only report what the cache holds (no --from)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    subjects = [s for arg in args.subjects for s in arg.split(",") if s] if args.subjects else None
    if args.check:
        report = check_mmlu_cache(args.cache_dir, subjects)
    elif not args.src:
        raise RoleVecError("--from: required (a local MMLU copy: cais/mmlu parquet or Hendrycks CSV layout)")
    else:
        report = build_mmlu_cache(args.src, args.cache_dir, subjects, force=args.force,
                                  check_counts=not args.no_count_check)
    print(report.summary())
    if report.ok:
        env = f" HF_DATASETS_CACHE={report.cache_dir.parent}" if args.cache_dir else ""
        print(f"  offline use: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1{env} lm_eval --tasks mmlu ...")
    return 0 if report.ok else 1
