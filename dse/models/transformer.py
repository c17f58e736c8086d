"""Transformer operators, parameters, KV cache and activation memory, derived from the architecture.

Operator FLOP and bytes follow the standard accounting of a decoder layer (Kaplan et al. 2020,
"Scaling Laws for Neural Language Models", Table 1; Narayanan et al. 2021, "Efficient Large-Scale
Language Model Training on GPU Clusters", section 5.1): a GEMM of [T x K] by [K x N] costs 2*T*K*N
FLOP and moves its weights once plus its input and output activations. Attention is fused in the way
of FlashAttention-2 (Dao 2023, Algorithm 1): the score matrix stays on chip, K and V are read once per
block of 128 query rows, and a causal mask skips the upper triangle. Grouped-query attention shrinks
the K/V projections and cache by heads/kv_heads (Ainslie et al. 2023). Mixture-of-experts layers run
top_k experts per token (Shazeer et al. 2017; Jiang et al. 2024, Mixtral) and, with uniform routing,
T tokens touch E*(1-(1-k/E)^T) distinct experts in expectation, which sets the expert weights read.

All functions accept Python floats or numpy arrays for the point-dependent sizes (batch, lengths).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from dse.catalog.types import Transformer
from dse.models.communication import engine_allreduce_time
from dse.models.roofline import OpTable

FLASH_BLOCK_ROWS = 128  # FlashAttention-2 query block (Dao 2023, section 3.1, B_r = 128 on A100)


def _mlp_mats(w: Transformer) -> int:
    return 3 if w.ffn == "swiglu" else 2


# Multi-head latent attention (MLA; DeepSeek-AI 2024, "DeepSeek-V2", section 2.1; "DeepSeek-V3 Technical
# Report", section 2.1.1): keys and values are up-projected from a kv_lora_rank-wide latent that the
# cache holds, next to one qk_rope_head_dim-wide RoPE key shared by all heads; each head's query and key
# are head_dim (no RoPE) + qk_rope_head_dim wide, its value head_dim; the query may itself come from a
# q_lora_rank-wide latent. Prefill materialises per-head K and V (what these FLOP count); the cache,
# and so the bytes decode streams, is the latent.

def qk_head_dim(w: Transformer) -> int:
    """Width of one head's query and key: head_dim, plus the decoupled RoPE part under MLA."""
    return w.head_dim + w.qk_rope_head_dim


def kv_cache_elements(w: Transformer) -> int:
    """Elements one layer caches per token: K and V of every KV head, 2 * kv_heads * head_dim, or under
    MLA the latent and the shared RoPE key, kv_lora_rank + qk_rope_head_dim (DeepSeek-V2, section 2.1.2)."""
    if w.kv_lora_rank:
        return w.kv_lora_rank + w.qk_rope_head_dim
    return 2 * w.kv_heads * w.head_dim


def kv_groups(w: Transformer) -> int:
    """How many separate K/V groups the cache holds (tensor parallelism splits at most this far): the
    KV heads, or one latent under MLA, which every rank keeps whole."""
    return 1 if w.kv_lora_rank else w.kv_heads


def _qkv_weights(w: Transformer) -> int:
    """Q, K and V projections: h*(heads*dq + 2*kv_heads*d); under MLA the query (down and up when
    q_lora_rank is set), the KV down-projection to the latent and RoPE key, the K and V up-projections
    and the two latent norms."""
    h, q = w.hidden, w.heads * qk_head_dim(w)
    if not w.kv_lora_rank:
        return h * (q + 2 * w.kv_heads * w.head_dim)
    query = h * w.q_lora_rank + w.q_lora_rank * q if w.q_lora_rank else h * q
    return (query + h * (w.kv_lora_rank + w.qk_rope_head_dim) + w.kv_lora_rank * w.heads * 2 * w.head_dim
            + w.q_lora_rank + w.kv_lora_rank)


