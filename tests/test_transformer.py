"""Transformer operators, KV cache and decode behaviour against hand arithmetic."""
import pytest

import dse
from dse.models import transformer


def test_llama3_8b_kv_cache_at_4096_tokens_fp16():
    m = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="serve", scheduler="static", batch=1, input_len=4000,
                     output_len=96, precision="fp16")
    assert m["kv_cache_bytes"] == 2 * 32 * 8 * 128 * 4096 * 2


def test_kv_cache_scales_with_batch_and_precision():
    base = dict(workload="llama-3-8b", hardware="h100", mode="serve", scheduler="static", input_len=1024,
                output_len=1024)
    fp16 = dse.evaluate(**base, batch=4, precision="fp16")["kv_cache_bytes"]
    fp8 = dse.evaluate(**base, batch=4, precision="fp8")["kv_cache_bytes"]
    assert fp16 == 4 * 2 * 32 * 8 * 128 * 2048 * 2
    assert fp8 == fp16 / 2


def test_gqa_shrinks_kv_by_heads_over_kv_heads(wl):
    mha = wl("llama-2-7b")  # 32 KV heads of 128
    gqa = wl("llama-3-8b")  # 8 KV heads of 128, same depth
    assert transformer.kv_cache_bytes(mha, 1, 100, 2) / transformer.kv_cache_bytes(gqa, 1, 100, 2) == 4


def test_batch1_decode_is_memory_bound_and_speedup_follows_bandwidth():
    base = dict(workload="llama-3-8b", mode="serve", scheduler="static", batch=1, input_len=512, output_len=128,
                precision="fp16")
    a100 = dse.evaluate(hardware="a100", **base)
    h100 = dse.evaluate(hardware="h100", **base)
    assert a100["bottleneck"] == h100["bottleneck"] == "memory"
    bandwidth_ratio = 3.35 / 2.039
    # the bytes moved per step are identical, so the memory time scales exactly with bandwidth ...
    assert a100["decode_memory_time_s"] / h100["decode_memory_time_s"] == pytest.approx(bandwidth_ratio)
    # ... and every operator is memory-bound: the ITL gap is exactly the memory-time gap (launch
    # overhead is the same on both), so the speedup is the bandwidth ratio diluted by that overhead
    assert a100["itl_s"] - h100["itl_s"] == pytest.approx(
        a100["decode_memory_time_s"] - h100["decode_memory_time_s"], rel=1e-9)
    speedup = a100["itl_s"] / h100["itl_s"]
    assert 1.3 < speedup < bandwidth_ratio < 989.5 / 312


def test_decode_step_reads_the_weights_once():
    from dse.models.calibration import for_class

    eff = for_class("datacenter-gpu")
    m = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="serve", scheduler="static", batch=1, input_len=128,
                     output_len=2, precision="fp16")
    # every operator is memory-bound at batch 1: ITL = memory time + 355 launches (11 per layer x 32 + 3)
    assert m["itl_s"] == pytest.approx(m["decode_memory_time_s"] + 355 * eff.launch, rel=1e-9)
    # the memory time is the weights (less the embedding table, which is gathered, not streamed)
    # plus a little KV cache and activation traffic, at the achievable bandwidth
    streamed = m["weights_bytes"] - 128256 * 4096 * 2
    floor = streamed / (3.35e12 * eff.memory)
    assert floor < m["decode_memory_time_s"] < 1.01 * floor


def test_prefill_is_compute_bound_and_each_extra_prompt_costs_its_flops(wl):
    from dse.models.calibration import REFERENCE_MATMUL_SHARE, for_class

    base = dict(workload="llama-3-8b", hardware="h100", mode="serve", scheduler="static", output_len=16,
                precision="fp16")
    one = dse.evaluate(**base, batch=1, input_len=2048)
    four = dse.evaluate(**base, batch=4, input_len=2048)
    n = transformer.matmul_parameters_per_token(wl("llama-3-8b"))
    per_prompt = 2048 * (2 * n + 4 * 32 * 4096 * (2048 + 1) / 2)  # GEMMs + causal attention matmuls
    # large-M GEMMs run near the fitted efficiency, scaled by H100's measured best-shape GEMM share
    # (794.5 of 989.5 TFLOP/s) over the class reference's (`calibration.REFERENCE_MATMUL_SHARE`)
    rate = 989.5e12 * for_class("datacenter-gpu").tensor * (794.5 / 989.5) / REFERENCE_MATMUL_SHARE
    assert one["ttft_s"] > per_prompt / 989.5e12
    assert four["ttft_s"] - one["ttft_s"] == pytest.approx(3 * per_prompt / rate, rel=0.05)


def test_model_bigger_than_memory_is_infeasible_with_reason():
    m = dse.evaluate(workload="llama-3-70b", hardware="h100", mode="infer", batch=1, seq_len=128)
    assert m["feasible"] is False
    assert "weights 141.1 GB" in m["infeasible_reasons"][0] and "> 85.9 GB" in m["infeasible_reasons"][0]
    assert m["latency_s"] > 0  # still timed, as if memory sufficed


