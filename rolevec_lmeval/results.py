"""Load ``lm_eval --output_path`` results (lm-evaluation-harness 0.4.x) for ``rolevec report`` / ``check``.

Layouts written by lm_eval 0.4.13:

* ``--output_path DIR`` -> ``DIR/<model>/results_<date>.json`` (+ ``samples_<task>_<date>.jsonl`` with
  ``--log_samples``);
* ``--output_path FILE.json`` -> ``FILE_<date>.json`` (+ the samples files beside it).

A run's model is ``config.model_args.pretrained`` (the embedded model for ``rolevec_hf`` without one), its
role / persona come from ``model_args`` and its steering config from ``config.rolevec`` (resolved values).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolevec_lmeval.errors import RoleVecError

if TYPE_CHECKING:
    import pandas as pd

DATE = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?"
RESULTS_RE = re.compile(rf"^(?!samples_).+_({DATE})\.json$")
SAMPLES_RE = re.compile(rf"^samples_(.+)_({DATE})\.jsonl$")
SUPPORTED_VERSION = "0.4."


def find_result_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Results JSON files named in ``paths``: files as given, directories searched recursively."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*.json") if RESULTS_RE.match(f.name))
            if not files:
                raise RoleVecError(f"{p}: no lm_eval results file (results_<date>.json) in this directory")
            found.extend(files)
        else:
            raise RoleVecError(f"{p} does not exist (a results JSON file or an lm_eval --output_path dir)")
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)  # each file once, even when named twice
    return list(unique.values())


def parse_model_args(value: Any) -> dict[str, Any]:
    """``config.model_args``: a dict (0.4.13) or an ``a=1,b=2`` string (older 0.4 releases)."""
    if isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for item in str(value or "").split(","):
        if "=" in item:
            key, val = item.split("=", 1)
            out[key.strip()] = val.strip()
    return out


def model_slug(name: str) -> str:
    """Same naming as :func:`rolevec_lmeval.store.model_slug`, without importing torch."""
    from rolevec_lmeval.embedded import EMBEDDED_SLUG, is_embedded

    if os.path.isdir(name) and is_embedded(name):
        return EMBEDDED_SLUG
    base = str(name).rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-") or "model"


def roles_index() -> dict[str, Any]:
    """The package's roles.json: ``domains`` (-> subjects) and ``roles`` (-> name, domain)."""
    return json.loads((Path(__file__).with_name("prompts") / "roles.json").read_text(encoding="utf-8"))


def role_names() -> dict[str, str]:
    """role key -> display name (``data_scientist`` -> ``data scientist``)."""
    return {key: spec.get("name", key) for key, spec in roles_index()["roles"].items()}


def persona_key(value: Any) -> str:
    """``persona=chemist`` or the text "You are a chemist." -> ``chemist``; other texts unchanged."""
    text = str(value or "").strip()
    key = text.replace(" ", "_").lower()
    names = role_names()
    if key in names:
        return key
    for role, name in names.items():
        if text.lower() in (f"you are a {name}.", f"you are an {name}."):
            return role
    return text


