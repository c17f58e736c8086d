"""Seed 004 (Hello World: single-node roofline) and seed 003 exercise 1 (the roofline transition).

Questions: ResNet-50 on an A100 in fp16 at batch 1: latency, throughput, bottleneck? How does the
bottleneck move as the batch grows, and where does compute overtake memory? Which of V100, A100 and
H100 has the highest ridge point, and which is fastest at batch 1 and at batch 256? Does int8 change
the batch-1 bottleneck?

Where the seed is wrong: it says ResNet-50 at batch 1 is memory-bound (0.54 ms). Counting every
kernel, neither ceiling binds: ~55 kernel launches take more time than the arithmetic and the
traffic together, so batch 1 is overhead-bound and int8 barely helps it.
"""
from __future__ import annotations

import dse
from dse.catalog import registry

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def run(batch: int, hardware: str = "a100", precision: str = "fp16") -> dict:
    return dse.evaluate(workload="resnet-50", hardware=hardware, mode="infer", batch=batch, precision=precision)


def ridge_point(hardware: str, precision: str = "fp16") -> float:
    """FLOP per byte where the compute and memory ceilings meet: peak / bandwidth."""
    device = registry("hardware").get(hardware, "hardware")
    return device.peak(precision) / device.memory_bandwidth


def answer() -> dict:
    sweep = {b: run(b) for b in BATCHES}
    crossover = next(b for b, m in sweep.items() if m["compute_time_s"] > m["memory_time_s"])
    ridges = {hw: ridge_point(hw) for hw in ("v100", "a100", "h100")}
    fastest = {b: min(ridges, key=lambda hw, b=b: run(b, hw)["latency_s"]) for b in (1, 256)}
    int8 = run(1, precision="int8")
    return {"batch1": sweep[1], "sweep": sweep, "compute_overtakes_memory_at": crossover,
            "ridges": ridges, "highest_ridge": max(ridges, key=ridges.get), "fastest": fastest,
            "int8_batch1": int8, "batch64_bottleneck": sweep[64]["bottleneck"]}


def main() -> None:
    a = answer()
    b1 = a["batch1"]
    print("ResNet-50 on A100, fp16, batch 1")
    print(f"  latency {b1['latency_s'] * 1e3:.3f} ms, throughput {b1['throughput_per_s']:.0f} images/s, "
          f"bottleneck: {b1['bottleneck']}")
    print(f"  compute {b1['compute_time_s'] * 1e3:.3f} ms, memory {b1['memory_time_s'] * 1e3:.3f} ms, "
          f"kernel launches {b1['overhead_time_s'] * 1e3:.3f} ms")
    print("  The seed's 'memory-bound' hides that launch overhead is most of the time at batch 1.\n")
    print(f"{'batch':>6} {'bottleneck':<10} {'images/s':>9} {'latency':>10} {'compute':>9} {'memory':>9}")
    for b, m in a["sweep"].items():
        print(f"{b:>6} {m['bottleneck']:<10} {m['throughput_per_s']:>9.0f} {m['latency_s'] * 1e3:>8.3f}ms "
              f"{m['compute_time_s'] * 1e3:>7.3f}ms {m['memory_time_s'] * 1e3:>7.3f}ms")
    print(f"\nCompute time overtakes memory time at batch {a['compute_overtakes_memory_at']} "
          f"(seed 003 ex. 1); batch 64 is {a['batch64_bottleneck']}-bound (seed 004 ex. 1).")
    print("Ridge points (fp16 dense peak / HBM bandwidth): "
          + ", ".join(f"{hw} {r:.0f} FLOP/B" for hw, r in a["ridges"].items())
          + f" -> highest: {a['highest_ridge']}")
    print(f"Fastest at batch 1: {a['fastest'][1]}; at batch 256: {a['fastest'][256]}")
    i8 = a["int8_batch1"]
    print(f"int8 at batch 1: bottleneck {i8['bottleneck']}, arithmetic intensity "
          f"{i8['arithmetic_intensity']:.0f} FLOP/B (fp16: {b1['arithmetic_intensity']:.0f}): halving the bytes "
          "doubles the intensity, but launches still dominate.")
    print("Self-check: intensity 50 FLOP/B below a ridge of 156 FLOP/B -> memory-bound.")


if __name__ == "__main__":
    main()