def test_tensor_parallel_serving_fits_70b_and_pays_allreduce():
    base = dict(workload="llama-3-70b", hardware="h100", mode="serve", scheduler="static", batch=8, input_len=512,
                output_len=128)
    tp4 = dse.evaluate(**base, tp=4)
    assert tp4["feasible"] and tp4["gpus"] == 4
    assert tp4["memory_per_gpu_bytes"] < 85.9e9
    assert tp4["communication_time_s"] > 0


def test_model_flops_follow_palm_convention(wl):
    w = wl("llama-3-8b")
    n = transformer.matmul_parameters_per_token(w)
    tokens, seq = 4096.0, 4096.0
    assert transformer.model_flops(w, tokens, seq, True) == pytest.approx(
        (6 * n + 12 * 32 * 4096 * (seq + 1) / 2) * tokens)  # a causal query attends (s + 1)/2 keys on average


def test_moe_decode_touches_few_experts(wl):
    w = wl("mixtral-8x7b")
    assert transformer.experts_touched(w, 1.0) == pytest.approx(2.0)  # top-2 of 8
    assert transformer.experts_touched(w, 4096.0) == pytest.approx(8.0)
    small = dse.evaluate(workload="mixtral-8x7b", hardware="h100", mode="serve", scheduler="static", batch=1,
                         precision="fp8",
                         input_len=128, output_len=64)
    assert small["feasible"] is True


def test_moe_decode_reads_only_the_routed_experts(wl):
    w = wl("mixtral-8x7b")
    one = transformer.pass_ops(w, 1.0, 1.0, 100.0, 1.0, 2.0, 2.0)
    mlp = one.names.index("mlp")
    assert one.weights[mlp] == 2 * 3 * 4096 * 14336  # top-2 experts of SwiGLU 4096 -> 14336
    many = transformer.pass_ops(w, 512.0, 1.0, 100.0, 1.0, 2.0, 2.0)
    assert many.weights[mlp] == pytest.approx(8 * 3 * 4096 * 14336)
    assert many.flops_tensor[mlp] == 2 * 512 * 2 * 3 * 4096 * 14336


def test_operator_flops_by_hand_for_a_decode_step(wl):
    w = wl("llama-3-8b")
    t = transformer.pass_ops(w, 4.0, 1.0, 1000.0, 1.0, 2.0, 2.0)
    names = t.names
    assert t.flops_tensor[names.index("qkv_proj")] == 2 * 4 * 4096 * (4096 + 2 * 1024)
    assert t.flops_tensor[names.index("attention")] == 4 * 4 * 32 * 128 * 1000  # QK^T and PV over 1000 keys
    assert t.act_bytes[names.index("attention")] == 2 * 4 * 4096 * 2 + 4 * 1000 * 2 * 1024 * 2
    assert t.flops_tensor[names.index("logits")] == 2 * 4 * 4096 * 128256
    assert t.repeat[names.index("mlp")] == 32


def test_context_beyond_the_model_is_noted():
    notes = dse.evaluate_point(workload="llama-2-7b", hardware="h100", mode="serve", input_len=8000,
                               output_len=1000).notes
    assert any("9000 tokens exceed llama-2-7b's context length of 4096" in n for n in notes)


def test_training_activation_memory_by_hand(wl):
    w = wl("llama-3-8b")
    b, s_, h, kvd, f = 2, 1024, 4096, 1024, 14336
    # per layer and token: QKV input, Q, K, V, O (3h + 2kvd), MLP input h, SwiGLU gate, up, product 3f,
    # two norm inputs 2h; 16-bit; plus fp32 logits
    per_token = 3 * h + 2 * kvd + h + 3 * f + 2 * h
    expected = 32 * b * s_ * per_token * 2 + b * s_ * 128256 * 4
    assert transformer.training_activation_bytes(w, b, s_, "none", 2.0) == expected
    # full recomputation: every layer's input, and the one layer the backward is recomputing in full
    assert transformer.training_activation_bytes(w, b, s_, "full", 2.0) == (32 * b * s_ * h * 2 + b * s_ * per_token * 2
                                                                            + b * s_ * 128256 * 4)


def test_gpt3_activations_reproduce_korthikanti_without_dropout(wl):
    # Korthikanti et al. 2022: 34*s*b*h bytes per layer (16-bit, selective), of which 2*s*b*h are dropout masks
    w = wl("gpt-3-175b")
    b, s_ = 1, 2048
    logits = b * s_ * w.vocab * 4
    per_layer = (transformer.training_activation_bytes(w, b, s_, "selective", 2.0) - logits) / w.layers
    assert per_layer == 32 * s_ * b * w.hidden


def test_mfu_stays_below_one_at_long_context():
    for seq in (32768, 131072):
        m = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="train", batch=1, seq_len=seq)
        assert 0 < m["hfu"] <= 1 and m["mfu"] <= m["hfu"]
