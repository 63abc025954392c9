"""Sweep fast path vs naive lm-eval runs for the same grid on one subject.

Naive: one ``lm_eval.simple_evaluate`` per alpha with ``rolevec_hf`` steering (model loaded once, only its
steering swapped). Fast: ``SweepEngine`` capture once per batch + one stacked tail forward for all alphas.
Both include tokenization; medians over interleaved rounds. The bound for a K-alpha sweep at layer l
of an L-block model is (l + K(L-l)) / (K L) (goal: ratio <= bound + 0.10). Also printed: tokens/s with
and without computing logits only at scored positions, and bf16 vs fp32 (speed and accuracy).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 nice -n 10 python bench/bench_sweep.py --limit 40 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mmlu_high_school_chemistry")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--alphas", default="0.5,1,2,4,8")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-extras", action="store_true", help="only the fast-vs-naive ratio")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import lm_eval

    from rolevec_lmeval.interventions import Steering, make_add, n_layers_of
    from rolevec_lmeval.model import RoleVecLM
    from rolevec_lmeval.sweep_engine import SweepEngine
    from rolevec_lmeval.sweep_tasks import encode, load_tasks, questions_of, score, task_manager
    from rolevec_lmeval.vectors import RoleVector

    alphas = [float(a) for a in args.alphas.split(",")]
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    vec = RoleVector("bench", torch.randn(1, 30, 576) * 0.5)
    vec.save(tmp / "bench.safetensors")
    d = vec.direction(args.layer, -1)
    lm = RoleVecLM(batch_size=args.batch_size, device="cpu")
    n_blocks, k = n_layers_of(lm.model), len(alphas)
    task = load_tasks([args.task], args.split)[args.task]

    def naive() -> list[float]:
        accs = []
        for a in alphas:
            lm.steerings = [Steering(d, args.layer, a, "add")]
            out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=args.limit, verbosity="ERROR",
                                          task_manager=task_manager())
            accs.append(out["results"][args.task]["acc,none"])
        lm.steerings = []
        return accs

    def fast(model_lm=lm, stack: int = 8) -> list[float]:
        qs = questions_of(task, args.limit)
        enc = encode(model_lm, qs)
        engine = SweepEngine(model_lm, batch_size=args.batch_size, stack=stack)
        n = len(enc.req_cont)
        ll = torch.zeros(k, n, dtype=torch.float64)
        hit = torch.ones(k, n, dtype=torch.bool)
        for batch in engine.batches(enc):
            h = engine.capture(batch, args.layer)
            edits = [make_add(d, a) for a in alphas]
            for j, (l_, g) in enumerate(engine.tail(batch, args.layer, h, edits, n)):
                ll[j] += l_
                hit[j] &= g
        return [statistics.mean(map(int, score(qs, enc, ll[j].tolist(), hit[j].tolist())[args.task]))
                for j in range(k)]

    times: dict[str, list[float]] = {"naive": [], "fast": []}
    accs: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, fn in (("naive", naive), ("fast", fast)):
            t0 = time.perf_counter()
            accs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    t_naive, t_fast = statistics.median(times["naive"]), statistics.median(times["fast"])
    bound = (args.layer + k * (n_blocks - args.layer)) / (k * n_blocks)
    print(f"task={args.task} split={args.split} limit={args.limit} layer={args.layer}/{n_blocks} K={k} "
          f"batch={args.batch_size} threads={args.threads} rounds={args.rounds}")
    print(f"naive {t_naive:.1f} s  fast {t_fast:.1f} s  ratio {t_fast / t_naive:.3f}  "
          f"bound {bound:.3f}  goal <= {bound + 0.10:.3f}  "
          f"{'OK' if t_fast / t_naive <= bound + 0.10 else 'ABOVE GOAL'}")
    print(f"same accuracies: {accs['naive'] == accs['fast']} (naive {accs['naive']}, fast {accs['fast']})")
    if not args.skip_extras:
        extras(args, lm, task, questions_of, encode, SweepEngine, fast, alphas)


def extras(args, lm, task, questions_of, encode, engine_cls, fast, alphas) -> None:
    """Logits only at scored positions vs full logits; bf16 vs fp32 speed and accuracy."""
    from rolevec_lmeval.model import RoleVecLM

    qs = questions_of(task, args.limit)
    enc = encode(lm, qs)
    engine = engine_cls(lm, batch_size=args.batch_size)
    batches = engine.batches(enc)
    tokens = sum(int(b.ids.numel()) for b in batches)

    def tok_s(call) -> float:
        t0 = time.perf_counter()
        for _ in range(args.rounds):
            for b in batches:
                with torch.no_grad():
                    call(b)
        return tokens * args.rounds / (time.perf_counter() - t0)

    full = tok_s(lambda b: torch.log_softmax(lm._model_call(b.ids), -1))
    kept = tok_s(lambda b: engine._logprobs(b.ids, b.gather))
    print(f"logits at scored positions only: {kept:.0f} tok/s vs full logits {full:.0f} tok/s "
          f"({100 * (kept / full - 1):+.0f}%)")
    bf = RoleVecLM(batch_size=args.batch_size, device="cpu", dtype="bfloat16")
    bf_engine = engine_cls(bf, batch_size=args.batch_size)
    bf_batches = bf_engine.batches(encode(bf, qs))
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for b in bf_batches:
            bf_engine._logprobs(b.ids, b.gather)
    bf_tok = tokens * args.rounds / (time.perf_counter() - t0)
    acc32, acc16 = fast(), fast(bf)
    diffs = [f"{100 * (b - a):+.1f}" for a, b in zip(acc32, acc16, strict=True)]
    print(f"bf16: {bf_tok:.0f} tok/s vs fp32 {kept:.0f} tok/s ({bf_tok / kept:.2f}x); accuracy bf16 - fp32 "
          f"per alpha {alphas}: {diffs} points (n={len(qs)})")


if __name__ == "__main__":
    main()
