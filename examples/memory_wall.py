"""Seed 002 (The Memory Wall): A100 -> H100 -> B200 for Llama-3-8B decode at batch 1.

Questions: H100 has 3.2x the A100's fp16 FLOP/s but 1.64x its bandwidth; what speedup does batch-1
LLM inference get? Where does decode turn compute-bound on each GPU? What does B200 give over H100?
How do ridge points move across V100, A100, H100?

Answered with `--mode serve`: "LLM inference at batch 1" is the decode step, one token per step,
which reads every weight once; its time per token is the inter-token latency (ITL).
Where the seed is off: it expects ~1.7x (the bandwidth ratio). The bytes per step are identical on
both GPUs, so the memory time does scale by exactly 1.64x, but each step also pays 355 kernel
launches that no bandwidth buys back, so the per-token speedup is lower (about 1.45x here). And the
crossover to compute-bound does not come at a fixed batch: the KV-cache reads grow with the batch as
fast as the GEMM arithmetic, so on H100 decode stays memory-bound at this context.
Asked of a static batch (`scheduler="static"`): one decode step with its kernel launches.
"""
from __future__ import annotations

import dse
from dse.catalog import registry

DECODE = dict(workload="llama-3-8b", mode="serve", scheduler="static", input_len=512, output_len=128,
              precision="fp16")


def decode(hardware: str, batch: int = 1) -> dict:
    return dse.evaluate(hardware=hardware, batch=batch, **DECODE)


def first_compute_bound_batch(hardware: str, limit: int = 512) -> int | None:
    return next((b for b in range(1, limit + 1) if decode(hardware, b)["bottleneck"] == "compute"), None)


def specs(hardware: str) -> tuple[float, float, float]:
    d = registry("hardware").get(hardware, "hardware")
    return d.peak("fp16"), d.memory_bandwidth, d.peak("fp16") / d.memory_bandwidth


def answer() -> dict:
    a100, h100, b200 = decode("a100"), decode("h100"), decode("b200")
    return {
        "a100": a100, "h100": h100, "b200": b200,
        "speedup_h100": a100["itl_s"] / h100["itl_s"],
        "memory_speedup_h100": a100["decode_memory_time_s"] / h100["decode_memory_time_s"],
        "speedup_b200": h100["itl_s"] / b200["itl_s"],
        "bandwidth_ratio": specs("h100")[1] / specs("a100")[1],
        "flops_ratio": specs("h100")[0] / specs("a100")[0],
        "crossover": {hw: first_compute_bound_batch(hw) for hw in ("a100", "h100")},
        "generations": {hw: (*specs(hw), decode(hw)) for hw in ("v100", "a100", "h100")},
    }


def main() -> None:
    a = answer()
    print(f"H100 vs A100: fp16 FLOP/s x{a['flops_ratio']:.2f}, HBM bandwidth x{a['bandwidth_ratio']:.2f}\n")
    print("Llama-3-8B decode, batch 1, fp16 (512-token prompt, 128 generated)")
    for hw in ("a100", "h100", "b200"):
        m = a[hw]
        print(f"  {hw:<5} ITL {m['itl_s'] * 1e3:6.2f} ms  bottleneck {m['bottleneck']:<7} "
              f"memory {m['decode_memory_time_s'] * 1e3:5.2f} ms")
    print(f"\nA100 -> H100 speedup per token: {a['speedup_h100']:.2f}x; memory time alone: "
          f"{a['memory_speedup_h100']:.2f}x (= the bandwidth ratio), nowhere near x{a['flops_ratio']:.1f}.")
    print("  The gap to 1.64x is per-kernel launch overhead, the same on both GPUs.")
    print(f"H100 -> B200 speedup per token: {a['speedup_b200']:.2f}x (bandwidth ratio "
          f"{specs('b200')[1] / specs('h100')[1]:.2f}x).")
    print("Seed's sanity check: 16 GB / 2.0 TB/s = 8.0 ms and 16 GB / 3.35 TB/s = 4.8 ms are floors; "
          "achievable bandwidth and launches put real ITL above them.")
    for hw, b in a["crossover"].items():
        text = f"batch {b}" if b else "not up to batch 512: KV-cache reads grow with the batch"
        print(f"First compute-bound decode batch on {hw}: {text}")
    print(f"\n{'GPU':<6} {'TFLOP/s':>8} {'TB/s':>6} {'ridge FLOP/B':>13} {'ITL':>9} bottleneck")
    for hw, (peak, bw, ridge, m) in a["generations"].items():
        print(f"{hw:<6} {peak / 1e12:>8.0f} {bw / 1e12:>6.2f} {ridge:>13.0f} {m['itl_s'] * 1e3:>7.2f}ms "
              f"{m['bottleneck']}")
    print("Self-check: GPU-B with 2x the FLOP/s and 2x the bandwidth is 2x faster either way.")


if __name__ == "__main__":
    main()