def kv_projection_weights(w: Transformer) -> int:
    """Weights of the projections that make what the cache holds, which tensor parallelism can split only
    kv_groups ways: K and V, h*2*kv_heads*d; under MLA the down-projection to the latent and RoPE key
    and the latent's norm, h*(kv_lora_rank + qk_rope_head_dim) + kv_lora_rank."""
    if w.kv_lora_rank:
        return w.hidden * (w.kv_lora_rank + w.qk_rope_head_dim) + w.kv_lora_rank
    return w.hidden * 2 * w.kv_heads * w.head_dim


def _out_weights(w: Transformer) -> int:
    """Output projection from the heads' values back to the hidden width: heads*d x h."""
    return w.heads * w.head_dim * w.hidden


def _attention_weights(w: Transformer) -> int:
    """Q, K, V and output projections: h*(h + 2*kv_heads*d) + h*h when heads*d = h."""
    return _qkv_weights(w) + _out_weights(w)


def attention_pair_flops(w: Transformer) -> int:
    """FLOP of one layer for one (query, key) pair: Q.K over qk_head_dim and P.V over head_dim, for
    every head, 2 FLOP a multiply-add: 4*h when heads*d = h (PaLM's 4*L*h*s per token)."""
    return 2 * w.heads * (qk_head_dim(w) + w.head_dim)


def moe_layers(w: Transformer) -> int:
    """Layers whose MLP is routed experts (all but the leading dense ones); 0 for a dense model."""
    return w.layers - w.dense_layers if w.experts > 1 else 0


def _router_weights(w: Transformer) -> int:
    return w.hidden * w.experts if w.experts > 1 else 0


def _mlp_total(w: Transformer, routed: int) -> float:
    """MLP weight elements over all layers when each MoE layer runs `routed` routed experts (plus its
    shared ones) and each dense layer its ffn_hidden MLP."""
    mats, h = _mlp_mats(w), w.hidden
    moe = moe_layers(w) * mats * h * w.moe_ffn_hidden * (routed + w.shared_experts)
    return float(moe + (w.layers - moe_layers(w)) * mats * h * w.ffn_hidden)


def layer_weights(w: Transformer) -> float:
    """Weight elements of a mean transformer layer (all experts), norms included."""
    routers = moe_layers(w) * _router_weights(w)
    return (w.layers * _attention_weights(w) + _mlp_total(w, w.experts) + routers) / w.layers + 2 * w.hidden


def expert_weights(w: Transformer) -> float:
    """Weight elements of a mean layer's routed experts (0 for a dense model)."""
    return moe_layers(w) * _mlp_mats(w) * w.hidden * w.moe_ffn_hidden * w.experts / w.layers


def gemm_io_elements(w: Transformer) -> tuple[float, float]:
    """Elements per token, summed over the layers, that enter and leave the layer GEMMs: inputs h (QKV),
    heads*d (output projection), h and f per MLP (the fused up/gate projection reads h, the down
    projection f; per routed copy, shared and dense MLPs alike); outputs Q, K and V, h, and the
    (mats - 1) f + h of each MLP. Router GEMMs are left out (they stay in 16 bits)."""
    h, mats, L = w.hidden, _mlp_mats(w), w.layers
    routed = moe_layers(w)
    mlps = [(routed * w.top_k, w.moe_ffn_hidden), (routed, w.shared_experts * w.moe_ffn_hidden),
            (L - routed, w.ffn_hidden)]
    ins = L * (h + w.heads * w.head_dim) + sum(n * (h + f) for n, f in mlps if f)
    outs = L * (w.heads * qk_head_dim(w) + kv_cache_elements(w) + h) + sum(
        n * ((mats - 1) * f + h) for n, f in mlps if f)
    return float(ins), float(outs)


def parameters(w: Transformer) -> float:
    """Total parameters: layers, token embedding and LM head (unless tied); a ViT has a patch
    embedding and a classifier head instead of a token embedding."""
    if w.patch:
        embed, patch = w.vocab * w.hidden, w.patch * w.patch * w.channels * w.hidden
    else:
        embed, patch = w.vocab * w.hidden * (1 if w.tied_embeddings else 2), 0
    return w.layers * layer_weights(w) + embed + patch + w.hidden


