"""How a requested precision runs on a device: native, fallback to wider arithmetic, weight-only
quantization, and 2:4 structured sparsity."""
import numpy as np
import pytest

import dse
from dse.catalog import registry
from dse.models import calibration, roofline
from dse.models.precision import resolve

# Llama-3-8B weight elements a decode step multiplies by (per layer QKV, out, SwiGLU; plus the LM head)
L, H, KVD, F, V = 32, 4096, 8 * 128, 14336, 128256
N_MATMUL = L * (H * (H + 2 * KVD) + H * H + 3 * H * F) + V * H
DECODE = dict(workload="llama-3-8b", mode="serve", scheduler="static", batch=1, input_len=512, output_len=128,
              precision="fp16")


def test_fp8_on_a100_falls_back_to_fp16_with_note(hw):
    a100 = hw("a100")
    ex = resolve(a100, "fp8", None)
    assert ex.compute == "fp16"
    assert ex.tensor_rate == a100.peak("fp16") == 312e12
    assert ex.weight_bytes == 1.0  # fp8 weights kept in storage
    assert ex.act_bytes == 2.0 and ex.kv_bytes == 2.0
    assert ex.dequant is True
    assert any("no native fp8" in n and "fp16" in n for n in ex.notes)
    notes = dse.evaluate_point(hardware="a100", **{**DECODE, "precision": "fp8"}).notes
    assert any("no native fp8" in n for n in notes)


def test_int4_on_h100_is_weight_only_fp16(hw):
    h100 = hw("h100")
    assert h100.peak("int4") is None  # Hopper has no INT4 tensor cores
    ex = resolve(h100, "int4", None)
    assert ex.compute == "fp16" and ex.tensor_rate == 989.5e12
    assert ex.weight_bytes == (4 + 32 / 128) / 8  # 4 bits and a 16-bit scale and zero point per group of 128
    assert ex.act_bytes == 2.0
    assert ex.dequant is True
    assert any("no native int4" in n for n in ex.notes)


def test_bf16_on_v100_falls_back_to_fp16(hw):
    v100 = hw("v100")
    ex = resolve(v100, "bf16", None)
    assert ex.compute == "fp16" and ex.tensor_rate == 125e12
    assert ex.weight_bytes == ex.act_bytes == 2.0
    assert ex.dequant is False  # same width: nothing to expand
    assert any("no native bf16" in n for n in ex.notes)


def test_fp8_native_on_h100(hw):
    ex = resolve(hw("h100"), "fp8", None)
    assert ex.compute == "fp8" and ex.tensor_rate == 1979e12
    assert ex.weight_bytes == ex.act_bytes == ex.kv_bytes == 1.0
    assert ex.dequant is False
    assert ex.notes == ()


def test_int8_on_a100_is_native_w8a8(hw):
    ex = resolve(hw("a100"), "int8", None)
    assert ex.compute == "int8" and ex.tensor_rate == 624e12
    assert ex.weight_bytes == 1.0
    assert ex.act_bytes == 1.0  # int8 activations into the int8 GEMM
    assert ex.dequant is False
    assert ex.notes == ()


def test_weight_precision_wider_than_arithmetic_is_refused(hw):
    with pytest.raises(ValueError):
        resolve(hw("h100"), "fp8", "fp16")
    with pytest.raises(dse.DSEError, match="narrower than the arithmetic fp8"):
        dse.evaluate(hardware="h100", **{**DECODE, "precision": "fp8"}, weight_precision="fp16")
    with pytest.raises(dse.DSEError):
        dse.evaluate(hardware="h100", **DECODE, weight_precision="fp32")


def test_weight_only_int4_storage_under_fp16_arithmetic(hw):
    ex = resolve(hw("h100"), "fp16", "int4")
    assert ex.compute == "fp16" and ex.weight_bytes == 4.25 / 8 and ex.act_bytes == 2.0 and ex.dequant is True
    dense = dse.evaluate(hardware="h100", **DECODE)
    w4 = dse.evaluate(hardware="h100", **DECODE, weight_precision="int4")
    assert w4["weights_bytes"] == pytest.approx(dense["weights_bytes"] * 4.25 / 16, rel=1e-12)


