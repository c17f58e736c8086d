"""Tensor parallelism beyond the KV heads: each rank holds and streams the KV heads it keeps, total /
min(tp, kv_heads), and whole copies of the K/V projections; memory and time count the same bytes."""
import pytest

import dse
from dse.catalog import registry
from dse.models import transformer

QWEN = registry("workloads").get("qwen2.5-7b", "w")  # 28 layers, h 3584, 28 heads, 4 KV heads of 128
H, HEADS, KVH, D, L = 3584, 28, 4, 128, 28


def rows(table):
    return {name: i for i, name in enumerate(table.names)}


@pytest.mark.parametrize("tp, held", [(1, 4), (2, 2), (4, 1), (8, 1)])
def test_decode_step_streams_the_kv_heads_each_rank_holds(tp, held):
    # one decode step of 8 sequences at 1,000 tokens of context, fp16
    table = transformer.shard(transformer.pass_ops(QWEN, 8.0, 1.0, 1000.0, 1.0, 2.0, 2.0), tp, QWEN)
    r = rows(table)
    kv_stream = 2 * held * D * 2 * 8 * 1000  # K and V of the heads held, 2 bytes, 8 x 1,000 positions
    q_o = (HEADS * D + HEADS * D) * 2 * 8 / tp  # the rank's query and output heads of 8 tokens
    assert table.act_bytes[r["attention"]] == pytest.approx(q_o + kv_stream, rel=1e-12)
    # QKV: the query columns split tp ways, the K/V columns only as far as the KV heads
    assert table.weights[r["qkv_proj"]] == pytest.approx(H * HEADS * D / tp + H * 2 * held * D, rel=1e-12)
    assert table.flops_tensor[r["qkv_proj"]] == pytest.approx(2 * 8 * (H * HEADS * D / tp + H * 2 * held * D),
                                                              rel=1e-12)
    # what the step streams from the cache is what the cache holds per rank (memory and time agree)
    cache = transformer.kv_cache_bytes(QWEN, 8.0, 1000.0, 2.0) * transformer.kv_rank_share(QWEN, tp)
    assert L * table.kv_bytes[r["attention"]] == pytest.approx(cache, rel=1e-12)


def test_weights_per_rank_copy_the_kv_projections_beyond_the_heads():
    p = transformer.parameters(QWEN)
    assert transformer.weights_per_rank(QWEN, 4) == pytest.approx(p / 4, rel=1e-12)  # 4 KV heads: one each
    # tp 8: each rank holds 1/8 of the model and a whole KV head's K/V projection where 1/8 was counted
    extra = L * H * 2 * KVH * D * (1 / 4 - 1 / 8)
    assert transformer.weights_per_rank(QWEN, 8) == pytest.approx(p / 8 + extra, rel=1e-12)



def test_serving_memory_past_the_kv_heads():
    # Llama-3-70B (8 KV heads) at TP 16 in a GB200 NVL72 domain: each rank holds a whole KV head (two
    # ranks share each) and its K/V projection, where 1/16 of the K/V would be counted
    w = registry("workloads").get("llama-3-70b", "w")
    m = dse.evaluate(workload="llama-3-70b", hardware="gb200", mode="serve", precision="fp16", gpus=16, tp=16,
                     gpus_per_node=72, batch=4, scheduler="static", input_len=1000, output_len=100)
    p = transformer.parameters(w)
    weights = (p / 16 + 80 * 8192 * 2 * 8 * 128 * (1 / 8 - 1 / 16)) * 2
    kv = 2 * 80 * 8 * 128 * 1100 * 2 * 4 / 8  # 4 sequences' caches, one of 8 KV heads per rank
    work = 4 * transformer.inference_activation_bytes(w, 1000, 1.0, 2.0) / 16
    reserve = 0.1 * 186 * 2**30 + 0.55 * 2**30  # runtime reserve, the engine's workspaces and TP buffers
    assert m["memory_per_gpu_bytes"] == pytest.approx(weights + kv + work + reserve, rel=1e-12)