def matmul_parameters_per_token(w: Transformer) -> float:
    """Parameters a token multiplies by in a forward pass (active and shared experts only, LM head
    included, embedding lookup excluded): the N of the 2N / 6N FLOP-per-token rule (Kaplan et al. 2020)."""
    return float(w.layers * _attention_weights(w) + _mlp_total(w, w.top_k) + moe_layers(w) * _router_weights(w)
                 + w.vocab * w.hidden)


def attended_keys(w: Transformer, seq_len):
    """Mean keys a query attends to in a sequence: all s, or (s + 1)/2 under a causal mask."""
    return (seq_len + 1.0) / 2.0 if w.causal else seq_len


def model_flops(w: Transformer, tokens, seq_len, training: bool):
    """Model FLOP of a forward (or forward+backward) pass: PaLM's 2N + 4*L*h*s per forward token
    (Chowdhery et al. 2022, Appendix B; 4*h is `attention_pair_flops`), with s the keys each query
    really attends, (s + 1)/2 for a causal model, as FlashAttention-2 counts causal FLOP (Dao 2023,
    section 4.1). Counting all s keys, as PaLM does, credits work a causal kernel skips and lets MFU
    exceed 1 at long context. Training triples it (forward + backward)."""
    per_token = 2.0 * matmul_parameters_per_token(w) + w.layers * attention_pair_flops(w) * attended_keys(w, seq_len)
    return (3.0 if training else 1.0) * per_token * tokens


def kv_cache_bytes(w: Transformer, batch, context, kv_bytes: float):
    """The cache of every layer for `batch` sequences of `context` tokens: L * `kv_cache_elements` *
    ctx * b bytes (2*L*kv_heads*d*ctx*b, or L*(kv_lora_rank + qk_rope_head_dim)*ctx*b under MLA)."""
    return float(w.layers * kv_cache_elements(w)) * context * batch * kv_bytes


def experts_touched(w: Transformer, tokens):
    """Expected distinct experts hit by `tokens` tokens routed uniformly to top_k of E experts."""
    if w.experts == 1:
        return 1.0 + 0.0 * tokens
    return w.experts * (1.0 - (1.0 - w.top_k / w.experts) ** tokens)


# Monomials of a pass that every operator's FLOP and bytes are linear in (per design point):
#   tokens    = batch * q_len                       new tokens
#   attended  = batch * q_len * mean context        query-key pairs (causal: upper triangle skipped)
#   logits    = batch * logit_tokens                positions that need vocabulary logits
#   kv_rows   = batch * mean context * ceil(q_len / 128)   K/V rows FlashAttention-2 streams: each block
#               of 128 query rows reads the keys it attends (causal blocks stop at the diagonal)
# Each operator's matrix rows M (for the efficiency curve of `dse.models.roofline`) are one of:
TOKENS, QUERY_ROWS, LOGIT_ROWS, EXPERT_ROWS, NO_GEMM = range(5)
# tokens for weight GEMMs; q_len * heads/kv_heads query rows per (sequence, KV head) for attention;
# logit positions; tokens * top_k / experts touched for each expert's GEMM; 1 for element-wise work.

# Element-wise work per element, counted from what each kernel computes (FLOP) and moves (elements):
# softmax 5 per score (max, subtract, exp, sum, divide); activation 5 per output (SiLU or GELU
# approximation ~4 plus the SwiGLU product or bias); RMS/LayerNorm 4 per element (square, sum, scale,
# weight) and two norms per layer; residual add 1 per element, two per layer.
SOFTMAX_FLOP, ACTIVATION_FLOP, NORM_FLOP = 5, 5, 4
# Unfused attention (`attention = "unfused"`: Megatron-LM before FlashAttention; Shoeybi et al. 2019)
# writes the score matrix to memory: the QK^T GEMM writes it, the fused scale-mask-softmax reads it
# and writes the probabilities, dropout reads them and writes its output and a 1-byte mask (half an
# element), the PV GEMM reads it: 6.5 elements moved per score and head, in four kernels.
UNFUSED_SCORE_BYTES = 6.5


