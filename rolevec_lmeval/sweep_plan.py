"""``rolevec sweep`` (not --merge): check the inputs, load model and questions, run the pending units."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.sweep import RECORDS, Appender, check_out_dir, finalize, read_records, record_files
from rolevec_lmeval.sweep_grid import (
    build_units,
    parse_alphas,
    parse_interventions,
    parse_layers,
    parse_positions,
    parse_shard,
    pending,
    shard_units,
)

log = logging.getLogger(__name__)


def resolve_roles(spec: str, table: dict[str, Any]) -> list[str]:
    """'all' -> the paper roles; else a comma list of known roles."""
    if spec.strip() == "all":
        return [r for r, row in table.items() if row.paper]
    roles = [r.strip() for r in spec.split(",") if r.strip()]
    if not roles or (bad := [r for r in roles if r not in table]):
        raise RoleVecError(f"--role {spec!r}: unknown role(s) {', '.join(bad) if roles else '(none)'}; "
                           f"valid: all, {', '.join(table)}")
    return list(dict.fromkeys(roles))


def best_layers(out: Path, roles: list[str], tolerance: float) -> dict[str, int]:
    """``--layers best``: each role's selected layer from the validation records already in ``out``."""
    from rolevec_lmeval.sweep_select import analyse, select

    picks = select(analyse(read_records(record_files(out))), tolerance) if record_files(out) else {}
    if missing := [r for r in roles if r not in picks]:
        raise RoleVecError(f"--layers best: no selected validation point in {out} for {', '.join(missing)}; "
                           "sweep those roles over a layer grid first")
    return {r: int(picks[r]["layer"]) for r in roles}


def role_task_lists(roles: list[str], table: dict[str, Any], tasks: str | None, off: str | None
                    ) -> dict[str, tuple[list[str], list[str]]]:
    """role -> (in-domain, off-domain) lm-eval task names; --tasks / --off-tasks override the table."""
    from rolevec_lmeval.sweep_tasks import resolve_task_names

    def parse(spec: str) -> list[str]:
        return resolve_task_names([t.strip() for t in spec.split(",") if t.strip()])

    in_override = parse(tasks) if tasks else None
    off_override = [] if off and off.strip() == "none" else (parse(off) if off else None)
    out = {}
    for role in roles:
        row = table[role]
        ins = in_override or [f"mmlu_{s}" for s in row.subjects]
        offs = off_override if off_override is not None else [f"mmlu_{s}" for s in row.off_subjects]
        out[role] = (ins, [t for t in offs if t not in ins])
    return out


