"""FP8 / W8A8 inference quantizes the layers' linear GEMMs only (issue 12, physics fix 2): attention and
the LM head run 16-bit, and the embedding and head are stored 16-bit."""
from __future__ import annotations

import pytest

import dse

# Llama-3-8B: 8,030,261,248 parameters; embedding and untied head 128,256 x 4,096 = 525,336,576 each,
# final norm 4,096; the 32 layers hold the rest
PARAMS, HEAD = 8_030_261_248, 128_256 * 4_096
LAYERS = PARAMS - 2 * HEAD - 4_096


def test_layers_are_stored_in_fp8_the_embedding_and_head_in_16_bits():
    assert LAYERS == 6_979_584_000
    m = dse.evaluate(workload="llama-3-8b", hardware="h100-sxm", mode="serve", precision="fp8", batch=1,
                     scheduler="static", input_len=128, output_len=128)
    # 6.98 GB of layers at 1 B + 1.05 GB of embedding and head at 2 B = 9.08 GB (8.03 GB if all were fp8)
    assert m["weights_bytes"] == LAYERS * 1 + (PARAMS - LAYERS) * 2 == 9_080_938_496


def test_a_decode_token_reads_the_head_in_16_bits():
    # one token: bf16 and fp8 read the same activations and the same 16-bit head; the layers' GEMM weights
    # (all but the 2 x 4,096 norm weights of each of 32 layers, which the norm kernels read with their
    # activations) differ by one byte each, and so does the fp8 KV cache of one position (2 x 32 x 8 x 128
    # = 65,536 elements)
    kw = dict(workload="llama-3-8b", hardware="h100-sxm", mode="infer", batch=1, seq_len=1)
    bf16, fp8 = (dse.evaluate(precision=p, **kw) for p in ("bf16", "fp8"))
    read = {p: m["flop"] / m["arithmetic_intensity"] for p, m in (("bf16", bf16), ("fp8", fp8))}
    gemm_weights = LAYERS - 32 * 2 * 4_096
    assert read["bf16"] - read["fp8"] == pytest.approx(gemm_weights + 65_536, rel=1e-9)  # not + HEAD (0.53e9)


def test_fp8_prefill_keeps_attention_at_the_16_bit_rate():
    # Llama-3-70B prompts of 16k and 32k tokens: the layer GEMMs' FLOP grow with the tokens (2 x 68.5 GFLOP
    # per token ... = 141 GFLOP), attention's with their square (4 x 80 x 8,192 x s/2 per token: 21.5
    # GFLOP at 16k, 42.9 at 32k). fp8 speeds up the GEMMs only, so the compute time it saves doubles with
    # the prompt (within the tile penalty's 1/M term); at the fp8 rate attention too it would grow
    # (2 x 141 + 4 x 21.5) / (141 + 21.5) = 2.26x
    def saved(seq):
        kw = dict(workload="llama-3-70b", hardware="h100-sxm", mode="infer", batch=1, seq_len=seq)
        return (dse.evaluate(precision="bf16", **kw)["compute_time_s"]
                - dse.evaluate(precision="fp8", **kw)["compute_time_s"])
    assert saved(32_768) / saved(16_384) == pytest.approx(2.0, rel=0.01)
