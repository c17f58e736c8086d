"""Memory a framework can fill on an accelerator: what the driver exposes, less the runtime's reserve.

Two things stand between the spec sheet's capacity and the bytes weights, activations, KV cache and
optimizer state may take:

* ECC on GDDR cards: "On GPUs with GDDR memory with ECC enabled the available DRAM is reduced by 6.25%
  to allow for the storage of ECC bits" (NVIDIA CUDA C++ Best Practices Guide, device memory spaces).
  ECC is on by default on datacenter cards, so a T4, L4 and L40S expose 15, 22.5 and 45 GiB of their
  16, 24 and 48 GiB; the catalog's `memory_visible` gives that figure, with its source, where it
  differs from the capacity (HBM keeps ECC in side-band bits at no capacity cost).
* The runtime reserve: the CUDA context and kernel images, cuBLAS workspaces, NCCL communication
  buffers and what the caching allocator holds unused. vLLM plans weights, the profiled step's
  activations and the KV cache within gpu_memory_utilization = 0.9 of the device by default
  (docs.vllm.ai, Engine Arguments, v0.6-v0.15) and leaves the rest to these; its profile of
  Llama-3-8B on an H100 counts 1.79 GiB of non-PyTorch memory at TP1 and 3.58 GiB at TP2 (CUDA
  context and NCCL; vllm-project/vllm PR #10511, 2024-12), 2.3% and 4.5% of the device, inside that
  10%. Training frameworks hold the same kinds of buffers on top of a fragmented caching allocator;
  the same share is kept for them unless a caller knows better.
"""
from __future__ import annotations

from dse.catalog.types import Accelerator

RUNTIME_SHARE = 0.9  # share of the exposed memory a framework plans in (vLLM gpu_memory_utilization default)


def visible_memory(device: Accelerator) -> float:
    """Bytes the driver exposes: `memory_visible` (ECC taken out of GDDR) where the catalog gives it,
    else the spec capacity."""
    return device.get("memory_visible") or device.memory_capacity


def usable_memory(device: Accelerator, share: float = RUNTIME_SHARE) -> float:
    """Bytes a framework may fill: `share` of the exposed memory (see the module docstring)."""
    return share * visible_memory(device)


def reserved_parts(device: Accelerator, share: float = RUNTIME_SHARE) -> list[tuple[str, float]]:
    """What a memory check adds to a design point's own bytes before comparing with the capacity: the
    ECC bits (GDDR cards only) and the runtime reserve, named as a feasibility reason shows them."""
    ecc = device.memory_capacity - visible_memory(device)
    parts = [("ECC", ecc)] if ecc > 0 else []
    return parts + [("runtime reserve", visible_memory(device) - usable_memory(device, share))]
