"""Fidelity of our prompt sets: role vectors from ours vs from the authors' sets, per role, layer, position.

Both sides use the same code (``extract_role_vectors``), model, seed and prompt counts; the authors' files
(``target_train_<role>.json``, ``base_train.json``) are read in place, never copied. Also measured: how much
of the difference comes from the base sets (both sides re-based on the authors' base set) and the split-half
reliability of each side (the noise ceiling). Writes a markdown report.

    python scripts/fidelity_report.py [--ours DIR --theirs DIR]   # dirs: `rolevec extract` output
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("raw", "centred", "raw, common base")


def samples(directory: Path | None, roles: list[str], args: argparse.Namespace) -> tuple[dict, list[str]]:
    from rolevec_lmeval.prompts import BASE, load_prompt_set, sample_prompts

    role_prompts = {r: sample_prompts(load_prompt_set(directory, r), args.n, args.seed, r) for r in roles}
    return role_prompts, sample_prompts(load_prompt_set(directory, BASE), args.n_base, args.seed, BASE)


def extract(model, tok, directory: Path | None, roles: list[str], args: argparse.Namespace) -> tuple:
    """Vectors of ``roles`` from the prompt sets in ``directory`` (None = ours) and the wall time."""
    from rolevec_lmeval.extract import extract_role_vectors

    role_prompts, base = samples(directory, roles, args)
    t0 = time.perf_counter()
    vecs = extract_role_vectors(model, tok, role_prompts, base, batch_size=args.batch_size)
    return vecs, time.perf_counter() - t0


def load_dir(directory: Path, roles: list[str], args: argparse.Namespace) -> tuple:
    """Vectors written by ``rolevec extract`` (all positions) instead of recomputing them; checks settings."""
    from rolevec_lmeval.vectors import RoleVector

    vecs = {r: RoleVector.load(directory / f"{r}.safetensors") for r in roles}
    for r, v in vecs.items():
        got = (v.meta["n_prompts"], v.meta["n_base_prompts"], v.meta["seed"], v.meta["centered_over"])
        if got != (args.n, args.n_base, args.seed, sorted(roles)):
            raise SystemExit(f"{directory}/{r}.safetensors was made with other settings: {got}")
    return vecs, float("nan")


def split_half(model, tok, directory: Path | None, roles: list[str], args, layers: list[int]) -> Tensor:
    """``[L_mid, R, R]`` cosines between centred vectors of the two halves (same base) at position -1, and
    ``[L_mid, R]`` raw cosines of the halves: the noise ceiling of one side at ``n/2`` prompts."""
    from rolevec_lmeval.extract import mean_activations

    role_prompts, base = samples(directory, roles, args)
    groups = {f"{r}/{h}": role_prompts[r][h::2] for r in roles for h in (0, 1)} | {"base": base}
    means, _ = mean_activations(model, tok, groups, positions=1, layers=layers, batch_size=args.batch_size)
    halves = [torch.stack([means[f"{r}/{h}"] - means["base"] for r in roles]) for h in (0, 1)]
    return cosines(halves[0], halves[1])[0], cosines(*(h - h.mean(0) for h in halves))[0]


def cosines(a: Tensor, b: Tensor) -> Tensor:
    """``[R, k, L, d]`` x ``[R, k, L, d]`` -> ``[k, L, R, R]`` cosine of a[i] and b[j]."""
    a = torch.nn.functional.normalize(a.double(), dim=-1).permute(1, 2, 0, 3)  # [k, L, R, d]
    b = torch.nn.functional.normalize(b.double(), dim=-1).permute(1, 2, 3, 0)  # [k, L, d, R]
    return a @ b


def summary(c: Tensor) -> tuple[Tensor, Tensor]:
    """Same-role cosine ``[..., R]`` and whether each of ours is nearest its own counterpart ``[..., R]``."""
    return c.diagonal(dim1=-2, dim2=-1), c.argmax(-1) == torch.arange(c.shape[-1])


def offdiag(c: Tensor) -> Tensor:
    return c[..., ~torch.eye(c.shape[-1], dtype=torch.bool)]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cell = [[c.replace("|", "\\|") for c in r] for r in rows]  # `<|im_end|>` must not split a cell
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cell])


def report(vs: dict, shift: Tensor, halves: dict, roles: list[str], names: list[str], args, setup: str
           ) -> str:
    """``vs``: variant -> (ours, theirs) ``[R, k, L, d]``; ``shift``: our base mean - theirs ``[k, L, d]``."""
    n_layers, R, p = vs["raw"][0].shape[2], len(roles), -1
    mid = list(range(n_layers // 3, 2 * n_layers // 3))
    cos = {m: cosines(*pair) for m, pair in vs.items()}  # [k, L, R, R]
    within = {m: (cosines(pair[0], pair[0]), cosines(pair[1], pair[1])) for m, pair in vs.items()}
    raw_diag = summary(cos["raw"][p, mid])[0]  # [L_mid, R]
    common = summary(cos["raw, common base"][p, mid])[0]
    ratio = (shift[p, mid].norm(dim=-1) / vs["raw"][0][:, p, mid].norm(dim=-1).mean(0)).mean()
    rng = {m: [f"{offdiag(w[p, mid]).min():.2f}..{offdiag(w[p, mid]).max():.2f}" for w in within[m]]
           for m in ("raw", "centred")}
    out = [
        "# Fidelity of our prompt sets: SmolLM2-135M-Instruct\n", setup,
        f"Positions: {', '.join(f'`{t}`' for t in names)} (the post-instruction tokens); unless stated, "
        f"position -1 (`{names[-1]}`, the shipped `recommended_position`). Middle layers = "
        f"{mid[0]}..{mid[-1]} of 0..{n_layers - 1} (block inputs; at layer 0 position -1 is the same token "
        f"embedding for every prompt, so every difference there is 0). *Centred* = role vector minus the "
        f"mean over the {R} roles of the same set. *Raw, common base* = both sides as mean(role) - "
        f"mean(authors' base): isolates the role sets from the base sets. *Nearest* = how many of our role "
        f"vectors are closer (cosine) to the authors' vector of the same role than to any other role's.\n",
        "## Findings\n",
        f"- Raw, as specified (each side with its own base set): same-role cosine ours vs theirs "
        f"{raw_diag.mean():.2f} on average at the middle layers (range {raw_diag.min():.2f}.."
        f"{raw_diag.max():.2f}); roles above 0.8 at every middle layer: "
        f"{int((raw_diag.min(0).values > 0.8).sum())}/{R}.",
        f"- The base sets differ: |mean(our base) - mean(authors' base)| is {ratio:.2f}x the norm of a raw "
        f"role vector (middle layers). With the authors' base on both sides the same-role cosine is "
        f"{common.mean():.2f} (range {common.min():.2f}..{common.max():.2f}; above 0.8 at every middle "
        f"layer: {int((common.min(0).values > 0.8).sum())}/{R}), so the base sets cost "
        f"{common.mean() - raw_diag.mean():.2f} of the mean cosine (how the sets were written: "
        f"`docs/prompt-sets.md`).",
        f"- Within one set raw vectors of different roles are nearly collinear (ours {rng['raw'][0]}, theirs "
        f"{rng['raw'][1]}); centring spreads them (ours {rng['centred'][0]}, theirs {rng['centred'][1]}).",
    ]
    for side, (raw_h, cen_h) in halves.items():
        out.append(f"- Split-half reliability, {side} ({args.n // 2} vs {args.n // 2} prompts, same base, "
                   f"middle layers): raw {raw_h.diagonal(dim1=-2, dim2=-1).mean():.3f}, centred "
                   f"{cen_h.diagonal(dim1=-2, dim2=-1).mean():.3f}, centred nearest own half "
                   f"{summary(cen_h)[1].float().sum(-1).mean():.1f}/{R} (the noise ceiling).")
    out += ["", "## Summary (position -1, middle layers)\n"]
    rows = []
    for m in VARIANTS:
        diag, hit = summary(cos[m][p, mid])
        rows.append([m, f"{diag.mean():.3f}", f"{diag.min():.3f}", f"{hit.float().sum(-1).mean():.1f} / {R}"])
    out.append(table(["variant", "same-role cos (mean)", "same-role cos (min over roles, layers)",
                      "nearest own counterpart (mean over layers)"], rows))
    out.append("\n## Per layer (position -1): same-role cosine mean / min, nearest\n")
    rows = []
    for layer in range(n_layers):
        row = [str(layer)]
        for m in VARIANTS:
            diag, hit = summary(cos[m][p, layer])
            row.append(f"{diag.mean():.2f} / {diag.min():.2f} / {int(hit.sum())}")
        rows.append(row)
    out.append(table(["layer", *VARIANTS], rows))
    out.append("\n## Per position (middle layers): same-role cosine mean, nearest\n")
    rows = [[f"{k - len(names)} `{tok}`"] + [f"{d.mean():.3f}, {h.float().sum(-1).mean():.1f}/{R}"
                                             for d, h in (summary(cos[m][k, mid]) for m in VARIANTS)]
            for k, tok in enumerate(names)]
    out.append(table(["position", *VARIANTS], rows))
    out.append("\n## Per role (position -1, middle layers): same-role cosine mean / min, rank of own "
               "counterpart\n")
    rows = []
    for i, role in enumerate(roles):
        row = [role]
        for m in VARIANTS:
            c = cos[m][p, mid]  # [L_mid, R, R]
            rank = (c[:, i] > c[:, i, i : i + 1]).sum(-1).float().mean() + 1
            row.append(f"{c[:, i, i].mean():.2f} / {c[:, i, i].min():.2f} / {rank:.1f}")
        rows.append(row)
    out.append(table(["role", *VARIANTS], rows))
    layer = mid[len(mid) // 2]
    for m in ("raw", "centred"):
        out.append(f"\n## Cosine matrix, {m}: ours (rows) x theirs (columns), layer {layer}, position -1\n")
        out.append("Columns are numbered as the rows; **bold** = the row's maximum.\n")
        c = cos[m][p, layer]
        rows = [[f"{i + 1} {role}"] + [f"**{c[i, j]:.2f}**" if j == int(c[i].argmax()) else f"{c[i, j]:.2f}"
                                       for j in range(R)] for i, role in enumerate(roles)]
        out.append(table(["ours \\ theirs"] + [str(j + 1) for j in range(R)], rows))
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authors", type=Path, default=REPO.parent / "shared" / "data" / "role-vectors-paper")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "fidelity-smollm2-135m.md")
    ap.add_argument("--roles", default="all")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--n-base", type=int, default=1024, help="base prompts per side (as shipped)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours", type=Path, default=None, help="read our vectors from a `rolevec extract` dir")
    ap.add_argument("--theirs", type=Path, default=None, help="read the authors' vectors likewise")
    ap.add_argument("--no-split-half", action="store_true", help="skip the split-half reliability pass")
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolevec_lmeval.embedded import embedded_model_dir
    from rolevec_lmeval.extract import mean_activations
    from rolevec_lmeval.prompts import resolve_roles

    roles = resolve_roles(args.roles)
    path = embedded_model_dir()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    ours, t_ours = load_dir(args.ours, roles, args) if args.ours else extract(model, tok, None, roles, args)
    theirs, t_theirs = (load_dir(args.theirs, roles, args) if args.theirs
                        else extract(model, tok, args.authors, roles, args))
    bases = {"ours": samples(None, roles[:1], args)[1], "theirs": samples(args.authors, roles[:1], args)[1]}
    base_means, names = mean_activations(model, tok, bases, batch_size=args.batch_size)
    shift = (base_means["ours"] - base_means["theirs"]).float()  # [k, L, d]
    raw = [torch.stack([v[r].directions for r in roles]) for v in (ours, theirs)]  # [R, k, L, d]
    centred = tuple(torch.stack([v[r].centered for r in roles]) for v in (ours, theirs))
    vs = {"raw": tuple(raw), "centred": centred, "raw, common base": (raw[0] + shift, raw[1])}
    n_layers = raw[0].shape[2]
    mid = list(range(n_layers // 3, 2 * n_layers // 3))
    sides = {} if args.no_split_half else {"ours": None, "theirs": args.authors}
    halves = {side: split_half(model, tok, d, roles, args, mid) for side, d in sides.items()}
    if t_ours == t_ours:
        timing = (f"Extraction time ({len(roles)} roles + base, {torch.get_num_threads()} threads, shared "
                  f"machine): ours {t_ours:.0f} s, theirs {t_theirs:.0f} s. ")
    else:
        timing = "Both sides written by `rolevec extract` (all positions) and read back here. "
    setup = (f"Role vectors (difference of means at the input of every block) from our prompt sets "
             f"(`rolevec_lmeval/prompts/data`) and from the authors' sets (Potertì et al., "
             f"`target_train_<role>.json` + `base_train.json`): same code, model, seed ({args.seed}), "
             f"{args.n} prompts per role, {args.n_base} base prompts, batch size {args.batch_size}, "
             f"float32 on CPU. {timing}Regenerate with `python scripts/fidelity_report.py`.\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(vs, shift, halves, roles, names, args, setup))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
