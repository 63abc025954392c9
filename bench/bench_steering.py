"""Steering overhead: rolevec_hf steered / unsteered, and vs lm-eval's built-in ``steered`` model.

All three evaluate the same MMLU subject (``--limit`` questions), batch size and embedded model in one
process, interleaved over several rounds; the median wall time of each is compared. Goal: <= 1.02.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python bench/bench_steering.py --limit 40 --rounds 3
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
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--alpha", type=float, default=3.0)
    args = ap.parse_args()

    import lm_eval
    from lm_eval.models.hf_steered import SteeredModel

    from rolevec_lmeval.embedded import embedded_model_dir
    from rolevec_lmeval.model import RoleVecLM
    from rolevec_lmeval.vectors import RoleVector

    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    direction = torch.randn(1, 30, 576) * 0.5
    RoleVector("bench", direction, meta={"model_slug": "smollm2-135m-instruct"}).save(
        tmp / "bench.safetensors"
    )
    # lm-eval's steered model hooks the *output* of a module: output of block l-1 == input of block l.
    torch.save(
        {
            f"layers.{args.layer - 1}": {
                "steering_vector": direction[0, args.layer],
                "steering_coefficient": args.alpha,
                "action": "add",
                "bias": None,
                "head_index": None,
            }
        },
        tmp / "steer.pt",
    )
    common = {"batch_size": args.batch_size, "device": "cpu"}
    models = {
        "unsteered": RoleVecLM(**common),
        "rolevec_hf": RoleVecLM(role="bench", layer=args.layer, alpha=args.alpha, vectors=str(tmp), **common),
        "lm-eval steered": SteeredModel(
            pretrained=str(embedded_model_dir()), steer_path=str(tmp / "steer.pt"), **common
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in models}
    accs: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, lm in models.items():
            t0 = time.perf_counter()
            out = lm_eval.simple_evaluate(model=lm, tasks=[args.task], limit=args.limit, verbosity="ERROR")
            times[name].append(time.perf_counter() - t0)
            accs[name] = out["results"][args.task]["acc,none"]
    base = statistics.median(times["unsteered"])
    print(
        f"task={args.task} limit={args.limit} batch={args.batch_size} rounds={args.rounds} "
        f"threads={torch.get_num_threads()}"
    )
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:>16}: median {med:7.2f} s  ratio vs unsteered {med / base:5.3f}  acc {accs[name]:.3f}")
    ratio = statistics.median(times["rolevec_hf"]) / statistics.median(times["lm-eval steered"])
    print(f"rolevec_hf / lm-eval steered: {ratio:.3f}  (same vector, same layer: accuracies should match)")


if __name__ == "__main__":
    main()
