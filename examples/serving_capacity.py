"""Seed 003, exercise 2 (LLM serving capacity): how many concurrent Llama-3-8B requests fit on one
H100 at a 4,096-token context in fp16, and what dominates memory at that batch? Then the
discussion question: does int8 (or fp8) help more through the weights or through the KV cache?

Each request's KV cache at 4,096 tokens is 2 (K and V) x 32 layers x 8 KV heads x 128 dims x
4,096 tokens x 2 bytes = 512 MiB (Llama-3-8B uses grouped-query attention: 8 KV heads for 32
query heads). The seed's answer (~128, KV dominates) fills the whole 80 GiB = 85.9 GB of HBM with
16.06 GB of weights and KV cache. Two things take their share first: the prefill working memory
(~0.31 GB per 4k-token prompt) and the runtime reserve, 10% of the device for the CUDA context,
NCCL buffers and the allocator (vLLM's gpu_memory_utilization default 0.9), of whose 90% the
engine's library workspaces take 0.13 GiB (`dse.models.memory`). With these, 113 requests fit when
prompts are prefilled one at a time, as continuous-batching servers do (129 without the reserve),
and only 71 when all prompts of the batch are prefilled in one pass, whose activations compete with
the KV cache. vLLM's own memory profile of this model on an H100 (PR #10511: 53.29 GiB for the KV
cache, an older accounting that also counts 1.79 GiB of non-PyTorch memory from before the engine
started) holds 106 such requests; its V1 accounting of the same profile holds 109.

These are asked of a static batch held whole in memory (`scheduler="static"`, `prefill_batch`), the
seed's own set-up. Under dse's default scheduler (continuous batching, as vLLM plans memory: 90% of
the device for weights, a full step's activations of 8,192 tokens and the KV cache), the same H100
holds 111 such requests.
"""
from __future__ import annotations

import dse

CONTEXT = dict(input_len=4032, output_len=64)  # 4,096 tokens in all


def serve(batch: int, precision: str = "fp16", prefill_batch: int | None = 1) -> dict:
    """One H100 serving `batch` requests, prefilling `prefill_batch` prompts per pass (None: all)."""
    return dse.evaluate(workload="llama-3-8b", hardware="h100", mode="serve", batch=batch, precision=precision,
                        scheduler="static", prefill_batch=prefill_batch, **CONTEXT)


def answer() -> dict:
    sweep = {b: serve(b) for b in (1, 2, 4, 8, 16, 32, 64, 128, 160)}
    best = serve(1)["max_batch"]
    at_max = serve(best)
    return {"sweep": sweep, "max_batch": best, "at_max": at_max, "beyond": serve(best + 1),
            "kv_per_request": 2 * 32 * 8 * 128 * 4096 * 2,
            "by_precision": {p: serve(1, p)["max_batch"] for p in ("fp16", "fp8", "int8")},
            "all_prompts_in_one_pass": serve(1, prefill_batch=None)["max_batch"]}


def main() -> None:
    a = answer()
    print("Llama-3-8B on one H100 (80 GiB), 4,096-token context, fp16, prompts prefilled one at a time")
    print(f"{'batch':>6} {'feasible':<9} {'memory':>9} {'KV cache':>9} {'TTFT':>9} {'ITL':>8}")
    for b, m in a["sweep"].items():
        print(f"{b:>6} {str(m['feasible']):<9} {m['memory_per_gpu_bytes'] / 1e9:>7.1f}GB "
              f"{m['kv_cache_bytes'] / 1e9:>7.1f}GB {m['ttft_s']:>8.2f}s {m['itl_s'] * 1e3:>6.1f}ms")
    m = a["at_max"]
    print(f"\nLargest batch that fits: {a['max_batch']} requests (KV {a['kv_per_request'] / 2**20:.0f} MiB each).")
    print(f"At that batch the KV cache holds {m['kv_cache_bytes'] / 1e9:.1f} GB against "
          f"{m['weights_bytes'] / 1e9:.1f} GB of weights: the KV cache dominates.")
    print(f"One more request: {a['beyond']['infeasible_reasons'][0]}")
    print(f"Prefilling all prompts of the batch in one pass instead: at most {a['all_prompts_in_one_pass']} "
          "requests, since each prompt's activations share the memory with the KV cache.")
    print("Narrower precision halves both weights and KV cache: " + ", ".join(
        f"{p} {n}" for p, n in a["by_precision"].items()) + " requests. The KV cache matters more: it is "
          "what grows with every request, while the weights are paid once.")


if __name__ == "__main__":
    main()
