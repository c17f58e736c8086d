"""How fast `evaluate` is: one design point at a time, and a population of 10^6 column-wise.

    python bench/speed.py            # full run (10^6-point populations)
    python bench/speed.py --quick    # 10^5 points, for a smoke test

Single points: every call a new batch size, so no cache answers it ("distinct"), and 64 points
revisited ("repeated", the cached path samplers hit); the median of 5 repeats of N calls.
Populations are random frames over batch and sequence lengths for one workload, hardware
and mode (the case a sweep or a population sampler hands over), and, with economics on (a horizon
given), over eight regions; best of 3, with the peak resident memory of the process. Last, one
serving population over four deployments (8B on H100, 70B on H100 TP4, 8B on L40S TP4 and on MI300X
TP2), its rate and how many of 200 sampled rows `evaluate` answers alike.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import numpy as np
import pandas as pd

import dse
from dse import evaluation

POINTS = {
    "infer llama-3-8b": dict(workload="llama-3-8b", hardware="h100", mode="infer", seq_len=512),
    "serve llama-3-8b": dict(workload="llama-3-8b", hardware="h100", mode="serve", input_len=512, output_len=128),
    "serve llama-3-70b tp4": dict(workload="llama-3-70b", hardware="h100", mode="serve", tp=4, input_len=512,
                                  output_len=128),
    "serve 8b l40s tp4": dict(workload="llama-3-8b", hardware="l40s", mode="serve", tp=4, input_len=512,
                              output_len=128),
    "serve 8b mi300x tp2": dict(workload="llama-3-8b", hardware="mi300x", mode="serve", tp=2, input_len=512,
                                output_len=128),
    "serve 8b at a rate": dict(workload="llama-3-8b", hardware="h100", mode="serve", input_len=512, output_len=128,
                               qps=20.0),
    "train llama-3-8b": dict(workload="llama-3-8b", hardware="h100", mode="train", seq_len=2048),
    "infer resnet-50": dict(workload="resnet-50", hardware="a100", mode="infer"),
    "serve 8b + economics": dict(workload="llama-3-8b", hardware="h100", mode="serve", input_len=512,
                                 output_len=128, duration_days=365, purchase="buy"),
    "train 8b + economics": dict(workload="llama-3-8b", hardware="h100", mode="train", seq_len=2048, tokens=1e12),
}
REGIONS = ["us-average", "ca-quebec", "poland", "us-texas", "france", "germany", "japan", "india"]
# Serving deployments side by side in one population, as a study over accelerators hands them over
# (issue 12: "a 10^6-point population including L40S TP4 and MI300X TP2"): (workload, hardware, tp).
DEPLOYMENTS = [("llama-3-8b", "h100", 1), ("llama-3-70b", "h100", 4), ("llama-3-8b", "l40s", 4),
               ("llama-3-8b", "mi300x", 2)]


def single(point: dict, calls: int, distinct: bool) -> float:
    """Evaluations per second, one design point per call: every call a new point (distinct), or 64
    points visited over and over, as a sampler over a discrete space does (answered from the cache)."""
    rates = []
    for _ in range(5):
        evaluation._cached_metrics.cache_clear()
        if not distinct:
            for i in range(64):
                dse.evaluate(**point, batch=1 + i)
        start = time.perf_counter()
        for i in range(calls):
            dse.evaluate(**point, batch=1 + (i if distinct else i % 64))
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)


def population(point: dict, size: int, seed: int = 0) -> float:
    """Design points per second through `evaluate_many` on a random frame of `size` rows."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({k: [v] * size for k, v in point.items()})
    frame["batch"] = rng.integers(1, 256, size)
    if point["mode"] == "serve":
        frame["input_len"] = rng.integers(64, 4096, size)
        frame["output_len"] = rng.integers(16, 1024, size)
    elif "seq_len" in point:
        frame["seq_len"] = rng.choice([512, 1024, 2048, 4096], size)
    if point["mode"] == "train":
        frame["batch"] = frame["batch"] * 8
    if "duration_days" in point or "tokens" in point:  # a study over regions: one group per region
        frame["region"] = rng.choice(REGIONS, size)
    return points_per_second(frame)


def mixed_population(size: int, seed: int = 0) -> pd.DataFrame:
    """A serving population over `DEPLOYMENTS`, batch and request lengths drawn at random per row."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(DEPLOYMENTS), size)
    workload, hardware, tp = (np.array([d[k] for d in DEPLOYMENTS], dtype=object)[pick] for k in range(3))
    return pd.DataFrame({"workload": workload, "hardware": hardware, "mode": "serve", "tp": tp.astype(int),
                         "batch": rng.integers(1, 256, size), "input_len": rng.integers(64, 4096, size),
                         "output_len": rng.integers(16, 1024, size)})


def agreeing_rows(frame: pd.DataFrame, out: pd.DataFrame, sample: int, seed: int = 1) -> int:
    """How many of `sample` random rows `evaluate` answers, metric by metric, as `out` has them (to a
    relative 1e-9, the tests' tolerance); the caller compares the count with `sample`."""
    rows = np.random.default_rng(seed).choice(len(frame), sample, replace=False)
    same = 0
    for i in rows:
        point = {k: v.item() if isinstance(v, np.generic) else v for k, v in frame.iloc[i].items()}
        single = dse.evaluate(**point)
        same += all(np.isclose(float(out[k].iloc[i]), float(v), rtol=1e-9, atol=0.0) if not isinstance(v, str)
                    else out[k].iloc[i] == v for k, v in single.items() if k != "infeasible_reasons")
    return same


def points_per_second(frame: pd.DataFrame) -> float:
    """Rows of `frame` per second through `evaluate_many`, the best of 3 runs."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        dse.evaluate_many(frame)
        best = min(best, time.perf_counter() - start)
    return len(frame) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size = 10**5 if args.quick else 10**6
    dse.evaluate(**POINTS["infer llama-3-8b"])  # load the catalog once
    calls = 1000 if args.quick else 4000
    print(f"{'case':<24} {'distinct (eval/s)':>18} {'repeated (eval/s)':>18} {'population (points/s)':>22}")
    for name, point in POINTS.items():
        print(f"{name:<24} {single(point, calls, True):>18,.0f} {single(point, calls, False):>18,.0f} "
              f"{population(point, size):>22,.0f}")
    frame = mixed_population(size)
    rate = points_per_second(frame)
    sample = 200
    same = agreeing_rows(frame, dse.evaluate_many(frame), sample)
    print(f"serve mixed ({', '.join(f'{w} {h} tp{t}' for w, h, t in DEPLOYMENTS)}): {rate:,.0f} points/s; "
          f"evaluate agrees on {same} of {sample} sampled rows")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"population size {size:,}; peak resident memory {peak:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
