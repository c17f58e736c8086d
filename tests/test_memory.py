"""Usable memory: ECC on GDDR cards and the runtime reserve (`dse.models.memory`), in serving and training."""
from __future__ import annotations

import numpy as np
import pytest

import dse
from dse.catalog import registry
from dse.models import memory

GIB = 2**30


@pytest.mark.parametrize("name, spec_gib, visible_gib", [("t4", 16, 15), ("l4", 24, 22.5), ("l40s", 48, 45),
                                                         ("l40", 48, 45), ("h100-sxm", 80, 80)])
def test_ecc_takes_a_sixteenth_of_gddr(name, spec_gib, visible_gib):
    device = registry("hardware").get(name, "hardware")
    assert device.memory_capacity == spec_gib * GIB
    # GDDR with ECC on loses 6.25% = 1/16 (CUDA C++ Best Practices Guide); HBM keeps ECC in side bands
    assert memory.visible_memory(device) == visible_gib * GIB
    assert memory.usable_memory(device) == pytest.approx(0.9 * visible_gib * GIB, rel=1e-12)
    parts = dict(memory.reserved_parts(device))
    assert parts.get("ECC", 0.0) == (spec_gib - visible_gib) * GIB
    assert parts["runtime reserve"] == pytest.approx(0.1 * visible_gib * GIB, rel=1e-12)
    assert sum(parts.values()) + memory.usable_memory(device) == pytest.approx(spec_gib * GIB, rel=1e-12)


def test_l40s_serving_holds_what_45_gib_leave():
    # Llama-3-8B fp16 on an L40S at 2k context, continuous batching: vLLM's small-GPU defaults
    # (2,048 batched tokens); 0.9 x 45 GiB less the weights, a full step's activations and the engine's
    # 0.13 GiB of library workspaces, in KV of 256 MiB
    m = dse.evaluate(workload="llama-3-8b", hardware="l40s", mode="serve", precision="fp16",
                     input_len=2047, output_len=1)
    weights = 8_030_261_248 * 2
    work = 2048 * (2 * 4096 + 2 * 1024 + 2 * 14336) * 2 + 256 * 128256 * 4  # 2,048 tokens + 256 logit rows
    kv = 2 * 32 * 8 * 128 * 2048 * 2
    assert m["max_batch"] == (0.9 * 45 * GIB - 0.13 * GIB - weights - work) // kv == 100
    # without the workspaces 101 would fit (40.5 GiB - 14.96 - 0.27 = 25.27 GiB of 0.25 GiB requests);
    # the spec sheet's 48 GiB would have held (0.9 * 48 GiB - ...) // kv = 111: ECC costs 11 requests
    assert (0.9 * 45 * GIB - weights - work) // kv == 101
    assert (0.9 * 48 * GIB - 0.13 * GIB - weights - work) // kv == 111


def test_engine_workspaces_per_rank():
    # 0.13 GiB of library workspaces on every rank, 0.42 GiB more of communication buffers in a TP group
    # (vLLM v0.11.0 on an H100: 0.13 GiB at TP 1, 0.55 GiB at TP 2), kept per rank beyond TP 2
    assert memory.engine_workspaces(1) == 0.13 * GIB
    assert memory.engine_workspaces(2) == memory.engine_workspaces(8) == pytest.approx(0.55 * GIB, rel=1e-12)
    assert list(memory.engine_workspaces(np.array([1, 2, 4]))) == pytest.approx([0.13 * GIB, 0.55 * GIB,
                                                                                   0.55 * GIB], rel=1e-12)


