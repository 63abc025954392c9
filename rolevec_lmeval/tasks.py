"""``rolevec tasks``: the role -> domain -> MMLU subjects table and the lm-eval group YAMLs built from it.

Groups (in ``task_configs/``, used with ``lm_eval --include_path``), all over the standard ``mmlu_*``
subject tasks and aggregated like ``mmlu`` (sample-weighted mean ``acc``):

* ``rolevec_domain_<domain>``: the subjects of one domain (econ, eecs, ..., history);
* ``rolevec_<role>``: in-domain = the subjects of the role's domain;
* ``rolevec_<role>_off``: off-domain = the subjects of the other paper domains;
* ``rolevec_<role>_pair``: both of the above (no aggregate of its own), one command for both numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.mmlu_cache import MMLU_SUBJECTS, SUBJECT_COUNTS

if TYPE_CHECKING:
    import argparse

ROLES_FILE = Path(__file__).resolve().parent / "prompts" / "roles.json"
GENERATED = "# Generated from rolevec_lmeval/prompts/roles.json by `rolevec tasks --write-configs`.\n"
AGGREGATE = [{"metric": "acc", "weight_by_size": True}]  # as lm_eval/tasks/mmlu/default/_mmlu.yaml
VERSION = 1


@dataclass(frozen=True)
class RoleTasks:
    """One row of the table: a role, its domain, and its in-domain / off-domain MMLU subjects."""

    role: str
    name: str
    domain: str
    paper: bool
    subjects: tuple[str, ...]
    off_subjects: tuple[str, ...]

    @property
    def group(self) -> str:
        return f"rolevec_{self.role}"

    @property
    def off_group(self) -> str:
        return f"rolevec_{self.role}_off"

    @property
    def pair_group(self) -> str:
        return f"rolevec_{self.role}_pair"


def domain_group(domain: str) -> str:
    return f"rolevec_domain_{domain}"


def test_questions(subjects: tuple[str, ...] | list[str]) -> int:
    """Number of MMLU test questions over ``subjects``."""
    return sum(SUBJECT_COUNTS[s]["test"] for s in subjects)


def load_roles(path: str | Path | None = None) -> dict[str, Any]:
    """Read and check ``roles.json`` (domains -> subjects, roles -> domain / paper flag)."""
    path = Path(path) if path else ROLES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        domains, roles = data["domains"], data["roles"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RoleVecError(f"roles file {path}: unreadable or lacks 'domains' / 'roles' ({exc})") from exc
    for domain, spec in domains.items():
        subjects = spec.get("subjects") or []
        unknown = [s for s in subjects if s not in SUBJECT_COUNTS]
        if unknown or not subjects or not re.fullmatch(r"[a-z0-9_]+", domain):
            raise RoleVecError(f"roles file {path}: domain {domain!r} needs a [a-z0-9_] name and MMLU "
                               f"subjects (unknown: {', '.join(unknown) or 'none'}); "
                               f"valid: {', '.join(MMLU_SUBJECTS)}")
    for role, spec in roles.items():
        if spec.get("domain") not in domains or not re.fullmatch(r"[a-z0-9_]+", role):
            raise RoleVecError(f"roles file {path}: role {role!r} needs a [a-z0-9_] name and a domain "
                               f"among {', '.join(domains)}")
    return data


def task_table(path: str | Path | None = None) -> list[RoleTasks]:
    """The role -> domain -> subjects table, in roles.json order.

    Off-domain = the subjects of the paper domains (those with a ``paper: true`` role) other than the role's.
    """
    data = load_roles(path)
    domains = {d: tuple(spec["subjects"]) for d, spec in data["domains"].items()}
    roles = data["roles"].values()
    paper = [d for d in domains if any(r["domain"] == d and r.get("paper", True) for r in roles)]
    rows = []
    for role, spec in data["roles"].items():
        domain = spec["domain"]
        off = tuple(s for d in paper if d != domain for s in domains[d] if s not in domains[domain])
        rows.append(RoleTasks(role, spec.get("name", role), domain, bool(spec.get("paper", True)),
                              domains[domain], off))
    return rows


def task_configs_dir() -> Path:
    """The shipped group YAMLs: ``rolevec_lmeval/_task_configs`` (wheel), else the repo's ``task_configs``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_task_configs", here.parent / "task_configs"):
        if candidate.is_dir():
            return candidate
    raise RoleVecError(f"task_configs: found neither {here / '_task_configs'} (installed wheel) nor "
                       f"{here.parent / 'task_configs'} (repository checkout)")


