"""Benchmark: `rolevec data mmlu` over all 57 subjects, and lm-eval loading the `mmlu` group from that cache.

    python bench/bench_mmlu_cache.py [--src ../shared/data/mmlu] [--repeat 3] [--json]

Measured (wall clock, each build into a fresh temp cache, everything offline):
  cli_cold     `rolevec data mmlu --from SRC` in a new interpreter (imports included), empty cache
  cli_warm     the same command again (every subject already cached: validation + skip)
  build_cold   build_mmlu_cache() in-process (imports already done), empty cache
  lm_eval_*    new interpreter: import lm_eval.tasks, TaskManager() index, TaskManager.load(["mmlu"])
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parents[1]
LOAD_MMLU = """
import json, time
t0 = time.perf_counter()
from lm_eval.tasks import TaskManager
t1 = time.perf_counter()
manager = TaskManager()
t2 = time.perf_counter()
loaded = manager.load(["mmlu"])
t3 = time.perf_counter()
rows = sum(len(task.eval_docs) for task in loaded["tasks"].values())
print(json.dumps({"lm_eval_import": t1 - t0, "lm_eval_index": t2 - t1, "lm_eval_load_mmlu": t3 - t2,
                  "tasks": len(loaded["tasks"]), "test_rows": rows}))
"""


def timed_run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(REPO.parent / "shared" / "data" / "mmlu"),
                        help="local MMLU copy (cais/mmlu parquet or Hendrycks CSV layout)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from rolevec_lmeval.mmlu_cache import build_mmlu_cache

    times: dict[str, list[float]] = {}
    extra: dict[str, int] = {}
    cli = [sys.executable, "-m", "rolevec_lmeval.cli", "data", "mmlu", "--from", args.src, "--cache-dir"]
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-mmlu-") as tmp:
            env = {**os.environ, "HF_DATASETS_CACHE": tmp}
            times.setdefault("cli_cold", []).append(timed_run([*cli, tmp], env)[0])
            times.setdefault("cli_warm", []).append(timed_run([*cli, tmp], env)[0])
            _, out = timed_run([sys.executable, "-c", LOAD_MMLU], env)
            measured = json.loads(out.strip().splitlines()[-1])
            extra = {k: measured.pop(k) for k in ("tasks", "test_rows")}
            for key, value in measured.items():
                times.setdefault(key, []).append(value)
        with tempfile.TemporaryDirectory(prefix="bench-mmlu-") as tmp:
            start = time.perf_counter()
            report = build_mmlu_cache(args.src, tmp)
            times.setdefault("build_cold", []).append(time.perf_counter() - start)
            assert report.ok and len(report.built) == 57, report.summary()

    result = {key: round(statistics.median(values), 3) for key, values in times.items()}
    result.update(extra, repeat=args.repeat, cpus=os.cpu_count() or 0)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:20s} {value}{' s' if isinstance(value, float) else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