def plan_and_run(args: Any, out: Path) -> int:
    import torch

    from rolevec_lmeval.model import RoleVecLM, check_compatible
    from rolevec_lmeval.store import VectorStore, default_store, model_slug
    from rolevec_lmeval.sweep_engine import SweepEngine
    from rolevec_lmeval.sweep_run import Pool, Runner
    from rolevec_lmeval.sweep_tasks import load_tasks, questions_of
    from rolevec_lmeval.tasks import task_table

    # cheap checks first: everything that can be refused without a model
    shard = parse_shard(args.shard)
    alphas, interventions = parse_alphas(args.alphas), parse_interventions(args.interventions)
    for name in ("limit", "off_sample", "batch_size", "stack"):
        if (v := getattr(args, name)) is not None and v < 1:
            raise RoleVecError(f"--{name.replace('_', '-')}={v} must be >= 1")
    table = {row.role: row for row in task_table()}
    roles = resolve_roles(args.role, table)
    if args.threads:
        torch.set_num_threads(args.threads)
    pretrained = args.model
    if pretrained is None:
        from rolevec_lmeval.embedded import embedded_model_dir

        pretrained = str(embedded_model_dir())
    slug = model_slug(pretrained)
    store = VectorStore(args.vectors) if args.vectors else default_store(pretrained)
    if store is None:
        raise RoleVecError(f"no vectors are shipped for model {slug!r}; pass --vectors DIR "
                           "(create them with `rolevec extract`)")
    if missing := [r for r in roles if r not in store.roles()]:
        raise RoleVecError(f"--role: no vectors for {', '.join(missing)} in {store.path}; "
                           f"available: {', '.join(store.roles()) or '(none)'}")
    role_tasks = role_task_lists(roles, table, args.tasks, args.off_tasks)
    meta = {"model": str(args.model or "embedded"), "model_slug": slug, "dtype": args.dtype,
            "limit": args.limit, "off_sample": args.off_sample, "seed": args.seed, "method": args.method,
            "vectors": str(store.path)}

    first = store.load(roles[0])
    best = args.layers.strip() == "best"
    layers = best_layers(out, roles, args.tolerance) if best else parse_layers(args.layers, first.n_layers)
    positions = parse_positions(args.positions, first.n_positions)
    check_out_dir(out, meta)

    lm = RoleVecLM(pretrained=pretrained, dtype=args.dtype, batch_size=args.batch_size,
                   **({"device": args.device} if args.device else {}))
    for role in roles:
        check_compatible(store.load(role), lm.model, slug, strict_model=True)

    all_tasks = sorted({t for ins, offs in role_tasks.values() for t in ins + offs})
    if best:  # per role: the layer of its selected point (e.g. ablate where add worked best)
        units = [u for i, r in enumerate(roles) for u in build_units(
            [r], [layers[r]], positions, alphas, interventions, all_tasks if i == 0 else [],
            not args.no_persona)]
        units = [u for u in units if u.points]
    else:
        units = build_units(roles, layers, positions, alphas, interventions, all_tasks, not args.no_persona)
    units = shard_units(units, shard)
    rank, world = int(getattr(lm, "rank", 0)), int(getattr(lm, "world_size", 1))
    units = units[rank::world] if world > 1 else units
    suffix = f".rank-{rank}-of-{world}" if world > 1 else ""
    name = f"sweep.shard-{shard[0]}-of-{shard[1]}{suffix}.jsonl"
    name = RECORDS if shard == (1, 1) and world == 1 else name
    done = {r["key"] for r in read_records(record_files(out))}
    todo = pending(units, done, args.split)
    n_points = sum(len(u.points) for u in units)
    print(f"rolevec sweep: {len(roles)} role(s), {len(layers)} layer(s) x {len(positions)} position(s) x "
          f"{len(alphas)} alpha(s) x {interventions}; shard {shard[0]}/{shard[1]}: {n_points} points, "
          f"{n_points - sum(len(u.points) for u in todo)} already done", flush=True)

    if todo:
        t0 = time.perf_counter()
        needed = sorted({p.task for u in todo for p in u.points if p.kind == "base"}
                        | {t for u in todo if u.role for t in sum(role_tasks[u.role], [])})
        tasks = load_tasks(needed, args.split)
        pool = Pool({t: questions_of(tasks[t], args.limit) for t in needed}, args.off_sample, args.seed)
        engine = SweepEngine(lm, batch_size=args.batch_size, stack=args.stack)
        info = {"split": args.split, "model_slug": slug, "dtype": args.dtype}
        emit = Appender(out / name)
        Runner(lm, engine, pool, store, role_tasks, info, emit, args.method, args.cache_mb).run(
            todo, progress=not args.no_progress)
        print(f"wrote {emit.n} record(s) to {out / name} in {time.perf_counter() - t0:.0f} s", flush=True)
    if world > 1:
        lm.accelerator.wait_for_everyone()
        if rank != 0:
            return 0
    if shard != (1, 1) or world > 1:
        if world > 1 and shard == (1, 1):
            from rolevec_lmeval.sweep import merge

            return merge(out, [out], args)
        print(f"shard {shard[0]}/{shard[1]} done; after all shards: rolevec sweep --merge --out {out}")
        return 0
    return finalize(out, meta, read_records(record_files(out)), args)
