"""The serving engine's tensor-parallel all-reduce (vLLM's custom one-shot / two-shot kernels over NVLink,
inside CUDA graphs) where its cost is measured, NCCL's ring elsewhere and in the static scheduler."""
import numpy as np
import pytest

import dse
from dse.catalog import registry
from dse.models.communication import engine_allreduce_time
from dse.modes.setup import engine_allreduce

KIB, MIB = 1024, 1024 * 1024
LINK = 450e9  # NVLink 4, one direction
RING = (0.90e-6, 6.6e-6)  # NCCL's per-step alpha and fixed cost on NVLink 4 (fabrics.toml)
ENGINE = (4.8e-6, 237e9)  # vLLM custom all-reduce on H100: fixed cost, peer-read rate (fabrics.toml)


def ar(nbytes, ranks):
    return float(engine_allreduce_time(nbytes, ranks, LINK, *RING, *ENGINE))


def test_catalog_gives_the_h100_figures_and_none_elsewhere():
    hardware = registry("hardware")
    assert engine_allreduce(hardware.get("h100", "hardware")) == pytest.approx(ENGINE, rel=1e-12)
    assert engine_allreduce(hardware.get("h200", "hardware")) == pytest.approx(ENGINE, rel=1e-12)
    for name in ("a100", "b200", "l40s", "mi300x"):  # no CUDA-graph measurement: NCCL's model
        assert engine_allreduce(hardware.get(name, "hardware")) == (0.0, 0.0)


def test_one_shot_reads_every_peer_buffer():
    # 8 KiB: one-shot at every size of group; each rank reads its p-1 peers' whole buffers
    assert ar(8 * KIB, 2) == pytest.approx(4.8e-6 + 1 * 8192 / 237e9, rel=1e-12)  # 4.83 us
    assert ar(8 * KIB, 8) == pytest.approx(4.8e-6 + 7 * 8192 / 237e9, rel=1e-12)  # 5.04 us
    # TP2 stays one-shot at any size under the 8 MiB limit: 4 MiB is 4.8 + 17.70 us
    assert ar(4 * MIB, 2) == pytest.approx(4.8e-6 + 4194304 / 237e9, rel=1e-12)


def test_two_shot_above_the_threshold():
    # TP8 at 4 MiB: reduce-scatter + all-gather, 2 x 7/8 of the buffer in, 4.8 + 30.97 us
    assert ar(4 * MIB, 8) == pytest.approx(4.8e-6 + 2 * 7 / 8 * 4194304 / 237e9, rel=1e-12)
    # TP4 switches below 512 KiB, TP8 below 256 KiB (csrc/custom_all_reduce.cuh)
    assert ar(256 * KIB, 4) == pytest.approx(4.8e-6 + 3 * 262144 / 237e9, rel=1e-12)
    assert ar(512 * KIB, 4) == pytest.approx(4.8e-6 + 1.5 * 524288 / 237e9, rel=1e-12)
    assert ar(128 * KIB, 8) == pytest.approx(4.8e-6 + 7 * 131072 / 237e9, rel=1e-12)
    assert ar(256 * KIB, 8) == pytest.approx(4.8e-6 + 1.75 * 262144 / 237e9, rel=1e-12)


def test_nccl_where_the_custom_kernel_does_not_run():
    # at 8 MiB and above, on 3 ranks, and where nothing is measured: NCCL's ring, 6.6 us + 2(p-1) x 0.9 us
    assert ar(16 * MIB, 2) == pytest.approx(6.6e-6 + 2 * 0.9e-6 + 16777216 / 450e9, rel=1e-12)
    assert ar(8 * MIB, 2) == pytest.approx(6.6e-6 + 2 * 0.9e-6 + 8388608 / 450e9, rel=1e-12)
    assert ar(8 * KIB, 3) == pytest.approx(6.6e-6 + 4 * 0.9e-6 + 4 / 3 * 8192 / 450e9, rel=1e-12)
    nccl = engine_allreduce_time(8 * KIB, 2, LINK, *RING, 0.0, 0.0)
    assert nccl == pytest.approx(6.6e-6 + 2 * 0.9e-6 + 8192 / 450e9, rel=1e-12)
    assert engine_allreduce_time(8 * KIB, 1, LINK, *RING, *ENGINE) == 0.0  # one rank: nothing


def test_columns_pick_per_element():
    got = engine_allreduce_time(np.array([8 * KIB, 4 * MIB, 16 * MIB]), np.array([8.0, 8.0, 8.0]), LINK, *RING,
                                *ENGINE)
    assert got == pytest.approx([ar(8 * KIB, 8), ar(4 * MIB, 8), ar(16 * MIB, 8)], rel=1e-12)


def test_continuous_serving_uses_it_on_h100_and_nccl_on_a100():
    # Llama-3-8B (32 layers, h 4096) at TP2: two all-reduces a layer of the decode step's tokens x 4096 x 2
    # bytes (t tokens: the full replica's decoding sequences less those in prefill); one-shot on H100,
    # NCCL's ring on A100 (NVLink 3: 300 GB/s per direction, 1.94 us a step, 6.6 us per collective)
    args = dict(workload="llama-3-8b", mode="serve", batch=16, input_len=512, output_len=64, gpus=2, tp=2)
    h100 = dse.evaluate(hardware="h100", **args)["communication_time_s"]
    t = (h100 / 64 - 4.8e-6) * 237e9 / 8192
    assert 15 < t <= 16  # the 16 slots decoding, but for the prompt in prefill
    a100 = dse.evaluate(hardware="a100", **args)["communication_time_s"]
    assert a100 == pytest.approx(64 * (6.6e-6 + 2 * 1.94e-6 + t * 8192 / 300e9), rel=1e-9)
    # the static scheduler keeps NCCL on H100: 16 x 8192 bytes, 6.6 + 2 x 0.9 us + 131072 / 450 GB/s
    static = dse.evaluate(hardware="h100", scheduler="static", **args)["communication_time_s"]
    assert static == pytest.approx(64 * (6.6e-6 + 2 * 0.9e-6 + 131072 / 450e9), rel=1e-9)


def test_eager_engine_pays_the_kernels_eager_fixed_cost():
    # `--cuda-graphs off` (vLLM --enforce-eager) still runs vLLM's custom all-reduce, launched from the
    # host: its fixed cost measured without graphs, 9.5 us (sglang PR #2904), where the graph's is 4.8 us;
    # the one-shot kernel reads the same t x 8192 B from its peer at 237 GB/s
    args = dict(workload="llama-3-8b", hardware="h100", mode="serve", batch=16, input_len=512, output_len=64,
                gpus=2, tp=2)
    graphs = dse.evaluate(**args)["communication_time_s"]
    t = (graphs / 64 - 4.8e-6) * 237e9 / 8192
    eager = dse.evaluate(cuda_graphs="off", **args)["communication_time_s"]
    assert eager == pytest.approx(64 * (9.5e-6 + t * 8192 / 237e9), rel=1e-9)
    assert engine_allreduce(registry("hardware").get("h100", "hardware"), graphs=False) == pytest.approx(
        (9.5e-6, 237e9), rel=1e-12)
    assert engine_allreduce(registry("hardware").get("a100", "hardware"), graphs=False) == (0.0, 0.0)