@lru_cache(maxsize=256)
def operator_table(w: Transformer, act_bytes: float, kv_bytes: float) -> tuple:
    """Per-operator coefficients of the monomials: names, repeat, kernels, row kind, weight elements,
    and (ops x 4) matrices for tensor FLOP, vector FLOP and activation bytes, and the part of those
    bytes that is K/V (the projections' K/V outputs and the cache attention streams; see `shard`). Each
    row is one operator's accounting; a pass is then ``matrix @ monomials``.

    Activation bytes per token: QKV reads h, writes h + 2*kvd; attention reads Q and writes O (2h)
    plus the K/V rows it streams; the MLP GEMMs read h, write the `mats - 1` up/gate outputs (f each),
    read the activated f and write h, i.e. 2h + mats*f per routed copy; the activation reads the
    up/gate outputs and writes one f; each norm and residual add reads and writes h (three for an add)."""
    h, f, L = w.hidden, w.moe_ffn_hidden, w.layers
    kv, q, o, qkv = kv_cache_elements(w), w.heads * qk_head_dim(w), w.heads * w.head_dim, _qkv_weights(w)
    # unfused attention computes the whole square and masks it: twice the causal pairs
    fused = w.attention == "flash"
    square = 1 if fused or not w.causal else 2
    mats = _mlp_mats(w)
    k, ab = w.top_k, act_bytes
    routed = moe_layers(w) or L  # layers whose MLP row below is the (routed) MLP
    mlp_rows = EXPERT_ROWS if w.experts > 1 else TOKENS
    rows = [  # name, repeat, kernels, GEMM rows, weights, tensor FLOP, vector FLOP, activation bytes
        ("qkv_proj", L, 1, TOKENS, qkv, (2 * qkv, 0, 0, 0), (0, 0, 0, 0), ((h + q + kv) * ab, 0, 0, 0)),
        ("attention", L, 1 if fused else 4, QUERY_ROWS, 0, (0, attention_pair_flops(w) * square, 0, 0),
         (0, SOFTMAX_FLOP * w.heads * square, 0, 0),
         ((q + o) * ab, UNFUSED_SCORE_BYTES * ab * w.heads * square * (not fused), 0, kv * kv_bytes)),
        ("out_proj", L, 1, TOKENS, o * h, (2 * o * h, 0, 0, 0), (0, 0, 0, 0), ((o + h) * ab, 0, 0, 0)),
        ("mlp", routed, mats, mlp_rows, mats * h * f, (2 * k * mats * h * f, 0, 0, 0), (0, 0, 0, 0),
         ((2 * h + mats * f) * k * ab, 0, 0, 0)),
        ("activation", routed, 1, NO_GEMM, 0, (0, 0, 0, 0), (ACTIVATION_FLOP * k * f, 0, 0, 0),
         (mats * k * f * ab, 0, 0, 0)),
        ("norms", L, 2, NO_GEMM, 0, (0, 0, 0, 0), (2 * NORM_FLOP * h, 0, 0, 0), (4 * h * ab, 0, 0, 0)),
        residual_row(w, ab),
    ]
    for name, repeat, width in (("shared_mlp", moe_layers(w), w.shared_experts * f),
                                ("dense_mlp", L - routed, w.ffn_hidden)):
        if repeat and width:  # every token runs these: GEMMs and their activation, on all tokens
            rows.append((name, repeat, mats + 1, TOKENS, mats * h * width, (2 * mats * h * width, 0, 0, 0),
                         (ACTIVATION_FLOP * width, 0, 0, 0), ((2 * h + 2 * mats * width) * ab, 0, 0, 0)))
    if w.experts > 1:  # router GEMM and top-k selection; fp32 router logits
        rows.append(("router", moe_layers(w), 2, TOKENS, h * w.experts, (2 * h * w.experts, 0, 0, 0), (0, 0, 0, 0),
                     (h * ab + 4 * w.experts, 0, 0, 0)))
    if w.patch:
        pixels = w.patch * w.patch * w.channels
        rows.append(("patch_embed", 1, 1, TOKENS, pixels * h, (2 * pixels * h, 0, 0, 0), (0, 0, 0, 0),
                     ((pixels + h) * ab, 0, 0, 0)))
    else:
        rows.append(("embedding", 1, 1, NO_GEMM, 0, (0, 0, 0, 0), (0, 0, 0, 0), (2 * h * ab, 0, 0, 0)))
    rows.append(("final_norm", 1, 1, NO_GEMM, 0, (0, 0, 0, 0), (NORM_FLOP * h, 0, 0, 0), (2 * h * ab, 0, 0, 0)))
    rows.append(("logits", 1, 1, LOGIT_ROWS, h * w.vocab, (0, 0, 2 * h * w.vocab, 0), (0, 0, 0, 0),
                 (0, 0, h * ab + 4 * w.vocab, 0)))
    names, repeat, kernels, row_kind, weights, ft, fv, act = zip(*rows, strict=True)
    arr = lambda x: np.array(x, dtype=float)  # noqa: E731
    kv_act = np.zeros((len(names), 4))
    kv_act[names.index("qkv_proj"), 0] = kv * ab
    kv_act[names.index("attention"), 3] = kv * kv_bytes
    return (names, arr(repeat), arr(kernels), np.array(row_kind), arr(weights), arr(ft), arr(fv), arr(act), kv_act)


