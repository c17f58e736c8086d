"""Training step: model-state memory (ZeRO), ring all-reduce, optimizer, MFU/HFU, recomputation, data
parallelism and gradient accumulation, against hand arithmetic."""
import pytest

import dse
from dse.models import communication, training

# Llama-3-8B (catalog): 32 layers, hidden 4096, 8 KV heads of 128, SwiGLU 14336, vocab 128256, untied.
L, H, KVD, F, V = 32, 4096, 8 * 128, 14336, 128256
PARAMS = L * (H * (H + 2 * KVD) + H * H + 3 * H * F + 2 * H) + 2 * V * H + H
# parameters each token multiplies by (embedding lookup excluded, LM head included): the N of 6N
N_MATMUL = L * (H * (H + 2 * KVD) + H * H + 3 * H * F) + V * H
H100_FP16 = 989.5e12
TRAIN = dict(workload="llama-3-8b", hardware="h100", mode="train", precision="fp16")


# --- model_state_bytes --------------------------------------------------------------------------------

def test_mixed_precision_adam_is_16_bytes_per_parameter():
    # fp16 weights (2) + fp16 gradients (2) + fp32 master, momentum, variance (12): ZeRO paper, sec. 3.1
    assert training.model_state_bytes(1e9, 2.0, 2.0, 1, 0) == 16e9
    assert training.model_state_bytes(1e9, 2.0, 2.0, 8, 0) == 16e9  # ZeRO-0: dp replicates everything


@pytest.mark.parametrize("zero,per_param", [
    (0, 2 + 2 + 12),
    (1, 2 + 2 + 12 / 8),  # optimizer states partitioned
    (2, 2 + 2 / 8 + 12 / 8),  # + gradients
    (3, (2 + 2 + 12) / 8),  # + weights
])
def test_zero_stages_divide_by_dp(zero, per_param):
    assert training.model_state_bytes(1e9, 2.0, 2.0, 8, zero) == pytest.approx(1e9 * per_param, rel=1e-12)


# --- ring all-reduce and optimizer --------------------------------------------------------------------

def test_ring_allreduce_alpha_beta():
    nbytes, n, bw, alpha, base = 1e9, 8, 100e9, 1e-6, 6.6e-6
    expected = 2 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * alpha + base  # 0.0175 s + 14 us + 6.6 us
    assert communication.ring_allreduce_time(nbytes, n, bw, alpha, base) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0175 + 14e-6 + 6.6e-6, rel=1e-12)
    assert communication.ring_allreduce_time(nbytes, 1, bw, alpha, base) == 0.0
    assert communication.ring_allreduce_time(nbytes, 2, bw, 0.0, 0.0) == pytest.approx(nbytes / bw, rel=1e-12)


def test_optimizer_time_streaming_and_vector_bound():
    p = 1e9
    # memory-bound: 28 bytes moved per parameter at 3.35 TB/s x 0.9
    assert training.optimizer_time(p, 3.35e12, 67e12, 0.9, 0.5) == pytest.approx(28 * p / (3.35e12 * 0.9), rel=1e-12)
    # vector-bound when the element-wise rate is tiny: 10 FLOP per parameter at 1 TFLOP/s x 0.5
    assert training.optimizer_time(p, 3.35e12, 1e12, 0.9, 0.5) == pytest.approx(10 * p / (1e12 * 0.5), rel=1e-12)


# --- dse.evaluate train mode --------------------------------------------------------------------------

def test_mfu_and_tokens_per_s_follow_palm_flops():
    b, s = 8, 2048
    m = dse.evaluate(**TRAIN, batch=b, seq_len=s)
    assert PARAMS == 8_030_261_248 and N_MATMUL == 7_504_658_432
    # PaLM Appendix B per trained token, with the (s + 1)/2 keys a causal query attends
    model_flops = (6 * N_MATMUL + 12 * L * H * (s + 1) / 2) * b * s
    assert m["mfu"] == pytest.approx(model_flops / (m["step_time_s"] * H100_FP16), rel=1e-9)
    assert m["hfu"] == pytest.approx(m["mfu"], rel=1e-12)  # nothing recomputed
    assert m["model_tflops_per_gpu"] == pytest.approx(model_flops / m["step_time_s"] / 1e12, rel=1e-9)
    assert m["tokens_per_s"] == pytest.approx(b * s / m["step_time_s"], rel=1e-12)
    assert m["samples_per_s"] == pytest.approx(b / m["step_time_s"], rel=1e-12)
    # step = forward + backward + optimizer, no communication on one GPU; the backward is 2x the forward
    # for GEMMs and element-wise work and 2.5x for FlashAttention: between 2x and 2.5x of the forward
    assert m["communication_time_s"] == 0
    assert m["step_time_s"] == pytest.approx(m["compute_time_s"] + m["optimizer_time_s"], rel=1e-12)
    assert 3 * m["forward_time_s"] < m["compute_time_s"] < 3.5 * m["forward_time_s"]
    # optimizer: one Adam pass over all 8.03e9 parameters at 28 B each (memory-bound on H100)
    assert m["optimizer_time_s"] == pytest.approx(28 * PARAMS / (3.35e12 * 0.90), rel=1e-9)
    assert 0 < m["mfu"] < 1


