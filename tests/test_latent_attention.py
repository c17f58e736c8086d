"""Multi-head latent attention, explicit head widths, shared and routed experts and dense leading
layers (DESIGN.md 4.1 workload fields), checked against arithmetic written out here and against the
published sizes of the models that use them."""
from __future__ import annotations

import pytest

import dse
from dse.catalog import registry
from dse.models import transformer

# DeepSeek-V3 config.json (huggingface.co/deepseek-ai/DeepSeek-V3): 61 layers, kv_lora_rank 512,
# qk_rope_head_dim 64, 128 heads of qk_nope 128 / v 128, q_lora_rank 1536, hidden 7168
LAYERS, LATENT, ROPE = 61, 512, 64


def test_deepseek_v3_kv_cache_is_the_latent():
    w = registry("workloads").get("deepseek-v3", "test")
    assert transformer.kv_cache_elements(w) == LATENT + ROPE == 576
    # one token in bf16 (2 bytes): (512 + 64) x 61 layers x 2 B = 70,272 B, not 2 x 128 heads x 128 x 61 x 2
    assert transformer.kv_cache_bytes(w, 1, 1, 2.0) == (512 + 64) * 61 * 2 == 70_272
    m = dse.evaluate(workload="deepseek-v3", hardware="h200", mode="serve", tp=8, precision="fp8", batch=16,
                     input_len=1000, output_len=24)
    # 16 sequences x 1024 tokens x 576 elements x 61 layers x 1 byte (fp8 cache)
    assert m["kv_cache_bytes"] == pytest.approx(16 * 1024 * 576 * 61 * 1.0, rel=1e-12)


def test_latent_cache_is_replicated_not_split_by_tensor_parallelism():
    w = registry("workloads").get("deepseek-v3", "test")
    assert transformer.kv_groups(w) == 1
    assert transformer.kv_groups(registry("workloads").get("llama-3-8b", "test")) == 8


def test_deepseek_v3_sizes_match_the_technical_report():
    w = registry("workloads").get("deepseek-v3", "test")
    h, heads, d, qk = 7168, 128, 128, 128 + 64
    attention = (h * 1536 + 1536 * heads * qk  # query down and up
                 + h * (512 + 64) + 512 * heads * 2 * d  # KV down to latent + RoPE key, K and V up
                 + 1536 + 512  # latent norms
                 + heads * d * h)  # output
    assert transformer.layer_weights(w) * LAYERS == pytest.approx(
        LAYERS * (attention + 2 * h)  # + the two layer norms
        + 58 * (3 * h * 2048 * (256 + 1) + h * 256)  # MoE layers: routed and shared experts, router
        + 3 * 3 * h * 18432, rel=1e-12)  # three dense layers
    assert transformer.parameters(w) == pytest.approx(671e9, rel=0.005)  # 671B total
    assert transformer.matmul_parameters_per_token(w) == pytest.approx(36.6e9, rel=0.01)  # 36.6B active with head
    # attention FLOP per (query, key) pair and layer: Q.K over 192 and P.V over 128 for 128 heads
    assert transformer.attention_pair_flops(w) == 2 * 128 * (192 + 128)


def test_explicit_head_dim_sets_the_attention_width():
    w = registry("workloads").get("gemma-2-9b", "test")  # 16 heads x 256 = 4096 wide, hidden 3584
    h, q, kv = 3584, 16 * 256, 8 * 256
    assert transformer.layer_weights(w) == pytest.approx(h * (q + 2 * kv) + q * h + 3 * h * 14336 + 2 * h)
    assert transformer.kv_cache_elements(w) == 2 * 8 * 256
    assert transformer.parameters(w) == pytest.approx(9.24e9, rel=0.005)


def test_shared_expert_runs_for_every_token():
    w = registry("workloads").get("llama-4-scout", "test")
    h = 5120
    per_layer_active = 3 * h * 8192 * (1 + 1) + h * 16  # one routed, one shared expert, router
    attention = h * (40 * 128 + 2 * 8 * 128) + 40 * 128 * h
    assert transformer.matmul_parameters_per_token(w) == pytest.approx(
        48 * (attention + per_layer_active) + 202048 * h, rel=1e-12)
    # 17B active (Meta): the matmul parameters plus the input embedding table
    assert transformer.matmul_parameters_per_token(w) + 202048 * h == pytest.approx(17e9, rel=0.02)


@pytest.mark.parametrize("name, published, tol", [
    ("llama-3.1-8b", 8.03e9, 0.005), ("llama-3.1-70b", 70.6e9, 0.005), ("llama-3.2-1b", 1.24e9, 0.005),
    ("llama-3.2-3b", 3.21e9, 0.005), ("mistral-7b", 7.25e9, 0.005), ("mistral-nemo-12b", 12.2e9, 0.01),
    ("qwen2.5-7b", 7.61e9, 0.005), ("qwen2.5-72b", 72.7e9, 0.005), ("qwen3-14b", 14.8e9, 0.005),
    ("gemma-2-27b", 27.2e9, 0.005)])
def test_new_workloads_match_published_sizes(name, published, tol):
    assert transformer.parameters(registry("workloads").get(name, "test")) == pytest.approx(published, rel=tol)


@pytest.mark.parametrize("typed", ["llama-3.1-8b", "Llama-3.1-8B-Instruct", "llama3.1-8b"])
def test_names_users_type(typed):
    assert dse.evaluate(workload=typed, hardware="h100")["latency_s"] > 0


@pytest.mark.parametrize("extra, field", [
    ("qk_rope_head_dim = 64\n", "kv_lora_rank"), ("shared_experts = 1\n", "shared_experts"),
    ("experts = 4\ntop_k = 1\ndense_layers = 2\n", "dense_layers")])
def test_workload_file_shape_fields_are_checked(tmp_path, extra, field):
    path = tmp_path / "m.toml"
    path.write_text('family = "transformer"\nlayers = 2\nhidden = 512\nheads = 8\nvocab = 1000\n' + extra)
    with pytest.raises(dse.DSEError, match=field):
        dse.evaluate(workload_file=str(path), hardware="h100")


def test_workload_file_with_head_dim_not_dividing_hidden(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('family = "transformer"\nlayers = 2\nhidden = 500\nheads = 8\nhead_dim = 64\nvocab = 1000\n')
    assert dse.evaluate(workload_file=str(path), hardware="h100")["latency_s"] > 0
