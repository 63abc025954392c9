"""``rolevec scope``: patch-scoping, i.e. reading a role vector by letting the model describe it.

At block-input layer ``l`` the residual stream at the placeholder token of an identity-style few-shot prompt
(``word: meaning`` lines ending in ``X:``) is *replaced* by ``scale * norm_l * d / |d|`` (``norm_l``: mean
residual norm at ``l`` over a few neutral prompts) during the prompt forward only; the model then continues
greedily with its KV cache. A judge (see :mod:`rolevec_lmeval.judge`) decides whether the description
refers to the role. Rows are appended to ``scope.csv`` as they complete; ``scope.md`` and ``summary.md``
are written at the end (also when a judge fails).
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.export import parse_layers
from rolevec_lmeval.patchscope import TARGET_PROMPT, describe, patched_generate, residual_norms, target_ids

if TYPE_CHECKING:  # torch is imported lazily so that `rolevec --help` stays fast
    from torch import Tensor, nn


@dataclass
class ScopeRow:
    model: str
    role: str
    layer: int
    scale: float
    position: int
    method: str
    source: str  # "index" (store's recommended config) or "arg" (--layers)
    generation: str
    lexicon_hits: int | None
    lexicon_terms: str
    judge: str
    aligned: bool | None  # None: not judged (judge failed) or unreadable answer
    judge_answer: str


COLUMNS = [f.name for f in fields(ScopeRow)]


@dataclass(frozen=True)
class _Job:
    role: str
    layer: int
    position: int
    method: str
    source: str
    unit: Tensor  # [d_model], unit norm


def plan_jobs(model: nn.Module, store, roles: list[str], layers: str | None, position: int | None,
              method: str | None, slug: str) -> list[_Job]:
    """Resolve layer/position/method per role (explicit args, else the store's index) and validate all."""
    from rolevec_lmeval.interventions import n_layers_of
    from rolevec_lmeval.model import check_compatible

    n = n_layers_of(model)
    explicit = parse_layers(layers, n) if layers is not None else None
    jobs = []
    for role in roles:
        vec = store.load(role)
        check_compatible(vec, model, slug, True)
        rec = store.recommended(role)
        if explicit is None and rec.get("layer") is None:
            raise RoleVecError(f"--layers is required (no index.json config for {role!r}); valid: 0..{n - 1}")
        chosen = explicit or parse_layers(rec["layer"], n, f"index.json layer of {role}")
        pos = rec.get("position", vec.meta.get("recommended_position", -1)) if position is None else position
        meth = method or rec.get("method") or "raw"
        for layer in chosen:
            d = vec.direction(layer, int(pos), meth).float()
            if not d.norm() > 0:
                raise RoleVecError(f"role {role!r} has a zero direction at layer {layer}")
            jobs.append(_Job(role, layer, int(pos), meth, "arg" if explicit else "index", d / d.norm()))
    return jobs


def run_scope(model: nn.Module, tokenizer, jobs: list[_Job], scales: list[float], judge, out_dir: Path,
              model_name: str, max_new_tokens: int = 16, batch_size: int = 32, min_hits: int = 1,
              template: str = TARGET_PROMPT) -> list[ScopeRow]:
    """Generate and judge every (job, scale), appending rows to ``out_dir/scope.csv`` as they complete, then
    write ``scope.md`` and ``summary.md``. A :class:`JudgeError` stops the run after the current batch (its
    unjudged rows have an empty ``aligned``); the reports are still written and the error names them."""
    import torch

    from rolevec_lmeval.judge import JudgeError, LexiconJudge

    lexi = LexiconJudge(min_hits)
    ids, pos = target_ids(tokenizer, template)
    layers = sorted({j.layer for j in jobs})
    norms = residual_norms(model, tokenizer, layers)
    baseline = describe(tokenizer, patched_generate(model, ids, pos, 0, None, max_new_tokens)[0])
    batches = []
    for layer in layers:
        items = [(j, s) for j in jobs if j.layer == layer for s in scales]
        batches += [(layer, items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[ScopeRow] = []
    failure: JudgeError | None = None
    with open(out_dir / "scope.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for layer, chunk in batches:
            patches = torch.stack([s * norms[layer] * j.unit for j, s in chunk])  # [batch, d_model]
            new = patched_generate(model, ids, pos, layer, patches, max_new_tokens)  # [batch, new]
            for (job, scale), toks in zip(chunk, new, strict=True):
                text = describe(tokenizer, toks)
                try:
                    lex = lexi.judge(job.role, text)
                except RoleVecError:  # a role without a lexicon: only a model judge can decide
                    lex = None
                aligned, answer = (lex.aligned if lex else None), ""
                if judge.name != "lexicon":
                    aligned = None
                    try:
                        if failure is None:
                            verdict = judge.judge(job.role, text)
                            aligned, answer = verdict.aligned, verdict.detail
                    except JudgeError as exc:
                        failure = exc
                row = ScopeRow(model_name, job.role, layer, scale, job.position, job.method, job.source, text,
                               int(lex.score) if lex else None, lex.detail if lex else "", judge.name,
                               aligned, answer)
                rows.append(row)
                writer.writerow(["" if c is None else c for c in astuple(row)])
                fh.flush()
            if failure is not None:
                break
    write_reports(out_dir, rows, baseline, scales, judge.name, model_name, template, norms)
    if failure is not None:
        raise JudgeError(f"{failure}; partial table ({len(rows)} rows) kept in {out_dir / 'scope.csv'}")
    return rows


def _yes(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "no")


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summarize(rows: list[ScopeRow]) -> list[dict]:
    """Per role: aligned (layer, scale) pairs, the best description and a verdict."""
    out = []
    for role in dict.fromkeys(r.role for r in rows):
        mine = [r for r in rows if r.role == role]
        hits = [r for r in mine if r.aligned]
        best = max(hits or mine, key=lambda r: (r.lexicon_hits or 0, -r.scale))
        judged = [r for r in mine if r.aligned is not None]
        verdict = "aligned" if hits else ("not aligned" if judged else "not judged")
        out.append(dict(role=role, layers=sorted({r.layer for r in mine}), source=mine[0].source,
                        at=[f"L{r.layer}×{r.scale:g}" for r in hits], best=best, verdict=verdict))
    return out


def write_reports(out_dir: Path, rows: list[ScopeRow], baseline: str, scales: list[float], judge: str,
                  model_name: str, template: str, norms: dict[int, float]) -> None:
    head = "| role | layer | scale | aligned | lexicon hits | description |\n|---|---|---|---|---|---|\n"
    table = "".join(
        f"| {r.role} | {r.layer} | {r.scale:g} | {_yes(r.aligned)} "
        f"| {_md(r.lexicon_terms) if r.lexicon_hits else ''} | {_md(r.generation)} |\n"
        for r in rows
    )
    (out_dir / "scope.md").write_text(f"# Patch-scoping generations: {model_name}\n\n{head}{table}")
    summary = summarize(rows)
    n_aligned = sum(s["verdict"] == "aligned" for s in summary)
    lines = [
        f"# Patch-scoping summary: {model_name}\n",
        f"Judge: `{judge}`. Scales: {', '.join(f'{s:g}' for s in scales)} × mean residual norm at the layer "
        f"({', '.join(f'L{k}: {v:.1f}' for k, v in sorted(norms.items()))}).\n",
        f"Unpatched description of the placeholder: \"{_md(baseline)}\"\n",
        f"**{n_aligned} of {len(summary)} roles** get a role-aligned description from their best-performing "
        "direction(s) (store index.json config where present, else --layers).\n",
        "| role | layers (source) | aligned at | best description | verdict |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        layers = ",".join(map(str, s["layers"]))
        lines.append(f"| {s['role']} | {layers} ({s['source']}) | {' '.join(s['at']) or '-'} "
                     f"| {_md(s['best'].generation)} | {s['verdict']} |")
    lines += ["", "Target prompt (the `X` token is patched):", "", "```", template.format(x="X"), "```", ""]
    (out_dir / "summary.md").write_text("\n".join(lines))


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RoleVecError(f"{name}={text!r} is not a comma-separated list of numbers") from None
    if not values or any(not math.isfinite(v) or v == 0 for v in values):
        raise RoleVecError(f"{name}={text!r} must be non-zero finite numbers, e.g. 1,2,4")
    return values


def _run(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolevec_lmeval.judge import make_judge
    from rolevec_lmeval.store import VectorStore, default_store, model_slug

    scales = _floats(args.scales, "scales")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    judge = make_judge(args.judge, args.judge_model, args.judge_url, args.judge_timeout, args.min_hits,
                       device)
    if args.model is None:
        from rolevec_lmeval.embedded import embedded_model_dir

        pretrained = str(embedded_model_dir())
    else:
        pretrained = args.model
    slug = model_slug(pretrained)
    store = VectorStore(args.vectors) if args.vectors else default_store(pretrained)
    if store is None:
        raise RoleVecError(f"no vectors are shipped for model {slug!r}; pass --vectors FILE_OR_DIR")
    roles = [r.strip() for r in args.roles.split(",") if r.strip()] if args.roles else store.roles()
    if not roles:
        raise RoleVecError(f"no role vectors in {store.path}")
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    model = AutoModelForCausalLM.from_pretrained(pretrained, dtype=torch.float32).to(device).eval()
    jobs = plan_jobs(model, store, roles, args.layers, args.position, args.method, slug)
    out = Path(args.out or Path("rolevec-scope") / slug)
    rows = run_scope(model, tokenizer, jobs, scales, judge, out, slug, args.max_new_tokens, args.batch_size,
                     args.min_hits, args.template or TARGET_PROMPT)
    print(f"wrote {len(rows)} rows: {out / 'scope.csv'}, {out / 'scope.md'}, {out / 'summary.md'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scope", help="patch-scoping: let the model describe role vectors, judge the result")
    p.add_argument("--model", help="HF model id or directory (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--vectors", help="a .safetensors vector file or directory (default: shipped vectors)")
    p.add_argument("--roles", help="comma-separated roles (default: all roles in the store)")
    p.add_argument("--layers", help="block-input layers: 12, 8-12 or 8,12 (default: index.json config)")
    p.add_argument("--scales", default="1,2,4", help="multiples of the mean residual norm (default: 1,2,4)")
    p.add_argument("--position", type=int, help="post-instruction position (default: index or -1)")
    p.add_argument("--method", choices=("raw", "centered"), help="direction variant (default: index or raw)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="greedy tokens per description")
    p.add_argument("--batch-size", type=int, default=32, help="patched prompts per forward pass")
    p.add_argument("--judge", default="lexicon", choices=("lexicon", "openai", "hf"), help="default: lexicon")
    p.add_argument("--judge-model", help="model name (openai) or HF id/directory (hf)")
    p.add_argument("--judge-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--judge-timeout", type=float, default=30.0, help="seconds per judge request")
    p.add_argument("--min-hits", type=int, default=1, help="lexicon terms needed for 'aligned' (default 1)")
    p.add_argument("--template", help="target prompt with {x} where the placeholder goes")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", help="output directory (default: rolevec-scope/<model slug>)")
    p.set_defaults(func=_run)