def test_two_four_sparsity_on_h100_lowers_decode_memory_time():
    dense = dse.evaluate(hardware="h100", **DECODE)
    r = dse.evaluate_point(hardware="h100", **DECODE, sparsity="2:4")
    sparse = r.metrics
    assert any("2:4 structured sparsity" in n and "sparse tensor cores" in n for n in r.notes)
    assert sparse["decode_memory_time_s"] < dense["decode_memory_time_s"]
    # every weight element read goes from 2 B to 0.5 * 2 + 1/8 B (2 kept values + 1 bit of index per
    # element); achievable bandwidth 0.90 x 3.35 TB/s
    saved = N_MATMUL * (2.0 - (0.5 * 2 + 1 / 8)) / (0.90 * 3.35e12)
    assert dense["decode_memory_time_s"] - sparse["decode_memory_time_s"] == pytest.approx(saved, rel=1e-9)


@pytest.mark.parametrize("name", ["mi250x", "tpu-v4"])
def test_two_four_sparsity_without_sparse_tensor_cores(hw, name):
    assert hw(name).sparsity_2_4 is False  # catalog accelerators.toml
    base = {**DECODE, "precision": "bf16"}
    dense = dse.evaluate(hardware=name, **base)
    r = dse.evaluate_point(hardware=name, **base, sparsity="2:4")
    assert any("no 2:4 sparse tensor cores" in n for n in r.notes)
    # storage still shrinks, the arithmetic runs dense: prefill compute is unchanged
    assert r.metrics["prefill_compute_time_s"] == pytest.approx(dense["prefill_compute_time_s"], rel=1e-12)
    assert r.metrics["decode_memory_time_s"] < dense["decode_memory_time_s"]


def test_sparse_tensor_cores_catalog_flags(hw):
    assert hw("h100").sparsity_2_4 is True and hw("a100").sparsity_2_4 is True
    assert hw("v100").sparsity_2_4 is False


def test_metrics_report_the_arithmetic_used_and_vector_rates():
    m = dse.evaluate(workload="llama-3-8b", hardware="a100", mode="serve", precision="fp8")
    assert m["compute_precision"] == "fp16"
    mi250x = resolve(registry("hardware").get("mi250x", "h"), "bf16", None)
    assert mi250x.vector_rate == 23.95e12  # one GCD's vector fp32 figure, not its 47.85 matrix peak
    tpu = resolve(registry("hardware").get("tpu-v4", "h"), "bf16", None)
    assert tpu.vector_rate == 275e12 and any("no vector fp32 rate" in note for note in tpu.notes)


def test_gemm_share_follows_each_boards_measured_matmul_rate(hw):
    # maximum achievable matmul rates (catalog, stas00/ml-engineering): A100 SXM 271.2 of 312 TFLOP/s
    # bf16, H100 SXM 794.5 of 989.5 bf16 and 1,402.6 of 1,979 fp8; the reference is the mean of the
    # two boards' bf16 shares, (0.86923 + 0.80293) / 2 = 0.83608
    ref = (271.2 / 312 + 794.5 / 989.5) / 2
    assert calibration.REFERENCE_MATMUL_SHARE == pytest.approx(0.83608, abs=1e-5)
    h100, a100 = hw("h100-sxm"), hw("a100")
    assert resolve(h100, "bf16", None).tensor_share == pytest.approx(0.80293 / 0.83608, rel=1e-4)  # 0.9604
    assert resolve(h100, "fp8", None).tensor_share == pytest.approx((1402.6 / 1979) / ref, rel=1e-12)  # 0.8477
    assert resolve(a100, "bf16", None).tensor_share == pytest.approx(1.0397, abs=1e-4)
    # fp8 against bf16 on the same board keeps the measured ratio: 0.7087 / 0.8029 = 0.8827
    assert (resolve(h100, "fp8", None).tensor_share / resolve(h100, "bf16", None).tensor_share
            == pytest.approx(0.8827, abs=1e-4))
    # A100 runs fp8 as fp16 (no fp8 tensor cores): its 16-bit share; int8 takes the 16-bit share too
    assert resolve(a100, "fp8", None).tensor_share == resolve(a100, "fp16", None).tensor_share
    assert resolve(h100, "int8", None).tensor_share == resolve(h100, "bf16", None).tensor_share
    # MI300X: 668.4 of 1,307.4 = 0.5112, 0.611 of the reference; no fp8 row, so fp8 takes it as well
    assert resolve(hw("mi300x"), "bf16", None).tensor_share == pytest.approx(0.5112 / 0.83608, rel=1e-3)
    assert resolve(hw("mi300x"), "fp8", None).tensor_share == resolve(hw("mi300x"), "bf16", None).tensor_share
    assert resolve(h100, "fp32", None).tensor_share == 1.0  # CUDA cores, no matrix tiles
    assert resolve(hw("l40s"), "fp8", None).tensor_share == 1.0  # no measured rates: the class fit


