"""Train mode: one optimizer step of a model laid out over tp x pp x dp x cp GPUs (expert parallelism
inside dp x cp), its time breakdown, its memory per GPU, and MFU/HFU.

The step (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters",
sections 2-3; Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models"), on the slowest pipeline stage (ceil(L/pp) layers plus the LM head):

    t_mb   = forward + backward (+ recomputed forward) of one micro-batch on the stage
             + exposed tensor-, context- and expert-parallel communication of that micro-batch
    step   = (m + (pp - 1)/vp) t_mb           m micro-batches, 1F1B or interleaved bubble
             + pipeline point-to-point + exposed data-parallel gradient traffic + optimizer step

Backward per operator: GEMMs 2x their forward (input and weight gradients), FlashAttention-2's backward
2.5x its forward (5 matmuls against 2 with the recomputed scores; Dao 2023, section 3.1.2), element-wise
work 2x (read the output gradient and the saved input, write the input gradient). fp8 training runs the
layer GEMMs in fp8 and keeps attention, element-wise work, the LM head and activations in 16 bits, as
NVIDIA Transformer Engine does (TE documentation, "Using FP8 with Transformer Engine").

Tensor parallelism splits the K/V groups as inference does (`transformer.kv_rank_share`, one rule):
grouped-query attention needs tp to divide the KV heads (Megatron-Core's Attention divides
num_query_groups by the TP size, megatron/core/transformer/attention.py), and where tp exceeds the
groups (multi-head latent attention's one latent) each rank holds the whole K/V down-projection with
its gradients and optimizer states (`transformer.kv_excess`; Megatron-Core builds it as a TE Linear in
parallel_mode "duplicated") and keeps the gathered latent for the backward. Under sequence parallelism
the rank runs that projection on its 1/tp of the tokens and all-gathers the output, so its FLOP divide
by tp and the gather joins the TP traffic (megatron/core/transformer/multi_latent_attention.py).

MFU (PaLM, Chowdhery et al. 2022, Appendix B; Megatron's convention) = model FLOP per step / (step time
x GPUs x dense peak of the arithmetic), with model FLOP = 3 (2 N + 4 L h s_att) per token: N the
parameters a token multiplies (LM head in, embedding out), s_att the keys a query attends ((s + 1)/2
when causal); HFU adds the recomputed forward. model_tflops_per_gpu = model FLOP / step / GPUs.

Overlap, per framework default (Megatron-Core with PyTorch DDP-style bucketing): tensor-parallel
all-gathers and reduce-scatters (sequence parallelism) and expert all-to-alls sit on the critical path
(Megatron's --tp-comm-overlap is off by default; `tp_overlap` = 1 turns it on, see `_tp_exposed`);
context-parallel K/V exchange overlaps the attention it feeds (ring attention); data-parallel gradient
reduction overlaps the backward of the last micro-batch (Li et al. 2020, "PyTorch Distributed", VLDB,
section 3.2.3); ZeRO-3/FSDP parameter gathers are prefetched under the whole step's compute (Zhao et
al. 2023, "PyTorch FSDP", section 3.3); pipeline sends and receives are blocking.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dse.catalog import CNN, Transformer
from dse.models import cnn, memory, roofline, training, transformer
from dse.models import communication as comm
from dse.modes.setup import ELEMENTWISE, GEMMS, Setup, link_entry, relabel, sixteen_bit, time_ops, tp_link

ATTENTION_BACKWARD = 2.5  # FlashAttention-2 backward over forward (Dao 2023)


def _per_rank(t: roofline.Timing, tp, back):
    """A pass's time on one of `tp` ranks that split every operator's work evenly (`back` maps the
    distinct points timed to the population's rows; None for one point)."""
    total, overhead = (t.total, t.overhead) if back is None else (t.total[back], t.overhead[back])
    return (total - overhead) / tp + overhead


def _distinct(*columns):
    """The distinct tuples of a population's columns and the map back to its points; for one point,
    the point itself and None."""
    if not any(np.ndim(c) for c in columns):
        return columns, None
    columns = np.broadcast_arrays(*columns)
    key = 0
    for c in columns:  # hashing: linear in the points, no sort
        codes, seen = pd.factorize(c)
        key = key * len(seen) + codes
    back, keys = pd.factorize(key)
    where = np.empty(len(keys), dtype=np.intp)
    where[back] = np.arange(len(back))  # a point of each distinct tuple
    return tuple(c[where] for c in columns), back


def _exposed(traffic, window, interference: float):
    """Communication left on the critical path when it runs under `window` seconds of compute: what
    does not fit, plus the share `interference` of what does, for the SMs and memory bandwidth the
    collective kernels take from the compute they overlap (calibrated; Rashidi et al. 2021 and
    Jangda et al. 2022 measure this slowdown)."""
    hidden = np.minimum(traffic, window)
    return traffic - hidden + interference * hidden


def _tp_exposed(traffic, gemm, passes, interference: float):
    """One layer's tensor-parallel traffic left exposed when it overlaps the GEMMs, over all passes.

    Megatron-Core's --tp-comm-overlap (Transformer Engine userbuffers) splits each sequence-parallel
    all-gather into chunks that feed the GEMM consuming it and each reduce-scatter into chunks of the
    GEMM producing it, so a chunk's transfer runs under the previous chunk's GEMM (Wang et al. 2023,
    "Overlap Communication with Dependent Computation via Decomposition in Large Deep Learning Models",
    ASPLOS, section 4; Megatron-Core `tp_comm_overlap`, TE `transformer_engine/pytorch/module/base.py`
    `initialize_ub`). A pass's `traffic` (seconds, per layer) then hides under that pass's GEMMs:
    `gemm` in a forward (and the recomputed forward: passes - 1 forwards), 2 x `gemm` in the backward
    (input and weight gradients), with the calibrated `interference` for the SMs the transfers take
    (`_exposed`)."""
    return (_exposed(traffic, gemm, interference) * (passes - 1.0)
            + _exposed(traffic, 2.0 * gemm, interference))


def _group_size_per_node(stride, size, per_node):
    """How many members of a process group share a node, for a group of `size` ranks `stride` apart."""
    return np.clip(per_node / stride, 1.0, size)


def _group_link(s: Setup, n: dict, k, stride=1.0):
    """Scale-up bandwidth (B/s, one direction) and latency per step of a process group whose `k` ranks
    share a node and sit `stride` ranks apart. Megatron orders ranks tp first, then cp, dp and pp
    (Narayanan et al. 2021), so a TP group is consecutive and a context, data or expert group is too
    where the degrees before it are 1; a consecutive group gets the placement links.toml's per-group
    figures describe (`setup.tp_link`: a mesh's k - 1 peer links, a bridged pair, MI250X's in-package
    pair), so serve and train give a group of k the same link; devices without such an entry keep
    their node's fabric. Strided groups keep the whole-server figure, except on a full mesh ("mesh":
    MI300X, MI325X, Gaudi): there every pair of GPUs has its own peer link, so any k of them, whatever
    their spacing, are joined by k - 1 links each (AMD Instinct MI300X platform; Intel Gaudi network
    configuration). A rank alone in its node sends nothing over it (its figure is unused)."""
    bw, latency, _ = tp_link(s.device, np.maximum(k, 2.0))
    if bw is None:
        return n["link_bw"], n["link_latency"]
    entry = link_entry(s.device)
    own = (stride == 1) | (entry is not None and entry.topology == "mesh")
    return np.where(own, bw, n["link_bw"]), np.where(own, latency, n["link_latency"])


def train(s: Setup, n: dict) -> tuple[dict, list]:
    w = s.workload
    if isinstance(w, CNN):
        return _train_cnn(s, n)
    gb, dp, mb, seq = n["batch"], n["dp"], n["micro_batch"], n["seq_len"]
    tp, pp, cp, ep, vp, zero = (n[k] for k in ("tp", "pp", "cp", "ep", "vp", "zero"))
    per_node = n["gpus_per_node"]
    m = gb / (dp * mb)  # micro-batches per step (gradient accumulation)
    fp8 = s.ex.compute == "fp8"
    ex16 = sixteen_bit(s.device) if fp8 else s.ex
    act = ex16.act_bytes  # activations, saved tensors and messages in 16 bits under fp8
    eta = s.eff.collective
    out_bw, out_lat = n["out_bw"] * eta, n["out_latency"]
    base = n["link_base"]  # the collective library's fixed cost, once per collective

    def links(k, stride):  # a group of k ranks per node, `stride` apart: its in-node link, the scale-out link
        bw, lat = _group_link(s, n, k, stride)
        return bw * eta, lat, out_bw, out_lat, base

    # one micro-batch's forward on one GPU: its share of the sequence (cp) and of heads, columns and
    # sequence (tp, with sequence parallelism)
    rows = mb / cp
    # a population holds few distinct (micro-batch / cp, sequence, expert group) tuples: time each once
    distinct, back = _distinct(rows, seq, ep if w.experts > 1 else 1.0)
    table = transformer.pass_ops(w, distinct[0], distinct[1], distinct[1], distinct[1], act, s.ex.kv_bytes,
                                 expert_group=distinct[2])
    # the layer's GEMMs and element-wise work (one roofline when they share the arithmetic), attention,
    # and the embedding and LM head
    gemm = time_ops(table, GEMMS if fp8 else (*GEMMS, *ELEMENTWISE), s, s.ex)
    attn = time_ops(table, ("attention",), s, ex16)
    head = time_ops(table, (*GEMMS, "attention", *ELEMENTWISE), s, ex16, invert=True)
    parts = [gemm, attn, head] + ([time_ops(table, ELEMENTWISE, s, ex16)] if fp8 else [])
    # tensor parallelism with sequence parallelism splits every operator's FLOP and bytes (heads, MLP
    # columns, vocabulary, and the sequence for norms and residual adds; the GEMM rows stay), so each
    # operator's roofline time divides by tp; kernel launches do not
    g, a, hd, e = (*(_per_rank(t, tp, back) for t in parts), 0.0)[:4]
    L = w.layers
    layers = np.ceil(L / pp)  # the slowest stage's layers (it also holds the LM head)
    # fp8: the forward casts each GEMM's input, the backward its output gradient (Transformer Engine)
    ins, outs = transformer.gemm_io_elements(w) if fp8 else (0.0, 0.0)
    cast_f, cast_b = (training.fp8_cast_time(rows * seq * x / tp, s.device.memory_bandwidth, s.eff.memory)
                      for x in (ins, outs))
    fwd_layer = (g + a + e + cast_f) / L
    bwd_layer = (2.0 * (g + e) + ATTENTION_BACKWARD * a + cast_b) / L
    # full recomputation repeats the layer's forward; selective repeats the attention core, which a
    # fused (FlashAttention) kernel recomputes in its backward anyway
    recompute = {"full": fwd_layer, "selective": a / L if w.attention == "unfused" else 0.0}.get(s.recompute, 0.0)
    passes = 2.0 + (1.0 if s.recompute == "full" else 0.0)  # forward, backward, recomputed forward
    fwd_mb = layers * fwd_layer + hd
    compute_mb = layers * (fwd_layer + bwd_layer + recompute) + 3.0 * hd

    # tensor parallelism with sequence parallelism: an all-gather and a reduce-scatter of the layer's
    # [tokens x h] activations around attention and around the MLP (once around both for a parallel
    # block, `transformer.tp_syncs_per_layer`), in each pass (Korthikanti 2022, 4.2.2)
    tokens = rows * seq
    k_tp = _group_size_per_node(1.0, tp, per_node)
    tp_links = links(k_tp, 1.0)
    ag_tp = comm.hierarchical_allgather(tokens * w.hidden * act, tp, k_tp, *tp_links)
    # K/V groups every rank holds (MLA's latent, `transformer.kv_excess`): made by the duplicated
    # down-projection on the rank's 1/tp of the tokens, gathered in the forward, its gradient
    # reduce-scattered in the backward
    kv_whole = transformer.kv_excess(w, tp) > 0
    latent = np.where(kv_whole, comm.hierarchical_allgather(tokens * transformer.kv_cache_elements(w) * act, tp,
                                                            k_tp, *tp_links), 0.0)
    tp_pass = 2.0 * transformer.tp_syncs_per_layer(w) * ag_tp + latent  # one layer's TP traffic in one pass
    tp_mb = layers * passes * tp_pass
    if np.any(n["tp_overlap"]):  # the GEMMs alone (fp8 timed them apart from the element-wise work)
        gemm_layer = (g if fp8 else _per_rank(time_ops(table, GEMMS, s, s.ex), tp, back)) / L
        tp_mb = np.where(n["tp_overlap"] > 0,
                         layers * _tp_exposed(tp_pass, gemm_layer, passes, s.eff.interference), tp_mb)
    # context parallelism: K and V gathered in the forward, gathered again and their gradients
    # reduce-scattered in the backward, under the attention they feed
    k_cp = _group_size_per_node(tp, cp, per_node)
    kv = comm.hierarchical_allgather(mb * seq * transformer.kv_cache_elements(w) * act / tp, cp, k_cp,
                                     *links(k_cp, tp))
    attn_layer = a / L
    cp_layer = (_exposed(kv, attn_layer, s.eff.interference) * (passes - 1.0)
                + _exposed(2.0 * kv, ATTENTION_BACKWARD * attn_layer, s.eff.interference))
    cp_mb = layers * cp_layer
    # expert parallelism: dispatch and combine all-to-alls of the routed tokens in each pass
    k_ep = _group_size_per_node(tp * cp, ep, per_node)
    a2a = comm.hierarchical_alltoall(tokens / tp * w.top_k * w.hidden * act, ep, k_ep, *links(k_ep, tp * cp))
    ep_mb = layers * passes * 2.0 * a2a * (w.experts > 1)
    t_mb = compute_mb + tp_mb + cp_mb + ep_mb
    bubble = (pp - 1) / vp * t_mb
    # pipeline sends: one activation (scattered over tp) per virtual stage boundary and micro-batch,
    # forward and backward, plus the fill and drain
    pair = links(2.0, tp * cp * dp)
    p2p_bw = np.where(tp * cp * dp >= per_node, out_bw, pair[0])
    p2p_lat = np.where(tp * cp * dp >= per_node, out_lat, pair[1])
    p2p = np.where(pp > 1, 2.0 * (vp * m + pp - 1), 0.0) * comm.p2p_time(tokens * w.hidden * act / tp, p2p_bw,
                                                                          p2p_lat, base)

    # parameters on the heaviest stage: its layers (experts split over ep) and the embedding or head
    stage_params = _stage_parameters(w, s.params, layers, tp, pp, ep)
    grad_bytes = state_bytes = 2.0  # 16-bit weights and gradients, fp8 included (Transformer Engine)
    group = dp * cp  # the ranks that hold the same weights and reduce their gradients
    k_dp = _group_size_per_node(tp, group, per_node)
    grads = stage_params * grad_bytes
    # ZeRO-3/FSDP: each micro-batch gathers the weights for the forward and again for the backward and
    # reduce-scatters the gradients (Rajbhandari et al. 2020, section 7.2.3: 1.5x an all-reduce), over
    # the flat data-parallel group: a ring that leaves the node runs at each GPU's NIC share
    dp_links = links(k_dp, tp)
    flat_bw = np.where(group > k_dp, out_bw, dp_links[0])
    flat_lat = np.where(group > k_dp, out_lat, dp_links[1])
    dp_traffic = np.where(zero >= 3, m * 3.0 * comm.allgather_time(grads, group, flat_bw, flat_lat, base),
                          comm.hierarchical_allreduce(grads, group, k_dp, *dp_links))
    window = np.where(zero >= 3, m * compute_mb, layers * bwd_layer)
    dp_exposed = _exposed(dp_traffic, window, s.eff.interference)
    opt = training.optimizer_time(stage_params / np.where(zero >= 1, group, 1.0), s.device.memory_bandwidth,
                                  s.ex.vector_rate, s.eff.memory, s.eff.vector)
    pipeline = m * t_mb + bubble
    step = pipeline + p2p + dp_exposed + opt

    samples_per_s = gb / step
    model_flops = transformer.model_flops(w, gb * seq, seq, training=True)
    # HFU counts the recomputed forward too (Korthikanti et al. 2022, section 6): all of it under full
    # recomputation, the attention core (4 L h s_attended per token) under selective with unfused attention
    attention_fwd = w.layers * transformer.attention_pair_flops(w) * transformer.attended_keys(w, seq) * gb * seq
    hw_flops = model_flops * (4.0 / 3.0) if s.recompute == "full" else model_flops + attention_fwd * (
        s.recompute == "selective" and w.attention == "unfused")
    peak = s.ex.tensor_rate * n["gpus"]
    exposed = m * (tp_mb + cp_mb + ep_mb) + p2p + dp_exposed
    over = [np.max(t.overhead) for t in parts]  # launches: the same for every point
    launches = (sum(over) - over[2]) / L * layers * (1.0 + passes) + over[2] * 3.0
    out = {"step_time_s": step, "samples_per_s": samples_per_s, "tokens_per_s": samples_per_s * seq,
           "mfu": model_flops / (step * peak), "hfu": hw_flops / (step * peak),
           "model_tflops_per_gpu": model_flops / step / n["gpus"] / 1e12,
           "bubble_fraction": bubble / step, "bubble_time_s": bubble,
           "compute_time_s": m * compute_mb, "forward_time_s": m * fwd_mb,
           "tp_comm_time_s": m * tp_mb, "cp_comm_time_s": m * cp_mb, "ep_comm_time_s": m * ep_mb,
           "pp_comm_time_s": p2p, "dp_comm_time_s": dp_exposed, "communication_time_s": exposed,
           "optimizer_time_s": opt, "gradient_accumulation_steps": m,
           "checkpoint_bytes": training.model_state_bytes(s.params, state_bytes, 0.0, 1.0, 0) + 0.0 * step,
           "activity": 1.0 - (m * launches + bubble + exposed) / step}
    if n["tokens"] is not None:
        out["time_to_train_s"] = n["tokens"] / out["tokens_per_s"]
    label = roofline.bottleneck(gemm)
    label = label if back is None else label[back]
    out["bottleneck"] = relabel(exposed > m * compute_mb, "communication", label)

    # memory per GPU
    per_layer = _layer_activations(w, s.recompute, seq, tokens, tp, act)
    logits = tokens * w.vocab * 4.0 / tp  # fp32 vocabulary-parallel logits of one micro-batch
    first = per_layer * layers * training.in_flight_factor(pp, m, vp)
    acts = np.where(pp > 1, np.maximum(first, per_layer * layers + logits), first + logits)
    if s.recompute == "full":  # the backward rebuilds one layer's activations at a time over the inputs kept
        acts = acts + _layer_activations(w, "none", seq, tokens, tp, act)
    state = training.model_state_bytes(stage_params, state_bytes, grad_bytes, group, zero)
    # gathered sequence-parallel input of one GEMM; ZeRO-3 keeps a layer's gathered weights and the next
    buffers = np.where(tp > 1, tokens * w.hidden * act, 0.0) + np.where(
        zero >= 3, 2.0 * _layer_parameters(w, tp, ep) * state_bytes, 0.0)
    parts = [("weights+gradients+optimizer", state), ("activations", acts), ("communication buffers", buffers),
             *memory.reserved_parts(s.device)]
    return out, [(parts, s.device.memory_capacity, "of accelerator memory per GPU")]


def _stage_parameters(w: Transformer, params: float, layers, tp, pp, ep):
    """Parameters one GPU of the heaviest stage holds: its layers' dense weights over tp and expert
    weights over tp x ep, and the embedding (first stage) or LM head (last stage) over tp; with one
    stage, both."""
    rest = params - w.layers * transformer.layer_weights(w)  # embedding, head, final norm
    ends = np.where((pp > 1) & (not w.tied_embeddings), rest / 2.0, rest)
    return layers * _layer_parameters(w, tp, ep) + ends / tp


def _layer_parameters(w: Transformer, tp, ep):
    """One layer's parameters on one GPU: dense weights over tp, routed experts over tp x ep, and whole
    copies of the K/V projections past the K/V groups (`transformer.kv_excess`)."""
    experts = transformer.expert_weights(w)
    return ((transformer.layer_weights(w) - experts) / tp + experts / (tp * ep)
            + transformer.kv_projection_weights(w) * transformer.kv_excess(w, tp))


def _layer_activations(w: Transformer, recompute: str, seq, tokens, tp, act: float):
    """Bytes one layer keeps for its backward on one GPU (`training.layer_activation_bytes`), with the
    K/V of the groups every rank holds whole past the K/V groups (MLA's gathered latent)."""
    rep, shd = transformer.layer_activation_elements(w, recompute, seq)
    kv = transformer.kv_cache_elements(w) * transformer.kv_excess(w, tp) if recompute != "full" else 0.0
    return training.layer_activation_bytes(rep, shd, tokens, tp, act) + tokens * kv * act


def _train_cnn(s: Setup, n: dict) -> tuple[dict, list]:
    """A CNN trains data-parallel: forward, a 2x backward, a ring all-reduce of the gradients under the
    last backward, the optimizer step."""
    w = s.workload
    gb, dp, mb = n["batch"], n["dp"], n["micro_batch"]
    m = gb / (dp * mb)
    fwd = roofline.run(cnn.pass_ops(w, mb, s.ex.act_bytes, True), s.ex, s.eff, bandwidth=s.device.memory_bandwidth,
                       weight_bytes=s.weight_bytes, tensor_speedup=s.tensor_speedup)
    compute_mb = 3.0 * fwd.total
    grads = s.params * 2.0
    k = _group_size_per_node(1.0, dp, n["gpus_per_node"])
    eta = s.eff.collective
    bw, latency = _group_link(s, n, k)  # data-parallel ranks are consecutive
    traffic = comm.hierarchical_allreduce(grads, dp, k, bw * eta, latency, n["out_bw"] * eta, n["out_latency"],
                                          n["link_base"])
    exposed = _exposed(traffic, 2.0 * fwd.total, s.eff.interference)
    shard = s.params / np.where(n["zero"] >= 1, dp, 1.0)
    opt = training.optimizer_time(shard, s.device.memory_bandwidth, s.ex.vector_rate, s.eff.memory, s.eff.vector)
    step = m * compute_mb + exposed + opt
    model_flops = 3.0 * cnn.forward_flops(w) * gb
    peak = s.ex.tensor_rate * n["gpus"]
    out = {"step_time_s": step, "samples_per_s": gb / step, "mfu": model_flops / (step * peak),
           "hfu": model_flops / (step * peak), "model_tflops_per_gpu": model_flops / step / n["gpus"] / 1e12,
           "bubble_fraction": 0.0 * step, "compute_time_s": m * compute_mb, "forward_time_s": m * fwd.total,
           "dp_comm_time_s": exposed, "communication_time_s": exposed, "optimizer_time_s": opt,
           "gradient_accumulation_steps": m,
           "checkpoint_bytes": training.model_state_bytes(s.params, 2.0, 0.0, 1.0, 0) + 0.0 * step,
           "activity": 1.0 - (fwd.overhead * 3.0 * m + exposed) / step,
           "bottleneck": relabel(exposed > m * compute_mb, "communication", roofline.bottleneck(fwd))}
    act = cnn.training_activation_elements(w) * mb * s.ex.act_bytes
    state = training.model_state_bytes(s.params, 2.0, 2.0, dp, n["zero"])
    parts = [("weights+gradients+optimizer", state), ("activations", act), *memory.reserved_parts(s.device)]
    return out, [(parts, s.device.memory_capacity, "of accelerator memory per GPU")]