def test_tp_serving_places_the_communication_buffers():
    # Llama-3-8B fp16 on 2 H100s at 2k context, 2,048 batched tokens (H100 default: 1,024 sequences, so
    # 1,024 logit rows): each rank holds half the weights, half the step's activations and half the KV
    # heads (8 of them, tp 2), and 0.55 GiB of workspaces and communication buffers
    m = dse.evaluate(workload="llama-3-8b", hardware="h100-sxm", mode="serve", precision="fp16", gpus=2, tp=2,
                     input_len=2047, output_len=1, max_batched_tokens=2048)
    weights = 8_030_261_248 * 2 / 2
    work = (2048 * (2 * 4096 + 2 * 1024 + 2 * 14336) * 2 + 1024 * 128256 * 4) / 2
    kv = 2 * 32 * 8 * 128 * 2048 * 2 / 2  # 128 MiB per sequence per rank
    assert m["max_batch"] == (0.9 * 80 * GIB - 0.55 * GIB - weights - work) // kv == 509
    # the 0.42 GiB of communication buffers cost 0.42 GiB / 128 MiB = 3.4 sequences: 512 without them
    assert (0.9 * 80 * GIB - 0.13 * GIB - weights - work) // kv == 512


def test_reasons_name_the_ecc_and_the_reserve():
    m = dse.evaluate(workload="llama-3-8b", hardware="t4", mode="serve", precision="fp16", batch=1,
                     scheduler="static", input_len=128, output_len=128)
    assert not m["feasible"]
    reason = m["infeasible_reasons"][0]
    assert "ECC 1.1 GB" in reason and "runtime reserve 1.6 GB" in reason  # 1 GiB = 1.07 GB; 0.1 x 15 GiB = 1.61 GB
    assert "> 17.2 GB" in reason  # against the spec sheet's 16 GiB


# KV-cache capacity vLLM v0.15.1 allocated on an H100 SXM at gpu_memory_utilization 0.9 (16-token blocks;
# ../shared/benchmarks/vllm-sim2real/measurements.csv, column gpu_kv_blocks): (workload, TP, max batched
# tokens, blocks per rank)
VLLM_BLOCKS = [("llama-2-7b", 1, 2048, 7463), ("mistral-nemo-12b", 1, 2048, 19251),
               ("mistral-nemo-12b", 2, 1024, 48009), ("qwen2.5-7b", 1, 2048, 65352),
               ("llama-3.1-70b", 4, 8192, 30251), ("llama-3.1-70b", 4, 2048, 30425)]


@pytest.mark.parametrize("name, tp, tokens, blocks", VLLM_BLOCKS)
def test_kv_capacity_matches_vllm_block_counts(name, tp, tokens, blocks):
    """max_batch is what the KV cache holds once weights, a full step's activations, the engine's
    workspaces and the runtime reserve are placed: in 256-token sequences, within 5% of the tokens
    vLLM's blocks hold (dse counts no CUDA-graph or sampler memory, so it sits 1-4% above)."""
    m = dse.evaluate(workload=name, hardware="h100-sxm", mode="serve", precision="fp16", gpus=tp, tp=tp,
                     input_len=255, output_len=1, max_batched_tokens=tokens)
    assert m["max_batch"] * 256 == pytest.approx(blocks * 16, rel=0.05)


def test_infer_mode_counts_the_ecc_and_the_reserve():
    # Llama-3-8B fp16 weights: 8,030,261,248 x 2 B = 14.96 GiB, under the T4's 16 GiB spec but over what
    # it leaves: 16 GiB - 1 GiB ECC - 0.1 x 15 GiB reserve = 13.5 GiB (serve mode says the same)
    m = dse.evaluate(workload="llama-3-8b", hardware="t4", mode="infer", precision="fp16", batch=1, seq_len=128)
    weights = 8_030_261_248 * 2
    assert weights / GIB == pytest.approx(14.96, abs=0.01) and weights > 13.5 * GIB
    assert not m["feasible"]
    reason = m["infeasible_reasons"][0]
    assert "ECC 1.1 GB" in reason and "runtime reserve 1.6 GB" in reason and "> 17.2 GB" in reason
    # on an L4 (22.5 GiB exposed, 0.9 x 22.5 = 20.25 GiB usable) the same weights fit
    assert dse.evaluate(workload="llama-3-8b", hardware="l4", mode="infer", precision="fp16", batch=1,
                        seq_len=128)["feasible"]
