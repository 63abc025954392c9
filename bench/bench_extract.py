"""Extraction overhead and memory: ``extract_role_vectors`` vs a plain forward over the same prompts.

Time: one role of ``--n`` prompts + ``--n`` base prompts (pooled from the shipped prompt sets), the same
length-sorted batches of ``--batch-size``; extraction (tokenisation, hooks, float64 sums, centring, end to
end) and a plain ``model(...)`` forward (full model with logits; tokenisation included) are interleaved over
``--rounds`` rounds, median wall and CPU (process) times compared. Goal: <= 1.10. On a shared machine the
CPU-time ratio with ``--threads 1`` is the stable one. Also reported: a forward of the decoder stack alone
(no LM head), for the hook overhead in isolation (extraction stops at the last block's input).
Memory: peak RSS of a fresh process extracting ``--memory`` prompt counts per side (default 128 and 1024;
the same 128 prompts cycled, so that only the count changes, not the longest batch), and its growth over the
peak of a one-batch extraction; it should not grow with the number of prompts.

    python bench/bench_extract.py --n 128 --batch-size 32 --rounds 3 [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def pooled_prompts(n: int) -> tuple[list[str], list[str]]:
    """``n`` role-like prompts (all shipped role sets pooled, file order) and ``n`` base prompts (cycled)."""
    from rolevec_lmeval.prompts import BASE, available_roles, load_prompt_set

    pool = [p for r in available_roles(None) for p in _try_load(r)]
    base = load_prompt_set(None, BASE)
    return [pool[i % len(pool)] for i in range(n)], [base[i % len(base)] for i in range(n)]


def _try_load(role: str) -> list[str]:
    from rolevec_lmeval.errors import RoleVecError
    from rolevec_lmeval.prompts import load_prompt_set

    try:
        return load_prompt_set(None, role)
    except RoleVecError:  # a prompt set still being written
        return []


def load_model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolevec_lmeval.embedded import embedded_model_dir

    path = embedded_model_dir()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def plain_forward(module, tokenizer, prompts: list[str], batch_size: int) -> None:
    """The same tokenisation, sorting and padding as extraction, then ``module(...)`` on every batch."""
    from rolevec_lmeval.extract import _batch, encode

    ids = sorted(encode(tokenizer, prompts, True, 1, None), key=lambda x: -len(x))
    for s in range(0, len(ids), batch_size):
        input_ids, mask, pos = _batch(ids[s : s + batch_size], tokenizer.pad_token_id, "right")
        module(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False)


def timing(args: argparse.Namespace) -> None:
    from rolevec_lmeval.extract import extract_role_vectors

    model, tok = load_model()
    role, base = pooled_prompts(args.n)
    runs = {
        "extract": lambda: extract_role_vectors(model, tok, {"bench": role}, base, batch_size=args.batch_size,
                                                progress=False),
        "plain forward": lambda: plain_forward(model, tok, role + base, args.batch_size),
        "decoder only": lambda: plain_forward(model.base_model, tok, role + base, args.batch_size),
    }
    runs["plain forward"]()  # warm-up
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in runs}
    ref = med["plain forward"]
    print(f"prompts={2 * args.n} (role {args.n} + base {args.n}) batch={args.batch_size} "
          f"rounds={args.rounds} threads={torch.get_num_threads()}")
    for name, (w, c) in med.items():
        print(f"{name:>14}: wall {w:7.2f} s ({2 * args.n / w:5.1f} prompts/s) ratio {w / ref[0]:5.3f} | "
              f"cpu {c:7.2f} s ratio {c / ref[1]:5.3f}")
    ext, dec = med["extract"], med["decoder only"]
    print(f"extract / decoder-only forward: wall {ext[0] / dec[0]:.3f}, cpu {ext[1] / dec[1]:.3f}")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(n: int, batch_size: int) -> None:
    from rolevec_lmeval.extract import extract_role_vectors

    model, tok = load_model()
    role, base = ([x[i % len(x)] for i in range(n)] for x in pooled_prompts(128))
    extract_role_vectors(model, tok, {"bench": role[:batch_size]}, base[:1], batch_size=batch_size,
                         progress=False)  # one batch: the allocator's working set
    before = _rss_mib()
    extract_role_vectors(model, tok, {"bench": role}, base, batch_size=batch_size, progress=False)
    print(json.dumps({"n": n, "rss_after_load_mib": before, "peak_mib": _rss_mib()}))


def memory(args: argparse.Namespace) -> None:
    for n in args.memory:
        cmd = [sys.executable, __file__, "--memory-child", str(n), "--batch-size", str(args.batch_size),
               "--threads", str(torch.get_num_threads())]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{n:>5} prompts/role (+{n} base): peak RSS {res['peak_mib']:7.1f} MiB, "
              f"growth over a one-batch extraction {res['peak_mib'] - res['rss_after_load_mib']:6.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory", type=int, nargs="*", default=[128, 1024])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        return memory_child(args.memory_child, args.batch_size)
    if args.rounds:
        timing(args)
    if args.memory:
        memory(args)


if __name__ == "__main__":
    main()