def _num(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


@dataclass
class Run:
    """One lm_eval results file (and its samples files, when logged)."""

    path: Path
    data: dict[str, Any]
    model: str
    role: str = ""
    persona: str = ""
    config: str = "base"
    samples_files: dict[str, Path] = field(default_factory=dict)
    _samples: dict[tuple[str, str, str], pd.Series] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return "steered" if self.role else "persona" if self.persona else "base"

    @property
    def date(self) -> str:
        m = RESULTS_RE.match(self.path.name)
        return m.group(1) if m else str(self.data.get("date", ""))

    @property
    def groups(self) -> dict[str, list[str]]:
        return self.data.get("group_subtasks") or {}

    def tasks(self) -> list[str]:
        return list(self.data["results"])

    def leaves(self, task: str | None = None) -> list[str]:
        """Leaf (non-group) tasks under ``task`` (all leaf tasks when None)."""
        if task is None:
            return [t for t in self.tasks() if t not in self.groups]
        if task not in self.groups:
            return [task]
        return [leaf for sub in self.groups[task] for leaf in self.leaves(sub)]

    def _entry(self, task: str, metric: str, filt: str) -> Any:
        entry = self.data["results"].get(task)
        if entry is None:
            raise RoleVecError(f"{self.path}: results has no task {task!r}")
        key = f"{metric},{filt}"
        if key not in entry:
            found = sorted(k for k in entry if "," in k and "_stderr," not in k)
            raise RoleVecError(f"{self.path}: field results.{task} has no {key!r} (has: {', '.join(found)})")
        return entry[key]

    def has(self, task: str, metric: str = "acc", filt: str = "none") -> bool:
        return f"{metric},{filt}" in self.data["results"].get(task, {})

    def value(self, task: str, metric: str = "acc", filt: str = "none") -> float:
        value = self._entry(task, metric, filt)
        if not isinstance(value, (int, float)):
            raise RoleVecError(f"{self.path}: field results.{task}.{metric},{filt} is not a number")
        return float(value)

    def stderr(self, task: str, metric: str = "acc", filt: str = "none") -> float | None:
        value = self.data["results"].get(task, {}).get(f"{metric}_stderr,{filt}")
        return float(value) if isinstance(value, (int, float)) else None  # "N/A" with --limit 1 etc.

    def n(self, task: str) -> int:
        if task in self.groups:
            return sum(self.n(leaf) for leaf in self.leaves(task))
        counts = (self.data.get("n-samples") or {}).get(task) or {}
        return int(counts.get("effective") or self.data["results"][task].get("sample_len") or 0)

    def higher_is_better(self, task: str, metric: str = "acc") -> bool:
        return bool((self.data.get("higher_is_better") or {}).get(task, {}).get(metric, True))

    def samples(self, task: str, metric: str = "acc", filt: str = "none") -> pd.Series | None:
        """Per-sample scores indexed by (task, doc_id), over the leaves of ``task``; None if not logged."""
        import pandas as pd

        parts = []
        for leaf in self.leaves(task):
            if leaf not in self.samples_files:
                return None
            key = (leaf, metric, filt)
            if key not in self._samples:
                self._samples[key] = self._read_samples(leaf, metric, filt)
            parts.append(self._samples[key])
        return pd.concat(parts) if parts else None

    def _read_samples(self, task: str, metric: str, filt: str) -> pd.Series:
        import pandas as pd

        file = self.samples_files[task]
        ids, values = [], []
        for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RoleVecError(f"{file} line {lineno}: not valid JSON ({exc.msg})") from None
            if rec.get("filter", "none") != filt:
                continue
            if "doc_id" not in rec or not isinstance(rec.get(metric), (int, float)):
                raise RoleVecError(f"{file} line {lineno}: missing field 'doc_id' or numeric {metric!r}")
            ids.append((task, rec["doc_id"]))
            values.append(float(rec[metric]))
        index = pd.MultiIndex.from_tuples(ids, names=["task", "doc_id"]) if ids else None
        return pd.Series(values, index=index, name=metric, dtype=float)


def _require(data: dict[str, Any], dotted: str, path: Path, kind: type = dict) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise RoleVecError(f"{path}: missing field {dotted!r} (not an lm-evaluation-harness 0.4 results)")
        value = value[part]
    if not isinstance(value, kind):
        raise RoleVecError(f"{path}: field {dotted!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def steering_config(model_args: dict[str, Any], rolevec: Any) -> str:
    """``L12 a=3 add`` (``+`` joins several); resolved values from ``config.rolevec`` win."""
    entries = rolevec if isinstance(rolevec, list) and rolevec else [model_args]
    parts = []
    for e in entries:
        text = f"L{_num(e.get('layer', '?'))} a={_num(e.get('alpha', '?'))} {e.get('intervention') or 'add'}"
        parts.append(text)
    extra = [f"{k}={_num(model_args[k])}" for k in ("method", "position") if model_args.get(k) is not None]
    return " + ".join(parts) + "".join(f" {x}" for x in extra)


def load_run(path: str | os.PathLike) -> Run:
    """Read and validate one results file; samples files are found beside it (read lazily)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RoleVecError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise RoleVecError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise RoleVecError(f"{path}: not an lm-evaluation-harness results file (top level is not an object)")
    _require(data, "results", path)
    version = _require(data, "lm_eval_version", path, str)
    if not version.startswith(SUPPORTED_VERSION):
        raise RoleVecError(f"{path}: field 'lm_eval_version' is {version!r}; supported: {SUPPORTED_VERSION}x")
    backend = _require(data, "config.model", path, str)
    args = parse_model_args(_require(data, "config.model_args", path, object))
    name = args.get("pretrained") or args.get("model") or args.get("path")
    if not name and backend == "rolevec_hf":
        from rolevec_lmeval.embedded import EMBEDDED_SLUG

        model = EMBEDDED_SLUG
    elif name:
        model = model_slug(str(name))
    else:
        raise RoleVecError(f"{path}: field 'config.model_args' names no model (pretrained=...)")
    role = str(args.get("role") or "").strip()
    persona = persona_key(args.get("persona")) if args.get("persona") else ""
    config = "persona" if persona else "base"
    config = steering_config(args, data["config"].get("rolevec")) if role else config
    if role and persona:
        config += " +persona"
    run = Run(path, data, model, role, persona, config)
    m = RESULTS_RE.match(path.name)
    if m:
        for f in path.parent.glob(f"samples_*_{m.group(1)}.jsonl"):
            sm = SAMPLES_RE.match(f.name)
            if sm and sm.group(2) == m.group(1):
                run.samples_files[sm.group(1)] = f
    return run


def load_runs(paths: list[str | os.PathLike]) -> list[Run]:
    return [load_run(f) for f in find_result_files(paths)]


def add_metric_args(parser) -> None:
    """``--metric`` / ``--filter``, shared by ``rolevec report`` and ``rolevec check``."""
    parser.add_argument("--metric", default="acc", help="lm_eval metric (default: acc)")
    parser.add_argument("--filter", dest="filt", default="none", metavar="FILTER",
                        help="lm_eval filter (default: none)")