def residual_row(w: Transformer, ab: float) -> tuple:
    """The residual adds of a layer: two of two h-wide tensors (read 2, write 1 each), or, for a parallel
    block (GPT-J, Wang & Komatsuzaki 2021; PaLM, Chowdhery et al. 2022, section 2), one add of the input
    and both branches' outputs (read 3, write 1) in one kernel; 2h FLOP per token either way."""
    adds, moved = (1, 4) if w.parallel_block else (2, 6)
    h = w.hidden
    return ("residual", w.layers, adds, NO_GEMM, 0, (0, 0, 0, 0), (2 * h, 0, 0, 0), (moved * h * ab, 0, 0, 0))


def tp_syncs_per_layer(w: Transformer) -> int:
    """Tensor-parallel reductions of a layer's activations: after attention and after the MLP (Shoeybi
    et al. 2019, Fig. 3), or one for a parallel block, whose branches' partial sums add before a single
    all-reduce (PaLM, Chowdhery et al. 2022, section 2, "Parallel Layers"; GPT-J's mesh-transformer-jax)."""
    return 1 if w.parallel_block else 2


def _stack(values: list) -> np.ndarray:
    """(n,) for one design point; (n, points) when any value is a column (scalars are broadcast)."""
    shape = next((v.shape for v in values if isinstance(v, np.ndarray) and v.ndim), ())  # the columns' shape
    if not shape:
        return np.array(values, dtype=float)
    out = np.empty((len(values), *shape))
    for i, value in enumerate(values):
        out[i] = value
    return out


def pass_ops(w: Transformer, batch, q_len, kv_len, logit_tokens, act_bytes: float, kv_bytes: float,
             expert_group=1.0, kv_streams=1.0) -> OpTable:
    """Operators of one forward pass over `q_len` new tokens per sequence attending to `kv_len`.

    Prefill and encoders: q_len = kv_len = sequence length. Decode: q_len = 1, kv_len = context.
    `logit_tokens` is the number of positions per sequence that need vocabulary logits.
    `expert_group`: expert parallelism over that many ranks, each holding 1/group of the experts and
    receiving the tokens all of them route there (GShard, Lepikhin et al. 2021, section 2.2): the
    FLOP per rank stay those of its own tokens, each local expert's GEMM has `group` times the rows.
    `kv_streams`: times the attention kernel streams each KV head's cache (`decode_kv_streams`).
    Works on floats (one design point) or numpy columns (a population).
    """
    names, repeat, kernels, row_kind, weights, ft, fv, act, kv_act = operator_table(w, act_bytes, kv_bytes)
    u, row_counts, touched = _pass_terms(w, batch, q_len, kv_len, logit_tokens, expert_group, kv_streams)
    return OpTable(names=names, repeat=repeat, weights=_weights_read(w, names, weights, touched, u.ndim),
                   flops_tensor=ft @ u, rows=row_counts[row_kind], flops_vector=fv @ u, act_bytes=act @ u,
                   kernels=kernels, kv_bytes=kv_act @ u)


