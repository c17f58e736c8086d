"""Training layout planning: every valid way to lay a transformer out on a cluster, evaluated column-wise
through `evaluate_many` and ranked (feasible first, then tokens/s).

A layout is (tp, pp, cp, dp, micro-batch, virtual stages, ZeRO stage, recomputation) with
tp x pp x cp x dp = GPUs. The enumeration builds only layouts the train mode accepts: tp divides the
attention and KV heads and stays inside a node (tensor parallelism across nodes is never competitive,
Narayanan et al. 2021, takeaway #1), pp is at most the layers, pp x vp at most the layers, cp divides
the sequence, and the global batch is a whole number of dp x micro-batch steps.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from dse import config as cfg
from dse.catalog import Transformer
from dse.errors import UserInputError
from dse.evaluation import evaluate_many, evaluate_point
from dse.modes.setup import scale_out_link

LAYOUT = ("tp", "pp", "cp", "dp", "micro_batch", "vp", "zero", "recompute")
SHOWN = ("feasible", "tokens_per_s", "mfu", "step_time_s", "memory_per_gpu_bytes", "bubble_fraction",
         "compute_time_s", "tp_comm_time_s", "pp_comm_time_s", "dp_comm_time_s", "cp_comm_time_s")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layouts(workload: Transformer, gpus: int, global_batch: int, seq_len: int, gpus_per_node: int,
            micro_batches=(1, 2, 4, 8), vps=(1, 2, 4), zero=(0, 1, 3), recompute=("selective", "full"),
            cps=(1, 2, 4, 8)) -> pd.DataFrame:
    """The valid layouts as a frame, one row each (see the module docstring for the rules)."""
    w = workload
    rows = []
    for tp in (t for t in _divisors(gpus) if t <= gpus_per_node and w.heads % t == 0 and w.kv_heads % t == 0):
        for pp in (p for p in _divisors(gpus // tp) if p <= w.layers):
            for cp in (c for c in cps if (gpus // (tp * pp)) % c == 0 and seq_len % c == 0):
                dp = gpus // (tp * pp * cp)
                for mb, vp in itertools.product(micro_batches, vps if pp > 1 else (1,)):
                    if global_batch % (dp * mb) == 0 and pp * vp <= w.layers:
                        rows.append((tp, pp, cp, dp, mb, vp))
    base = pd.DataFrame(rows, columns=list(LAYOUT[:6]))
    extra = pd.DataFrame(list(itertools.product(zero, recompute)), columns=["zero", "recompute"])
    return base.merge(extra, how="cross")


def plan_training(workload: str, hardware: str, gpus: int, global_batch: int, seq_len: int | None = None,
                  precision: str = "bf16", gpus_per_node: int | None = None, **choices) -> pd.DataFrame:
    """Evaluate every valid layout of `workload` on `gpus` GPUs of `hardware` and rank them: feasible
    layouts first, by tokens/s; then the infeasible ones, by memory per GPU. `choices` narrows the
    enumeration (micro_batches, vps, zero, recompute, cps: sequences of values)."""
    w = cfg.resolve_workload(workload, None)
    dev = cfg.resolve_hardware(hardware, None)
    if not isinstance(w, Transformer):
        raise UserInputError("--workload", workload, "a transformer: layouts are planned for tensor, pipeline "
                             "and context parallelism")
    for field, value in (("gpus", gpus), ("global_batch", global_batch)):
        cfg.check_number(field, value)
    seq = int(seq_len or w.seq_len)
    per_node = int(gpus_per_node or scale_out_link(dev)[2])
    frame = layouts(w, int(gpus), int(global_batch), seq, per_node, **choices)
    if frame.empty:
        raise UserInputError("--global-batch", global_batch, f"divisible by some data-parallel degree of {gpus} "
                             "GPUs times a micro-batch: no layout fits")
    points = frame.assign(workload=workload, hardware=hardware, mode="train", precision=precision,
                          batch=int(global_batch), gpus=int(gpus), seq_len=seq, gpus_per_node=per_node)
    metrics = evaluate_many(points)
    out = pd.concat([frame, metrics[[k for k in SHOWN if k in metrics]]], axis=1)
    out["feasible"] = out["feasible"].astype(bool)
    key = np.where(out["feasible"], -out["tokens_per_s"], out["memory_per_gpu_bytes"])
    order = np.lexsort((key, ~out["feasible"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def add_parser(sub) -> None:
    """`dse plan`: rank the training layouts of a model on a cluster."""
    p = sub.add_parser("plan", help="rank every valid training layout of a model on a cluster",
                       description="Enumerate tp x pp x cp x dp layouts (with micro-batch, virtual stages, ZeRO and "
                                   "recomputation), evaluate them all in train mode and rank them.")
    p.add_argument("--workload", required=True, help="catalog transformer (see `dse catalog workloads`)")
    p.add_argument("--hardware", required=True, help="catalog accelerator (see `dse catalog hardware`)")
    p.add_argument("--gpus", required=True, help="GPUs in the cluster")
    p.add_argument("--global-batch", required=True, dest="global_batch", help="samples per optimizer step")
    p.add_argument("--seq-len", dest="seq_len", help="tokens per sample (default: the workload's)")
    p.add_argument("--precision", default="bf16", help="arithmetic (default bf16)")
    p.add_argument("--gpus-per-node", dest="gpus_per_node", help="GPUs per node (default: the catalog node's)")
    p.add_argument("--top", default="10", help="layouts to show (default 10)")
    p.add_argument("--json", action="store_true", help="print the ranked layouts as a JSON list")


def run_cli(args) -> int:
    numbers = {k: int(cfg.check_number(k, getattr(args, k))) for k in ("gpus", "global_batch", "seq_len",
                                                                          "gpus_per_node") if getattr(args, k)}
    if not args.top.isdigit() or int(args.top) < 1:
        raise UserInputError("--top", args.top, "a whole number of layouts >= 1")
    # the precision's own checks, spelt as the CLI spells them, before the population runs
    evaluate_point(workload=args.workload, hardware=args.hardware, mode="train", precision=args.precision)
    ranked = plan_training(args.workload, args.hardware, precision=args.precision, **numbers).head(int(args.top))
    if args.json:
        print(ranked.to_json(orient="records", indent=2))
        return 0
    shown = ranked.assign(memory_gb=ranked["memory_per_gpu_bytes"] / 1e9).drop(columns=["memory_per_gpu_bytes"])
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0