def test_latent_cache_is_read_whole_on_every_rank():
    # DeepSeek-V3's latent (512 + 64 per token and layer) is one group: every rank streams all of it
    w = registry("workloads").get("deepseek-v3", "w")
    table = transformer.shard(transformer.pass_ops(w, 2.0, 1.0, 500.0, 1.0, 2.0, 2.0), 8, w)
    assert table.kv_bytes[rows(table)["attention"]] == pytest.approx((512 + 64) * 2 * 2 * 500, rel=1e-12)
    # the latent's down-projection is replicated; everything else of the QKV GEMMs splits 8 ways
    whole = transformer.pass_ops(w, 2.0, 1.0, 500.0, 1.0, 2.0, 2.0).weights[rows(table)["qkv_proj"]]
    down = 7168 * (512 + 64) + 512
    assert table.weights[rows(table)["qkv_proj"]] == pytest.approx((whole - down) / 8 + down, rel=1e-12)


def test_decode_step_time_stops_falling_past_the_kv_heads():
    # KV-bound decode of Llama-3-70B (64 sequences at 32k tokens): TP 8 -> 16 halves the weights per rank
    # but not the cache each rank streams (one of 8 KV heads either way)
    base = dict(workload="llama-3-70b", hardware="gb200", mode="serve", precision="fp16", scheduler="static",
                batch=64, input_len=32000, output_len=2)
    eight, sixteen = (dse.evaluate(**base, gpus=tp, tp=tp, gpus_per_node=72)["decode_memory_time_s"] for tp in (8, 16))
    w = registry("workloads").get("llama-3-70b", "w")
    cache = transformer.kv_cache_bytes(w, 64.0, 32001.0, 2.0) / 8  # per rank at both degrees
    weights = transformer.weights_per_rank(w, 8) * 2, transformer.weights_per_rank(w, 16) * 2
    # the memory time's bytes: the cache streamed and the weights (the rest is a few activations)
    assert (sixteen - eight) / eight == pytest.approx((weights[1] - weights[0]) / (cache + weights[0]), abs=0.01)
    assert 0.85 * eight < sixteen < eight


def test_training_holds_the_latent_projection_whole():
    # DeepSeek-V3 trained at TP 8: its one K/V group (the 512 + 64 latent) is made by a down-projection
    # every rank holds whole (Megatron-Core: TE Linear, parallel_mode "duplicated"), 7,168 x 576 weights
    # + the 512-wide latent norm, where an even split would give each rank 1/8 of it
    from dse.models import training
    from dse.modes.train import _layer_activations, _layer_parameters

    w = registry("workloads").get("deepseek-v3", "w")
    down = 7168 * (512 + 64) + 512
    even = transformer.layer_weights(w) / 8
    assert _layer_parameters(w, 8, 1) == pytest.approx(even + down * (1 - 1 / 8), rel=1e-12)
    # 16 B of weights, gradients and Adam states each: 7/8 x 4,129,280 x 16 B = 57.8 MB more per layer
    assert 16 * down * 7 / 8 == 57_809_920
    # the gathered latent of all 4,096 tokens stays on every rank for the backward: 576 x 2 B a token
    rep, shd = transformer.layer_activation_elements(w, "selective", 4096)
    kept = _layer_activations(w, "selective", 4096, 4096.0, 8, 2.0)
    assert kept - training.layer_activation_bytes(rep, shd, 4096.0, 8, 2.0) == pytest.approx(
        4096 * 576 * 2 * (1 - 1 / 8), rel=1e-12)
    # at TP 1 nothing is held past the groups; grouped-query models never are (tp divides the KV heads)
    assert _layer_parameters(w, 1, 1) == transformer.layer_weights(w)
    llama = registry("workloads").get("llama-3-8b", "w")
    assert _layer_parameters(llama, 8, 1) == pytest.approx(transformer.layer_weights(llama) / 8, rel=1e-12)
