"""dse against published serving measurements of engines it was never fitted on (gpt-fast, TensorRT-LLM, NIM).

    python bench/heldout_serving.py          # every row: predicted, measured, error; medians per engine and metric

Rows: bench/calibration/serving_heldout.csv, each with its source, engine version and run settings.
Nothing is fitted on them: the engine parameters in `dse.models.serving` stay those fitted on vLLM
(`bench/vllm_sim2real.py`) and the device efficiencies those of `dse.models.calibration`. Each row
becomes the design point its run describes, by its `scenario`:
* `batch1` (gpt-fast `generate.py`): one request at a time, a static batch of 1 (`--scheduler
  static --batch 1 --cuda-graphs on`: its decode step runs under torch.compile's "reduce-overhead"
  mode, a CUDA graph; its prefill launches per kernel); gpt-fast's tokens/s is new tokens over the
  call's wall time, prefill included, which is dse's `tokens_per_s` for that batch, O / (TTFT +
  (O - 1) ITL) (`serving.static_tokens_per_s`).
* `closed-loop` (NIM under AIPerf at fixed concurrency C): continuous batching with C requests in
  flight and no `--qps`, the replica running full at `--batch C` (`serve.continuous`: a closed loop,
  each request replaced as it ends); TTFT, ITL and output tokens/s of the replica.
* `max-load` (`trtllm-bench throughput`, every request queued at once): continuous batching with
  no `--qps` and no `--batch`, so as many sequences as the KV cache holds (trtllm-bench sizes
  max_batch_size from free KV memory); output tokens/s of the TP group is the replica's capacity,
  `capacity_requests_per_s` x O: with the queue never empty every freed slot is refilled at once
  (a closed loop's `tokens_per_s` counts the time its requests wait for step-budget room with no slot).
TP is the row's, on one replica (`--gpus` = `--tp`).
"""
from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import dse

CSV = Path(__file__).parent / "calibration" / "serving_heldout.csv"
SCHEDULER = {"batch1": "static", "closed-loop": "continuous", "max-load": "continuous"}
METRIC = {"tokens_per_s_per_user": ("tokens_per_s", 1.0), "output_tokens_per_s": ("tokens_per_s", 1.0),
          "ttft_ms": ("ttft_s", 1e3), "itl_ms": ("itl_s", 1e3)}


def rows() -> list[dict]:
    with open(CSV, newline="") as f:
        return list(csv.DictReader(f))


def point(r: dict) -> dict:
    """The design point a row's run describes (see the module docstring)."""
    tp = int(r["tp"])
    p = dict(workload=r["dse_workload"], hardware=r["dse_hardware"], mode="serve", precision=r["dse_precision"],
             tp=tp, gpus=tp, input_len=int(r["input_len"]), output_len=int(r["output_len"]),
             scheduler=SCHEDULER[r["scenario"]], cuda_graphs="on")
    if r["dse_weight_precision"]:
        p["weight_precision"] = r["dse_weight_precision"]
    if r["batch_or_concurrency"]:
        p["batch"] = int(r["batch_or_concurrency"])
    return p


def predict(r: dict) -> tuple[float, dict]:
    """dse's value of the row's metric, in the row's unit, and the point's metrics."""
    m = dse.evaluate(**point(r))
    if r["scenario"] == "max-load":
        return float(m["capacity_requests_per_s"]) * int(r["output_len"]), m
    key, scale = METRIC[r["metric"]]
    return float(m[key]) * scale, m


def main() -> int:
    scored = []
    print(f"{'row':<34} {'metric':<22} {'predicted':>10} {'measured':>10} {'error':>8}")
    for r in rows():
        pred, m = predict(r)
        measured = float(r["value"])
        err = pred / measured - 1.0
        scored.append((r, err))
        flag = "" if m["feasible"] else "  (infeasible: " + "; ".join(m["infeasible_reasons"]) + ")"
        print(f"{r['row_id']:<34} {r['metric']:<22} {pred:>10.2f} {measured:>10.2f} {err:>+8.1%}{flag}")
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r, err in scored:
        groups[(r["engine"], r["metric"])].append(abs(err))
        groups[(r["engine"], "all")].append(abs(err))
    groups[("all engines", "all")] = [abs(e) for _, e in scored]
    print(f"\n{'engine':<14} {'metric':<22} {'n':>3} {'median |error|':>15}")
    for (engine, metric), errs in groups.items():
        print(f"{engine:<14} {metric:<22} {len(errs):>3} {statistics.median(errs):>15.1%}")
    print("\nlargest errors:")
    for r, err in sorted(scored, key=lambda x: -abs(x[1]))[:5]:
        print(f"  {r['row_id']:<34} {r['metric']:<22} {err:>+8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
