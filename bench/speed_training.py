"""How fast distributed-training points evaluate: one 8-GPU layout against one 98,304-GPU layout, a
population of random layouts column-wise, and ranking every layout of a 16,384-GPU cluster.

    python bench/speed_training.py            # 10^6-point population
    python bench/speed_training.py --quick    # 10^5 points

Single points: every call a new global batch, so no cache answers it; median of 5 repeats of N calls.
The population draws tp, pp, cp, micro-batch, virtual stages, ZeRO stage and recomputation at random
for Llama-3-70B on H100 (valid layouts only: dp = GPUs / (tp pp cp) with 4,096 GPUs); best of 3.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import pandas as pd
from speed import points_per_second  # bench/speed.py, beside this script

import dse
from dse import evaluation
from dse.plan import plan_training

BASE = dict(workload="llama-3-405b", hardware="h100-sxm", mode="train", precision="bf16", seq_len=8192, tp=8,
            micro_batch=1, zero=1)
SMALL = dict(BASE, gpus=8)  # the same model and code path: only the layout's size differs
LARGE = dict(BASE, gpus=98304, pp=16)


def single(point: dict, calls: int, step: int) -> float:
    rates = []
    for _ in range(5):
        evaluation._cached_metrics.cache_clear()
        start = time.perf_counter()
        for i in range(calls):
            dse.evaluate(**point, batch=step * (1 + i))
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)


def population(size: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    gpus = 4096
    tp = rng.choice([1, 2, 4, 8], size)
    pp = rng.choice([1, 2, 4, 8, 16], size)
    cp = rng.choice([1, 2, 4], size)
    dp = gpus // (tp * pp * cp)
    mb = rng.choice([1, 2], size)
    frame = pd.DataFrame({"workload": "llama-3-70b", "hardware": "h100-sxm", "mode": "train", "seq_len": 8192,
                          "gpus": gpus, "tp": tp, "pp": pp, "cp": cp, "micro_batch": mb,
                          "vp": np.where(pp > 1, rng.choice([1, 2, 4], size), 1), "zero": rng.choice([0, 1, 3], size),
                          "batch": dp * mb * rng.integers(1, 64, size),
                          "recompute": rng.choice(["selective", "full"], size)})
    return points_per_second(frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size = 10**5 if args.quick else 10**6
    calls = 300 if args.quick else 1000
    dse.evaluate(**SMALL, batch=8)  # load the catalog once
    print(f"one point, 8 GPUs (405b TP8):            {single(SMALL, calls, 8):>10,.0f} eval/s")
    print(f"one point, 98,304 GPUs (405b TP8 PP16):  {single(LARGE, calls, 768):>10,.0f} eval/s")
    print(f"population of {size:,} random layouts:  {population(size):>10,.0f} points/s")
    start = time.perf_counter()
    ranked = plan_training("llama-3-405b", "h100-sxm", 16384, 2048, seq_len=8192)
    print(f"plan: every layout of 16,384 GPUs ({len(ranked):,} layouts) ranked in "
          f"{time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
