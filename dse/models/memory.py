"""Memory a framework can fill on an accelerator: what the driver exposes, less the runtime's reserve.

Three things stand between the spec sheet's capacity and the bytes weights, activations, KV cache and
optimizer state may take:

* ECC on GDDR cards: "On GPUs with GDDR memory with ECC enabled the available DRAM is reduced by 6.25%
  to allow for the storage of ECC bits" (NVIDIA CUDA C++ Best Practices Guide, device memory spaces).
  ECC is on by default on datacenter cards, so a T4, L4 and L40S expose 15, 22.5 and 45 GiB of their
  16, 24 and 48 GiB; the catalog's `memory_visible` gives that figure, with its source, where it
  differs from the capacity (HBM keeps ECC in side-band bits at no capacity cost).
* The runtime reserve: the CUDA context and kernel images, the communicators' setup and what the
  caching allocator holds unused. vLLM plans weights, the profiled step's activations and the KV
  cache within gpu_memory_utilization = 0.9 of the device by default (docs.vllm.ai, Engine Arguments,
  v0.6-v0.15) and leaves the rest to these: its V1 worker takes the plan's baseline, a memory
  snapshot, after the CUDA context is made and the tensor-parallel communicators are initialised
  (vllm/v1/worker/gpu_worker.py `init_device`, 2025; vLLM PR #45517, 2026-06: this "shifts the NCCL
  workspace cost outside the user's GMU budget"), so those sit in
  the remaining 10% (0.61 GiB of an H100 in use at startup at TP 1, 1.54 GiB at TP 2:
  llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md, "Free memory on device").
  Training frameworks hold the same kinds of buffers on top of a fragmented caching allocator; the
  same share is kept for them unless a caller knows better.
* Inside the plan, an inference engine's non-PyTorch memory (`engine_workspaces`): what memory not
  allocated by PyTorch grows by from that snapshot to the end of the profiled step, which vLLM
  subtracts before the KV cache (vllm/utils/mem_utils.py `memory_profiling`: non_kv_cache_memory =
  weights + torch peak increase + non-torch increase). These are library workspaces and kernel images
  loaded by the first step (0.13-0.14 GiB on an H100 at TP 1, for gpt-oss-20b/120b, Llama-3.1-8B,
  Qwen3-0.6B, Qwen3-32B and Mistral-Small-3.2-24B) plus, in a tensor-parallel group, the
  communication buffers its first collectives set up (0.54-0.55 GiB at TP 2, for Llama-3.3-70B fp8
  and Qwen3-32B, so 0.42 GiB more): vLLM v0.11.0 V1, llm-d/llm-d-benchmark
  config_explorer/empirical-vllm-memory-results.md (2025; the Qwen3-32B TP 2 row is in the file's
  version at commit 4f4d449, not in its latest). Larger groups were not measured; the
  communication part is kept per rank, as a ring all-reduce connects each rank to its two neighbours
  whatever the group size (Patarasuk and Yuan 2009, "Bandwidth optimal all-reduce algorithms for
  clusters of workstations"). An earlier V0 accounting counted 1.79 GiB at TP 1 and 3.58 GiB at TP 2
  for Llama-3-8B on an H100 (vllm-project/vllm PR #10511, 2024-12: 71.29 GiB usable - 14.96 weights
  - 1.79 non-torch - 1.26 activation peak = 53.29 GiB of KV cache); its successor counts 0.16 GiB at
  TP 1 (PR #12126, 2025-01, Llama-3.2-11B-Vision on an H100), in line with the V1 figures above, and
  the engines modelled here (vLLM v0.15.1 in bench/) run the later accounting. Every engine pays some
  such workspaces (a CUDA context, cuBLAS), so static batches and `infer` carry the same figure: no
  other engine publishes its own. Training is planned against the share alone: no framework's
  profile splits its reserve, and its communication buffers are counted in train mode where they
  arise.
"""
from __future__ import annotations

from dse.catalog.types import Accelerator

RUNTIME_SHARE = 0.9  # share of the exposed memory a framework plans in (vLLM gpu_memory_utilization default)
GIB = 2**30
LIBRARY_WORKSPACES = 0.13 * GIB  # non-torch growth at TP 1, bytes (vLLM v0.11.0, H100; module docstring)
COMMUNICATION_BUFFERS = 0.42 * GIB  # more per rank in a TP group, bytes (0.55 GiB at TP 2, less the above)


def visible_memory(device: Accelerator) -> float:
    """Bytes the driver exposes: `memory_visible` (ECC taken out of GDDR) where the catalog gives it,
    else the spec capacity."""
    return device.get("memory_visible") or device.memory_capacity


def usable_memory(device: Accelerator, share: float = RUNTIME_SHARE) -> float:
    """Bytes a framework may fill: `share` of the exposed memory (see the module docstring)."""
    return share * visible_memory(device)


def engine_workspaces(tp=1):
    """Bytes per rank an inference engine allocates outside PyTorch inside its plan: library
    workspaces, plus communication buffers where `tp` > 1 (a number or a numpy column; see the
    module docstring)."""
    return LIBRARY_WORKSPACES + COMMUNICATION_BUFFERS * (tp > 1)


def reserved_parts(device: Accelerator, share: float = RUNTIME_SHARE) -> list[tuple[str, float]]:
    """What a memory check adds to a design point's own bytes before comparing with the capacity: the
    ECC bits (GDDR cards only) and the runtime reserve, named as a feasibility reason shows them."""
    ecc = device.memory_capacity - visible_memory(device)
    parts = [("ECC", ecc)] if ecc > 0 else []
    return parts + [("runtime reserve", visible_memory(device) - usable_memory(device, share))]