def _pass_terms(w: Transformer, batch, q_len, kv_len, logit_tokens, expert_group=1.0, kv_streams=1.0):
    """The monomials of a pass (see above), each operator kind's GEMM rows, and the experts touched on
    this rank: the expert group's tokens touch `experts_touched` experts, 1/group of them here, each
    with the group's tokens routed to it, tokens * group * top_k / touched rows. The K/V rows are
    streamed `kv_streams` times (`decode_kv_streams`)."""
    tokens = batch * q_len
    context = kv_len - (q_len - 1) / 2.0 if w.causal else kv_len
    u = _stack([tokens, tokens * context, batch * logit_tokens,
                batch * context * np.ceil(q_len / FLASH_BLOCK_ROWS) * kv_streams])
    touched = experts_touched(w, tokens * expert_group)
    per_expert = tokens * expert_group * w.top_k / np.maximum(touched, 1e-12)  # no tokens (an empty chunk): no rows
    touched = touched / expert_group
    row_counts = _stack([tokens, q_len * (w.heads // kv_groups(w)), batch * logit_tokens, per_expert,
                         1.0 + 0.0 * tokens])
    return u, row_counts, touched


def _weights_read(w: Transformer, names, weights, touched, ndim: int):
    """Weight elements each operator reads: for mixture-of-experts layers, the experts touched."""
    if w.experts > 1:
        moe = np.array([n == "mlp" for n in names])
        return np.multiply.outer(np.where(moe, weights, 0.0), touched) + (
            np.multiply.outer(np.where(moe, 0.0, weights), np.ones_like(touched)))
    return weights[:, None] if ndim > 1 else weights  # broadcasts against (ops, points) without a copy


def inference_activation_bytes(w: Transformer, tokens, logit_positions, act_bytes: float):
    """Peak working activations of a forward pass: the widest layer's live tensors (input, QKV and
    the MLP intermediate) for all tokens plus fp32 logits. Earlier layers' activations are freed."""
    widest = max(w.ffn_hidden, w.moe_ffn_hidden * (w.top_k + w.shared_experts)) if w.experts > 1 else w.ffn_hidden
    live = tokens * (2 * w.hidden + kv_cache_elements(w) + 2 * widest) * act_bytes
    return live + logit_positions * w.vocab * 4.0


def training_activation_bytes(w: Transformer, batch, seq_len, recompute: str, act_bytes: float):
    """Activations kept for the backward pass, derived tensor by tensor as Korthikanti et al. 2022
    ("Reducing Activation Recomputation in Large Transformer Models", section 4.1) do, for this
    architecture and without dropout (none of these models train with it). Per layer and token:
    attention keeps the QKV input h, Q h, K and V 2*kvd and the output O h (FlashAttention-2 keeps
    no score matrix, Dao 2023); the MLP keeps its input h and mats*f (gate, up and activated
    product for SwiGLU; pre- and post-GELU for GELU) per routed copy; the two norms keep their inputs
    2h. For GPT-3's shape (kvd = h, GELU, f = 4h) that is 16h elements = 32*s*b*h bytes in 16 bits:
    Korthikanti's 34*s*b*h less the two dropout masks. `selective` recomputation is what
    FlashAttention already does, so it keeps the same; `full` keeps only each layer's input (h), and
    while the backward recomputes a layer it holds that layer's activations too, one layer at a time
    (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost", section 3: the kept checkpoints
    plus one segment's activations). fp32 logits (s*b*V*4 bytes) are added."""
    elements = w.layers * sum(layer_activation_elements(w, recompute, seq_len))
    if recompute == "full":
        elements += sum(layer_activation_elements(w, "none", seq_len))
    return seq_len * batch * elements * act_bytes + seq_len * batch * w.vocab * 4.0


def layer_activation_elements(w: Transformer, recompute: str, seq_len=0.0) -> tuple[float, float]:
    """Elements one layer keeps per token for its backward (see `training_activation_bytes`), split
    into what tensor parallelism leaves whole on every rank (the QKV and MLP inputs and the two norm
    inputs, 4h; Korthikanti et al. 2022's "10" less the dropout masks) and what it splits by heads or
    columns (Q, O, K, V and the MLP intermediates). Full recomputation keeps the layer input only.
    Unfused attention also keeps the softmax output, the dropout mask and its output, 5as^2b bytes
    (2.5 a s elements per token of a `seq_len` sequence), which selective recomputation drops
    (Korthikanti et al. 2022, sections 4.1 and 5)."""
    if recompute == "full":
        return float(w.hidden), 0.0
    scores = 2.5 * w.heads * seq_len if w.attention == "unfused" and recompute == "none" else 0.0
    q, o = w.heads * qk_head_dim(w), w.heads * w.head_dim
    mlp = _mlp_total(w, w.top_k) / w.layers / w.hidden  # the mean layer's active MLP inner width, all matrices
    return 4.0 * w.hidden, q + o + kv_cache_elements(w) + mlp + scores


# Operators split across tensor-parallel ranks (Shoeybi et al. 2019, Megatron-LM, section 3): attention
# heads and MLP columns/rows, and the vocabulary-parallel logits. Norms, residuals and embeddings are
# replicated on every rank.
TP_SHARDED = ("qkv_proj", "attention", "out_proj", "mlp", "activation", "shared_mlp", "dense_mlp", "logits")


def shard(table: OpTable, tp, w: Transformer | None = None, names: tuple[str, ...] = TP_SHARDED) -> OpTable:
    """Per-rank operators under tensor parallelism of degree `tp` (a number or a numpy column); `names`
    are the operators split across ranks. Given the workload `w`, what the KV heads hold splits only
    min(tp, kv_groups) ways: beyond the KV heads each rank keeps whole copies of the K/V projections
    (their weights, FLOP and outputs) and streams the cache of the KV heads it holds, total /
    min(tp, kv_groups) (vLLM replicates KV heads when tp exceeds them: QKVParallelLinear, 2025; as
    `kv_rank_share` does for the cache's memory). A column that holds one degree throughout is divided
    as that number (the same arithmetic on (ops, 1) factors, not (ops, points) ones)."""
    if np.ndim(tp) and (tp == tp[0]).all():
        tp = tp[0]
    split = np.array([name in names for name in table.names])
    shape = (len(split),) + (1,) * (np.ndim(table.flops_tensor) - 1)
    div = np.where(split.reshape(shape), 1.0 / np.asarray(tp, dtype=float), 1.0)
    weights, flops, act = table.weights * div, table.flops_tensor * div, table.act_bytes * div
    extra = 0.0 if w is None else kv_excess(w, tp)
    if np.any(extra > 0):  # K/V beyond a 1/tp share (none where tp <= kv_groups: nothing to add)
        kv_rows = np.array([name == "qkv_proj" for name in table.names]).reshape(shape)
        kv = np.where(kv_rows, kv_projection_weights(w) / _qkv_weights(w), 0.0)  # K/V share of the QKV GEMM
        weights = weights + table.weights * kv * extra
        flops = flops + table.flops_tensor * kv * extra
        act = act + table.kv_bytes * extra
    return OpTable(names=table.names, repeat=table.repeat, weights=weights, flops_tensor=flops, rows=table.rows,
                   flops_vector=table.flops_vector * div, act_bytes=act, kernels=table.kernels,
                   kv_bytes=table.kv_bytes * (div if w is None else kv_rank_share(w, tp)))


def kv_rank_share(w: Transformer, tp):
    """Share of the KV heads (and of their cache) each of `tp` ranks holds: 1 / min(tp, kv_groups)."""
    return 1.0 / np.minimum(tp, kv_groups(w))


def kv_excess(w: Transformer, tp):
    """Share of the K/V groups (their projections, outputs and cache) each of `tp` ranks holds beyond
    an even 1/tp split: 1/min(tp, kv_groups) - 1/tp, zero where tp <= kv_groups (`kv_rank_share`)."""
    return kv_rank_share(w, tp) - 1.0 / np.asarray(tp, dtype=float)


# Decode attention kernels (`--decode-attention`): "grouped" serves all the query heads of a KV head from
# one read of its cache (FlashAttention-2's decode path, which folds a group's query heads into the
# query rows: `seqlenq_ngroups_swapped` in csrc/flash_attn/flash_api.cpp; FlashInfer; TensorRT-LLM's XQA
# kernel from v0.8); "per-head" runs one query head per thread block, each streaming its KV head's
# cache (TensorRT-LLM's masked multi-head attention before XQA; vLLM's PagedAttention V1/V2,
# csrc/attention/paged_attention_v1.cu: `dim3 grid(num_heads, num_seqs, 1)`).
DECODE_ATTENTION = ("grouped", "per-head")


def decode_kv_streams(w: Transformer, tp, kernel: str):
    """Times a decode step streams each KV head's cache on a rank: 1 for a grouped kernel; for a
    per-head one the rank's query heads per KV head it holds, (heads / tp) / (kv_groups / min(tp,
    kv_groups)): 8 for Llama-2-70B (64 heads, 8 KV heads) at tp <= 8. An upper bound on the DRAM
    traffic: it leaves out the L2 hits of a group's thread blocks running together. TensorRT-LLM
    measured what the grouped kernel buys on Llama-70B, 128 in / 2048 out: 1,227 -> 2,941 output
    tokens/s per H200 within the same latency budget (2.4x, at a larger batch; NVIDIA, "New
    XQA-kernel provides 2.4x more Llama-70B throughput within the same latency budget", TensorRT-LLM
    blog, 2024-01-30). Multi-head latent attention has no per-head kernel over its latent (engines
    that decoded it head by head cached decompressed K and V instead), so it is refused there."""
    if kernel == "grouped":
        return 1.0
    return w.heads / tp / (kv_groups(w) * kv_rank_share(w, tp))


def weights_per_rank(w: Transformer, tp):
    """Weight elements one of `tp` ranks holds: 1/tp of the model, plus whole copies of the K/V
    projections beyond the KV heads (1/min(tp, kv_groups) of them per layer instead of 1/tp)."""
    return parameters(w) / tp + w.layers * kv_projection_weights(w) * kv_excess(w, tp)


def tp_allreduce_time(w: Transformer, tokens, tp, act_bytes: float, bandwidth: float, latency: float, base: float,
                      engine: tuple[float, float] = (0.0, 0.0)):
    """The all-reduces of the [tokens x hidden] activations of every layer (`tp_syncs_per_layer`: two, or
    one for a parallel block) over the scale-up link: the serving engine's own all-reduce where the link
    has its measured `engine` (fixed cost s, peer-read rate B/s), else NCCL's ring with its per-step
    `latency` and fixed cost `base` (`communication.engine_allreduce_time`)."""
    return tp_syncs_per_layer(w) * w.layers * engine_allreduce_time(tokens * w.hidden * act_bytes, tp, bandwidth,
                                                                    latency, base, *engine)


def mixed_ops(w: Transformer, decoding, context, chunk, prompt, act_bytes: float, kv_bytes: float,
              kv_streams=1.0) -> OpTable:
    """One engine step under continuous batching with chunked prefill (Yu et al. 2022, Orca, section 4;
    Agrawal et al. 2024, Sarathi-Serve, section 4): `decoding` sequences each add one token at mean
    context `context`, and one prompt of `prompt` tokens contributes a chunk of `chunk` new tokens that
    attend to the prompt up to the middle chunk. The two parts run as one batch: their monomials (FLOP
    and activation bytes) add, the weights are read once (for mixture-of-experts, the experts the
    larger part touches), and each GEMM's rows M are the step's tokens. The decode part streams each
    KV head's cache `kv_streams` times (`decode_kv_streams`)."""
    names, repeat, kernels, row_kind, weights, ft, fv, act, kv_act = operator_table(w, act_bytes, kv_bytes)
    u_d, rows_d, touched_d = _pass_terms(w, decoding, 1.0, context, 1.0, kv_streams=kv_streams)
    u_p, rows_p, touched_p = _pass_terms(w, 1.0, chunk, prompt - (prompt - chunk) / 2.0, 1.0)
    u = u_d + u_p
    return OpTable(names=names, repeat=repeat,
                   weights=_weights_read(w, names, weights, np.maximum(touched_d, touched_p), u.ndim),
                   flops_tensor=ft @ u, rows=(rows_d + rows_p)[row_kind], flops_vector=fv @ u, act_bytes=act @ u,
                   kernels=kernels, kv_bytes=kv_act @ u)
