"""Seed 003, exercise 6 (Pareto-optimal serving): with a $1M annual budget, which accelerator serves
Llama-3-8B at a 4k context cheapest per million generated tokens, and is it always the newest? Then
the discussion question: does an inter-token latency SLA (20 ms) change the answer?

For each accelerator with a price in the catalog and each precision it runs natively, the batch is
swept (powers of two up to what fits) through `dse.evaluate_many` with a 365-day horizon; the best
batch is the one with the lowest cost per million tokens that fits (and meets the SLA when one is
set). The budget buys floor($1M / annual cost of one GPU) GPUs, each running that batch. The seed
asks for batches, so the static scheduler answers it (`scheduler="static"`, prompts prefilled one
at a time); dse's default, continuous batching, would also stretch each decode step by the prefills
of the requests that replace finished ones.

Where the tutorial is wrong or vague:
* It fixes batch 32 for every GPU. Cost per token falls with batch until memory runs out, and the
  largest batch differs by GPU (KV cache per request is fixed, HBM is not), so a fair comparison
  gives each its own best batch.
* "H100 is the sweet spot for fp16": per million tokens, what wins is memory bandwidth and capacity
  per dollar-hour. At GPU-cloud prices the MI300X (5.3 TB/s, 192 GB, ~$2.6/h) is cheapest in fp8 and
  fp16, then B200 in fp8; at hyperscaler on-demand prices (where the catalog has them) the H100 in
  fp8 beats the A100 by 2.3x. The newest part is not automatically the cheapest, and the price class
  (on-demand, reserved, GPU cloud) moves the answer more than the generation does.
* A 20 ms ITL SLA halves the best batch on most parts but barely changes cost per token on the
  high-bandwidth ones, whose ITL at the memory limit is already near the SLA.
* "Budget 20 A100 nodes vs 8 H100 vs 4 B200": a node count is not a budget; the annual cost of
  each fleet comes from its own hourly price (or capex, power and facility when bought).
"""
from __future__ import annotations

import math

import pandas as pd

import dse
from dse.catalog import registry

BUDGET = 1e6
CONTEXT = dict(input_len=3584, output_len=512)  # 4,096 tokens
CANDIDATES = ("a100-sxm-80gb", "h100-sxm", "h200-sxm", "b200", "l40s", "mi300x", "l4")
PRECISIONS = ("fp16", "fp8")
BATCHES = [2 ** k for k in range(11)]
RENTALS = ("rent", "rent-gpu-cloud")  # hyperscaler on-demand list prices; GPU clouds (Lambda, RunPod, Nebius, ...)


def sweep() -> pd.DataFrame:
    rows = [dict(workload="llama-3-8b", hardware=h, mode="serve", precision=p, batch=b, prefill_batch=1,
                 scheduler="static",
                 duration_days=365, purchase=r, **CONTEXT)
            for h in CANDIDATES for p in PRECISIONS if registry("hardware").get(h, "h").peak(p) for b in BATCHES
            for r in RENTALS]
    frame = pd.DataFrame(rows)
    return pd.concat([frame, dse.evaluate_many(frame)], axis=1)


def best(table: pd.DataFrame, itl_slo: float | None = None) -> pd.DataFrame:
    ok = table[table["feasible"] & table["cost_per_mtok_usd"].notna()]
    if itl_slo is not None:
        ok = ok[ok["itl_s"] <= itl_slo]
    picked = ok.loc[ok.groupby(["hardware", "precision", "purchase"])["cost_per_mtok_usd"].idxmin()].copy()
    per_gpu_year = picked["tco_usd"] / picked["fleet_gpus"]
    picked["gpus_in_budget"] = [math.floor(BUDGET / c) for c in per_gpu_year]
    picked["fleet_tokens_per_s"] = picked["gpus_in_budget"] * picked["tokens_per_s"] / picked["fleet_gpus"]
    return picked.sort_values("cost_per_mtok_usd")


def answer() -> dict:
    table = sweep()
    return {"table": table, "best": best(table), "best_slo": best(table, 0.020)}


def show(picked: pd.DataFrame) -> None:
    print(f"{'accelerator':<15} {'prec':<5} {'paid as':<14} {'batch':>5} {'ITL':>7} {'$/GPU-year':>11} {'GPUs':>5} "
          f"{'fleet tok/s':>12} {'$/Mtok':>8}")
    for _, r in picked.iterrows():
        print(f"{r['hardware']:<15} {r['precision']:<5} {r['purchase']:<14} {r['batch']:>5} {r['itl_s'] * 1e3:>5.1f}ms "
              f"{r['tco_usd'] / r['fleet_gpus']:>11,.0f} {r['gpus_in_budget']:>5} {r['fleet_tokens_per_s']:>12,.0f} "
              f"{r['cost_per_mtok_usd']:>8.3f}")


def main() -> None:
    a = answer()
    print("Llama-3-8B, 4k context (3,584 in + 512 out), rented for a year, $1M budget")
    show(a["best"])
    top = a["best"].iloc[0]
    print(f"\nCheapest per million tokens: {top['hardware']} in {top['precision']} at batch {top['batch']} "
          f"({top['purchase']}).")
    print("\nWith an inter-token latency SLA of 20 ms:")
    show(a["best_slo"])
    slo = a["best_slo"].iloc[0]
    print(f"\nUnder the SLA the cheapest is {slo['hardware']} in {slo['precision']} at batch {slo['batch']} "
          f"({slo['purchase']}): the SLA caps the batch, and bandwidth per dollar decides.")


if __name__ == "__main__":
    main()
