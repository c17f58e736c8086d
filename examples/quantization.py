"""Seed 003, exercise 3 (quantization trade-offs): Llama-3-8B on an H100 in fp16 and int4.

Questions: memory saved by int4 against fp32 and against fp16; the estimated accuracy cost; is the
decode speedup closer to 8x or 4x, and why?

Answers in brief: int4 weights are 1/8 of fp32 (87.5% saved) and 1/4 of fp16 (75% saved); stored
with the group-128 scales real kernels need (4.25 bits a weight, as dse now models them), 86.7% and
73.4%, which also trims the decode speedup a little. The H100
has no int4 tensor cores, so int4 runs as weight-only quantization (W4A16): int4 weights are read
and dequantized to fp16 inside each GEMM. Batch-1 decode is memory-bound, so the speedup follows the
bytes per step, but not all of them shrink: the KV cache, the activations and 355 kernel launches
per step stay, so int4 decodes about 2x faster than fp16, not 4x (and never 8x: fp32 is not the
baseline anyone serves). These are static batches (`scheduler="static"`), one decode step with its
kernel launches; under continuous batching a CUDA graph replaces the launches with one per-step
overhead. At batch 256 the step is dominated by KV-cache reads and fp16 arithmetic, which int4
weights do not shrink (dequantization even adds a little); fp8, native on H100, halves the KV cache,
the weights and the arithmetic time together.
Where the seed is wrong: it says the B200 runs int4 natively; Blackwell's narrow tensor-core format
is FP4 (NVFP4), and NVIDIA's B200 datasheet lists no int4 rate. Its accuracy figure (2-5%
degradation) is uncited; the catalog's cited ranges are printed instead, labelled as such.
"""
from __future__ import annotations

import dse
from dse.catalog import accuracy_ranges, registry
from dse.models import transformer

POINT = dict(workload="llama-3-8b", hardware="h100", mode="serve", scheduler="static", input_len=512, output_len=128)
VARIANTS = {"fp16": dict(precision="fp16"), "int8 weights (W8A16)": dict(precision="fp16", weight_precision="int8"),
            "int4 weights (W4A16)": dict(precision="fp16", weight_precision="int4"), "fp8": dict(precision="fp8")}


def answer() -> dict:
    params = transformer.parameters(registry("workloads").get("llama-3-8b", "workload"))
    sizes = {"fp32": params * 4, "fp16": params * 2, "int4": params * 0.5, "int4 with scales": params * 4.25 / 8}
    decode = {name: dse.evaluate(**POINT, batch=1, **v) for name, v in VARIANTS.items()}
    large = {name: dse.evaluate(**POINT, batch=256, **v) for name, v in VARIANTS.items()}
    int4_note = dse.evaluate_point(**POINT, batch=1, precision="int4").notes
    return {"sizes": sizes, "saving_vs_fp32": 1 - sizes["int4"] / sizes["fp32"],
            "saving_vs_fp16": 1 - sizes["int4"] / sizes["fp16"], "decode": decode, "large": large,
            "speedup_int4": decode["fp16"]["itl_s"] / decode["int4 weights (W4A16)"]["itl_s"],
            "int4_fallback_note": int4_note[0],
            "b200_int4": registry("hardware").get("b200", "hardware").peak("int4"),
            "accuracy": [r for r in accuracy_ranges() if r.method == "weight-only int4" and r.family == "llm"]}


def main() -> None:
    a = answer()
    s = a["sizes"]
    print(f"Llama-3-8B weights: fp32 {s['fp32'] / 1e9:.2f} GB, fp16 {s['fp16'] / 1e9:.2f} GB, "
          f"int4 {s['int4'] / 1e9:.2f} GB")
    print(f"int4 saves {a['saving_vs_fp32']:.1%} against fp32 and {a['saving_vs_fp16']:.1%} against fp16; with "
          f"its group-128 scales stored ({s['int4 with scales'] / 1e9:.2f} GB), 86.7% and 73.4%.\n")
    print(f"{'variant':<22} {'ITL batch 1':>12} {'bottleneck':<10} {'ITL batch 256':>14} {'bottleneck':<10}")
    for name in VARIANTS:
        d, g = a["decode"][name], a["large"][name]
        print(f"{name:<22} {d['itl_s'] * 1e3:>10.2f}ms {d['bottleneck']:<10} "
              f"{g['itl_s'] * 1e3:>12.2f}ms {g['bottleneck']:<10}")
    print(f"\nint4 decode speedup at batch 1: {a['speedup_int4']:.2f}x over fp16 (4x fewer weight bytes; the KV "
          "cache, activations and launch overhead do not shrink).")
    print(f"`--precision int4` on H100: {a['int4_fallback_note']}")
    print(f"B200 int4 tensor-core rate in its datasheet: {a['b200_int4'] or 'none (FP4 instead)'}")
    print("Accuracy, as cited ranges (not predictions for this model):")
    for r in a["accuracy"]:
        print(f"  {r.metric}: {r.low:+g} to {r.high:+g} {r.unit} ({r.models}; {r.source})")


if __name__ == "__main__":
    main()
