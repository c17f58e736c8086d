"""A tiny study (3 accelerators x 7 batches x 2 TP degrees) written into a temporary folder, and
its exact front computed the plain way: every point through `dse.evaluate`, dominance by hand."""
from __future__ import annotations

import itertools
from pathlib import Path

import dse

TINY = """
name = "tiny"
workload = "llama-3-8b"
mode = "serve"
trials = 20
seed = 3
sampler = "random"
population = 8
constraints = ["tokens_per_s <= 6000"]

[scenario]
input_len = 512
output_len = 128

[space.param.hardware]
choices = ["h100-sxm", "a100-sxm-80gb", "l4"]
[space.param.batch]
pow2 = [1, 64]
[space.param.tp]
pow2 = [1, 2]
[[space.rule]]
name = "tp only where GPUs are linked"
require = "tp == 1 or hardware != 'l4'"

[objectives]
[[objectives.objective]]
metric = "request_latency_s"
direction = "minimize"
reference = 100.0
[[objectives.objective]]
metric = "tokens_per_s"
direction = "maximize"
reference = 0.0
"""
HARDWARE, BATCHES, TPS = ("h100-sxm", "a100-sxm-80gb", "l4"), (1, 2, 4, 8, 16, 32, 64), (1, 2)


def write_tiny(folder: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def tiny_point(hardware: str, batch: int, tp: int) -> dict:
    return dse.evaluate(workload="llama-3-8b", mode="serve", input_len=512, output_len=128, hardware=hardware,
                        batch=batch, tp=tp)


def tiny_points() -> list[tuple[tuple, dict]]:
    """Every design point the rule allows, with its metrics."""
    return [((h, b, t), tiny_point(h, b, t)) for h, b, t in itertools.product(HARDWARE, BATCHES, TPS)
            if t == 1 or h != "l4"]


def hand_front(points: list[tuple[tuple, dict]]) -> set[tuple]:
    """Designs of the feasible points no other feasible point dominates (min latency, max tokens/s)."""
    ok = [(d, m) for d, m in points if m["feasible"] and m["tokens_per_s"] <= 6000]

    def dominates(a: dict, b: dict) -> bool:
        better_or_equal = a["request_latency_s"] <= b["request_latency_s"] and a["tokens_per_s"] >= b["tokens_per_s"]
        return better_or_equal and (a["request_latency_s"] < b["request_latency_s"] or
                                    a["tokens_per_s"] > b["tokens_per_s"])

    return {d for d, m in ok if not any(dominates(o, m) for _, o in ok)}