def test_recomputation_costs_time_and_hfu_counts_it():
    b, s = 8, 2048
    none = dse.evaluate(**TRAIN, batch=b, seq_len=s, recompute="none")
    sel = dse.evaluate(**TRAIN, batch=b, seq_len=s, recompute="selective")
    full = dse.evaluate(**TRAIN, batch=b, seq_len=s, recompute="full")
    # selective recomputation is what FlashAttention does already: identical to none
    assert sel["step_time_s"] == none["step_time_s"] and sel["memory_per_gpu_bytes"] == none["memory_per_gpu_bytes"]
    # full recomputation repeats the layers' forward (not the LM head's): less than one more forward
    extra = full["compute_time_s"] - none["compute_time_s"]
    assert 0.8 * none["forward_time_s"] < extra < none["forward_time_s"]
    # full: the recomputed forward is 1/3 of the 3x forward+backward
    assert full["hfu"] == pytest.approx(full["mfu"] * 4 / 3, rel=1e-12)
    assert none["hfu"] == none["mfu"]
    # MFU counts the same model FLOP, so it drops with the longer step
    assert full["mfu"] * full["step_time_s"] == pytest.approx(none["mfu"] * none["step_time_s"], rel=1e-12)


def test_data_parallel_allreduce_and_zero1_memory():
    base = dict(**TRAIN, batch=64, seq_len=2048, dp=8, micro_batch=8)
    z0 = dse.evaluate(**base, zero=0)
    z1 = dse.evaluate(**base, zero=1)
    assert z0["gpus"] == 8 and z0["gradient_accumulation_steps"] == 1
    # ring all-reduce of fp16 gradients over NVLink 4: one direction = 900 GB/s / 2 at the calibrated
    # collective efficiency 0.70, alpha = 0.90 us a step and 6.6 us once (catalog fabrics.toml nvlink4,
    # dgx-h100's scale-up)
    comm = 2 * 7 / 8 * PARAMS * 2 / (450e9 * 0.70) + 2 * 7 * 0.90e-6 + 6.6e-6  # 0.0892 s
    # it runs under the last micro-batch's backward (longer), and 0.3 of it (interference) stays exposed
    assert z0["dp_comm_time_s"] == pytest.approx(0.3 * comm, rel=1e-9)
    assert z0["communication_time_s"] == z0["dp_comm_time_s"]
    assert z0["step_time_s"] == pytest.approx(
        z0["compute_time_s"] + z0["optimizer_time_s"] + 0.3 * comm, rel=1e-9)
    # ZeRO-1 partitions the 12 B/param optimizer states over 8 ranks
    assert z0["memory_per_gpu_bytes"] - z1["memory_per_gpu_bytes"] == pytest.approx(PARAMS * 12 * 7 / 8, rel=1e-12)
    assert z0["optimizer_time_s"] / z1["optimizer_time_s"] == pytest.approx(8, rel=1e-12)
    # MFU over 8 GPUs' peak
    model_flops = (6 * N_MATMUL + 12 * L * H * (2048 + 1) / 2) * 64 * 2048
    assert z0["mfu"] == pytest.approx(model_flops / (z0["step_time_s"] * 8 * H100_FP16), rel=1e-9)


def test_gradient_accumulation_scales_forward_backward():
    base = dict(**TRAIN, seq_len=2048, micro_batch=8)
    one = dse.evaluate(**base, batch=8)
    eight = dse.evaluate(**base, batch=64)  # dp 1: 64 / (1 x 8) = 8 micro-steps
    assert one["gradient_accumulation_steps"] == 1
    assert eight["gradient_accumulation_steps"] == 8
    assert eight["forward_time_s"] == pytest.approx(8 * one["forward_time_s"], rel=1e-12)
    # forward + backward runs 8 times, the optimizer once
    assert eight["step_time_s"] - eight["optimizer_time_s"] == pytest.approx(
        8 * (one["step_time_s"] - one["optimizer_time_s"]), rel=1e-9)
    assert eight["optimizer_time_s"] == pytest.approx(one["optimizer_time_s"], rel=1e-12)
    # the memory is the micro-batch's
    assert eight["memory_per_gpu_bytes"] == pytest.approx(one["memory_per_gpu_bytes"], rel=1e-12)


def test_70b_on_one_gpu_is_infeasible_naming_optimizer_state():
    m = dse.evaluate(workload="llama-3-70b", hardware="h100", mode="train", batch=1, seq_len=512)
    assert m["feasible"] is False
    reason = m["infeasible_reasons"][0]
    assert "optimizer" in reason
    # 70.55e9 parameters x 16 B = 1128.9 GB of model state alone
    L70, H70, KVD70, F70 = 80, 8192, 8 * 128, 28672
    p70 = L70 * (H70 * (H70 + 2 * KVD70) + H70 * H70 + 3 * H70 * F70 + 2 * H70) + 2 * V * H70 + H70
    assert f"{p70 * 16 / 1e9:.1f}" == "1128.9"
    assert "weights+gradients+optimizer 1128.9 GB" in reason and "> 85.9 GB" in reason
    assert m["step_time_s"] > 0