def test_gaudi3_elementwise_work_runs_on_its_tpcs():
    # Gaudi 3's MMEs do matrix products only; norms, softmax and activations run on the TPCs at their
    # published 28.7 TFLOP/s bf16 (Hot Chips 2024), not at the 1,835 TFLOP/s matrix peak
    g3 = registry("hardware").get("gaudi3", "hardware")
    ex = resolve(g3, "bf16", None)
    assert ex.vector_rate == 28.7e12 and ex.tensor_rate == 1835e12
    assert not any("vector" in note for note in ex.notes)
    # a norm of a 4,096-wide row of 1M tokens: 2 x 4 FLOP per element (two norms), at the TPC rate
    table = roofline.OpTable(names=("norms",), repeat=np.ones(1), weights=np.zeros(1), flops_tensor=np.zeros(1),
                             rows=np.ones(1), flops_vector=np.array([8.0 * 4096 * 2**20]), act_bytes=np.zeros(1),
                             kernels=np.zeros(1))
    eff = calibration.for_device(g3.device_class, g3.vendor)
    t = roofline.run(table, ex, eff, bandwidth=g3.memory_bandwidth, weight_bytes=2.0)
    assert t.compute == pytest.approx(8.0 * 4096 * 2**20 / (28.7e12 * eff.vector), rel=1e-12)
    # a TPU publishes no vector rate: the matrix rate stands in, and the notes say it is optimistic
    assert "optimistic" in " ".join(resolve(registry("hardware").get("tpu-v5e", "hardware"), "bf16", None).notes)


def test_fp8_inference_quantizes_gemm_inputs_only():
    # Llama-3-8B fp8 on an H100, 4 prompts of 1,000 tokens + 100 out, static batch: the layers' weights and
    # the KV cache in 8 bits, the embedding and LM head (2 x V x H) in 16; the prompts' live activations
    # (input, QKV, SwiGLU intermediates) and logits as in 16 bits
    m = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="serve", precision="fp8", scheduler="static",
                     batch=4, input_len=1000, output_len=100)
    weights = 8_030_261_248 * 1 + (2 * V * H + H) * 1
    kv = 2 * L * KVD * 1100 * 1 * 4
    work = 4 * (1000 * (2 * H + 2 * KVD + 2 * F) * 2 + V * 4)
    reserve = 0.1 * 80 * 2**30 + 0.13 * 2**30  # the runtime's 10% and the engine's library workspaces
    assert m["memory_per_gpu_bytes"] == pytest.approx(weights + kv + work + reserve, rel=1e-12)
    # what every operator moves besides weights and cache is 16-bit; the KV cache keeps fp8; the
    # device's arithmetic is fp8; a CNN in int8 (TensorRT's fused int8 pipelines) keeps 8-bit activations
    from dse.modes.setup import setup
    h100 = registry("hardware").get("h100", "h")
    s = setup(registry("workloads").get("llama-3-8b", "w"), h100, "serve", "fp8", None, None, "none")
    assert (s.ex.compute, s.ex.act_bytes, s.ex.kv_bytes, s.weight_bytes) == ("fp8", 2.0, 1.0, 1.0)
    resnet = setup(registry("workloads").get("resnet-50", "w"), h100, "infer", "int8", None, None, "none")
    assert resnet.ex.act_bytes == 1