def _group_yaml(group: str, alias: str | None, tasks: list[str], aggregate: bool = True) -> str:
    import yaml

    cfg: dict[str, Any] = {"group": group}
    if alias:
        cfg["group_alias"] = alias
    cfg["task"] = tasks
    if aggregate:
        cfg["aggregate_metric_list"] = AGGREGATE
    cfg["metadata"] = {"version": VERSION}
    return GENERATED + yaml.safe_dump(cfg, sort_keys=False, width=1000)


def _mmlu(subjects: Any) -> list[str]:
    return [f"mmlu_{s}" for s in subjects]


def render_configs(path: str | Path | None = None) -> dict[str, str]:
    """All group YAMLs: {path relative to task_configs/: text}."""
    data = load_roles(path)
    files = {f"domains/{domain_group(d)}.yaml": _group_yaml(domain_group(d), d, _mmlu(spec["subjects"]))
             for d, spec in data["domains"].items()}
    for row in task_table(path):
        files[f"roles/{row.group}.yaml"] = _group_yaml(
            row.group, f"{row.role} in-domain ({row.domain})", _mmlu(row.subjects))
        files[f"roles/{row.off_group}.yaml"] = _group_yaml(
            row.off_group, f"{row.role} off-domain", _mmlu(row.off_subjects))
        files[f"roles/{row.pair_group}.yaml"] = _group_yaml(
            row.pair_group, None, [row.group, row.off_group], aggregate=False)
    return files


def write_configs(out_dir: str | Path, path: str | Path | None = None) -> list[Path]:
    """(Re)generate the YAMLs under ``out_dir``; delete generated YAMLs that are no longer produced."""
    out_dir = Path(out_dir)
    files = render_configs(path)
    for old in out_dir.glob("**/*.yaml"):
        rel = old.relative_to(out_dir).as_posix()
        if rel not in files and old.read_text(encoding="utf-8").startswith(GENERATED):
            old.unlink()
    written = []
    for rel, text in files.items():
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def format_table(rows: list[RoleTasks]) -> str:
    """Plain-text table: role, domain, paper flag, test questions in / off domain, subjects."""
    head = ("role", "domain", "paper", "in-test", "off-test", "subjects (mmlu_*)")
    body = [(r.role, r.domain, "yes" if r.paper else "no", str(test_questions(r.subjects)),
             str(test_questions(r.off_subjects)), ", ".join(r.subjects)) for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(5)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(line[:3], widths[:3], strict=True)),
                        *(c.rjust(w) for c, w in zip(line[3:5], widths[3:], strict=True)), line[5]])
             for line in [head, *body]]
    return "\n".join([*lines, "", "lm-eval groups (--include_path $(rolevec tasks --config-dir)): "
                      "rolevec_<role> (in-domain), rolevec_<role>_off (off-domain: the other paper domains), "
                      "rolevec_<role>_pair (both), rolevec_domain_<domain>"])


def add_parser(subparsers: Any) -> None:
    """Register ``rolevec tasks``."""
    p = subparsers.add_parser("tasks", help="show the role -> domain -> MMLU subjects table",
                              description="Show the role -> domain -> MMLU subjects table behind the lm-eval "
                                          "groups in task_configs/, or regenerate those YAMLs.")
    p.add_argument("--roles-file", metavar="JSON", help="roles index (default: the package's roles.json)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--config-dir", action="store_true", help="print the task_configs dir, for --include_path")
    p.add_argument("--write-configs", metavar="DIR", help="(re)generate the group YAMLs into DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.write_configs:
        written = write_configs(args.write_configs, args.roles_file)
        print(f"wrote {len(written)} group YAMLs under {args.write_configs}")
    elif args.config_dir:
        print(task_configs_dir())
    elif args.json:
        rows = task_table(args.roles_file)
        print(json.dumps([{**asdict(r), "group": r.group, "off_group": r.off_group,
                           "pair_group": r.pair_group, "domain_group": domain_group(r.domain)} for r in rows],
                         indent=1))
    else:
        print(format_table(task_table(args.roles_file)))
    return 0
