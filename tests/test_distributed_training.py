"""Distributed training: each ingredient against hand arithmetic (activation memory, pipeline bubbles,
collectives, ZeRO-3, expert all-to-all), invariants over many layouts, layout planning, bad layouts."""
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dse
from dse.catalog import registry
from dse.models import communication as comm
from dse.models import training, transformer
from dse.plan import plan_training

GPT3 = registry("workloads").get("gpt-3-175b", "w")  # kvd = h, GELU 4h: Korthikanti's shape
H100 = dict(hardware="h100-sxm", mode="train", precision="bf16")
ETA = 0.70  # calibrated collective efficiency (dse.models.calibration)
NVLINK4 = 450e9 * ETA  # one direction of NVLink 4 (900 GB/s bidirectional)
NDR_PER_GPU = 8 * 50e9 / 8 * ETA  # DGX H100: 8 NDR NICs of 400 Gb/s for 8 GPUs
# NVLink 4 in fabrics.toml: 0.90 us a ring step after NCCL's 6.6 us fixed cost of one collective
ALPHA_NVLINK4, BASE_NVLINK4 = 0.90e-6, 6.6e-6


# --- activation memory per layer (Korthikanti et al. 2022, section 4) --------------------------------

@pytest.mark.parametrize("t", [1, 2, 8])
def test_activations_per_layer_with_and_without_sequence_parallelism(t):
    s, b, h = 2048, 4, GPT3.hidden
    rep, shd = transformer.layer_activation_elements(GPT3, "none")
    assert (rep, shd) == (4 * h, 12 * h)  # 16h elements: Korthikanti's 34sbh bytes less 2sbh dropout masks
    # with SP: sbh * 32/t bytes (their 34/t); without: sbh * (8 + 24/t) (their 10 + 24/t)
    sp = training.layer_activation_bytes(rep, shd, s * b, t, 2.0, sp=True)
    assert sp == pytest.approx(s * b * h * 32 / t, rel=1e-12)
    no_sp = training.layer_activation_bytes(rep, shd, s * b, t, 2.0, sp=False)
    assert no_sp == pytest.approx(s * b * h * (8 + 24 / t), rel=1e-12)
    # selective recomputation keeps the same (FlashAttention keeps no score matrix); full keeps 2sbh/t
    assert transformer.layer_activation_elements(GPT3, "selective") == (rep, shd)
    full = training.layer_activation_bytes(*transformer.layer_activation_elements(GPT3, "full"), s * b, t, 2.0)
    assert full == pytest.approx(2 * s * b * h / t, rel=1e-12)


def test_in_flight_micro_batches_of_the_first_stage():
    assert training.in_flight_factor(8, 64, 1) == 8  # 1F1B: p micro-batches
    assert training.in_flight_factor(8, 4, 1) == 4  # fewer micro-batches than stages
    assert training.in_flight_factor(8, 64, 2) == pytest.approx(8 * (1 + 7 / 16))  # interleaved
    assert training.in_flight_factor(1, 64, 1) == 1


def test_pipeline_memory_holds_p_micro_batches_of_its_layers():
    base = dict(workload="llama-3-70b", **H100, gpus=64, tp=8, batch=64, micro_batch=1, seq_len=4096)
    one = dse.evaluate(**base, pp=1, recompute="full")
    eight = dse.evaluate(**base, pp=8, recompute="full")
    # full recomputation: each layer keeps its input, s*h*2/tp bytes; 80 layers in all on one stage,
    # 10 layers x 8 micro-batches in flight on the first of eight stages: the same 80 layer inputs; and
    # the layer being recomputed holds all its activations (4h norm/linear inputs, Q and O h each, K and
    # V 2 x 1,024, SwiGLU 3 x 28,672 per token, split 8 ways with sequence parallelism), 16-bit
    per_layer = 4096 * 8192 * 2 / 8
    recomputing = 4096 * (4 * 8192 + 2 * 8192 + 2 * 1024 + 3 * 28672) / 8 * 2
    logits = 4096 * 128256 * 4 / 8
    state_one = training.model_state_bytes(
        80 * transformer.layer_weights(registry("workloads").get("llama-3-70b", "w")) / 8 + 2 * 128256 * 8192 / 8
        + 8192 / 8, 2.0, 2.0, 8, 0)  # 16 B per parameter of 1/8 of the model
    buffers = 4096 * 8192 * 2 + 0.1 * 80 * 2**30 + recomputing  # + the runtime reserve, 10% of the 80 GiB
    assert one["memory_per_gpu_bytes"] == pytest.approx(state_one + 80 * per_layer + logits + buffers, rel=1e-9)
    # eight stages: 10 layers and half the (untied) embedding + head per GPU; the first stage holds
    # 8 micro-batches x 10 layers, more than the last stage's 10 layers + logits
    w = registry("workloads").get("llama-3-70b", "w")
    state8 = training.model_state_bytes(10 * transformer.layer_weights(w) / 8 + (2 * 128256 * 8192 + 8192) / 2 / 8,
                                        2.0, 2.0, 1, 0)
    assert 80 * per_layer > 10 * per_layer + logits
    assert eight["memory_per_gpu_bytes"] == pytest.approx(state8 + 80 * per_layer + buffers, rel=1e-9)


# --- pipeline bubble (Narayanan et al. 2021, sections 2.2.1-2.2.2) ---------------------------------------

def test_bubble_1f1b_and_interleaved():
    assert training.bubble_ratio(8, 32, 1) == pytest.approx(7 / 32)
    assert training.bubble_ratio(8, 32, 4) == pytest.approx(7 / 128)
    assert training.bubble_ratio(1, 32, 1) == 0


@pytest.mark.parametrize("pp,vp", [(2, 1), (4, 1), (4, 5), (8, 2)])
def test_bubble_time_is_p_minus_1_over_vm_of_the_micro_batch_work(pp, vp):
    m = dse.evaluate(workload="llama-3-70b", **H100, gpus=64, tp=8, pp=pp, vp=vp, batch=256, micro_batch=1,
                     seq_len=4096, zero=1)
    micro = m["gradient_accumulation_steps"]
    per_micro = m["compute_time_s"] + m["tp_comm_time_s"] + m["cp_comm_time_s"] + m["ep_comm_time_s"]
    assert m["bubble_time_s"] == pytest.approx((pp - 1) / (vp * micro) * per_micro, rel=1e-9)
    assert m["bubble_fraction"] == pytest.approx(m["bubble_time_s"] / m["step_time_s"], rel=1e-12)


# --- collectives (alpha-beta) ------------------------------------------------------------------------------

def test_ring_tree_and_hierarchical_allreduce():
    n, alpha, base = 1e9, 2e-6, 5e-6
    assert comm.ring_allreduce_time(n, 8, 100e9, alpha, base) == pytest.approx(
        2 * 7 / 8 * n / 100e9 + 14 * alpha + base, rel=1e-12)
    assert comm.tree_allreduce_time(n, 8, 100e9, alpha, base) == pytest.approx(
        2 * 7 / 8 * n / 100e9 + 2 * 3 * alpha + base, rel=1e-12)
    # NCCL picks the tree when latency dominates: 1 kB over 1024 ranks
    assert comm.allreduce_time(1e3, 1024, 100e9, alpha, base) == comm.tree_allreduce_time(1e3, 1024, 100e9, alpha,
                                                                                          base)
    # 32 ranks, 8 per node: reduce-scatter and all-gather inside (300 GB/s), ring over 4 nodes on 1/8
    hier = comm.hierarchical_allreduce(n, 32, 8, 300e9, 0.0, 25e9, 0.0, 0.0)
    assert hier == pytest.approx(2 * 7 / 8 * n / 300e9 + 2 * 3 / 4 * (n / 8) / 25e9, rel=1e-12)
    # the three phases are one collective: the fixed cost once, beside the steps of each phase (2 x 7
    # inside the node; across the 4 nodes the tree's 2 log2(4) = 4 beat the ring's 2 x 3)
    hier_lat = comm.hierarchical_allreduce(n, 32, 8, 300e9, alpha, 25e9, 3 * alpha, base)
    assert hier_lat == pytest.approx(hier + 14 * alpha + 4 * 3 * alpha + base, rel=1e-12)
    # a group inside one node is a plain ring; one GPU per node is a ring over the NICs
    assert comm.hierarchical_allreduce(n, 8, 8, 300e9, 0, 25e9, 0, 0) == pytest.approx(2 * 7 / 8 * n / 300e9)
    assert comm.hierarchical_allreduce(n, 16, 1, 300e9, 0, 25e9, 0, 0) == pytest.approx(2 * 15 / 16 * n / 25e9)
    assert comm.allgather_time(n, 4, 100e9, alpha, base) == pytest.approx(3 / 4 * n / 100e9 + 3 * alpha + base)
    assert comm.p2p_time(n, 100e9, alpha, base) == pytest.approx(n / 100e9 + alpha + base)
    # one rank: no collective, no fixed cost
    for f in (comm.ring_allreduce_time, comm.tree_allreduce_time, comm.allgather_time, comm.alltoall_time):
        assert f(n, 1, 100e9, alpha, base) == 0.0
    assert comm.hierarchical_allreduce(n, 1, 8, 300e9, alpha, 25e9, alpha, base) == 0.0


@pytest.mark.parametrize("ranks, nbytes, expected", [
    # NVLink 4 (fabrics.toml nvlink4): 450 GB/s a direction, 0.90 us a step after NCCL's 6.6 us per collective
    (2, 128, 6.6e-6 + 2 * 0.90e-6 + 2 * 1 / 2 * 128 / 450e9),             # 8.40 us
    (8, 128, 6.6e-6 + 14 * 0.90e-6 + 2 * 7 / 8 * 128 / 450e9),            # 19.20 us: issue #57's 19.19 us
    (2, 2 ** 20, 6.6e-6 + 2 * 0.90e-6 + 2 * 1 / 2 * 2 ** 20 / 450e9),     # 10.73 us
    (8, 2 ** 20, 6.6e-6 + 14 * 0.90e-6 + 2 * 7 / 8 * 2 ** 20 / 450e9),    # 23.28 us
])
def test_tp_allreduce_on_nvlink4_pays_the_fixed_cost_once_and_each_step(ranks, nbytes, expected):
    from dse.modes.setup import scale_up_link
    bw, step, base = scale_up_link(registry("hardware").get("h100-sxm", "h"))
    assert (bw, step, base) == (pytest.approx(450e9), pytest.approx(0.90e-6), pytest.approx(6.6e-6))
    assert comm.ring_allreduce_time(nbytes, ranks, bw, step, base) == pytest.approx(expected, rel=1e-9)


def test_nvlink3_latency_reproduces_the_forced_ring_sweep():
    # nccl-tests issue #123 (DGX-A100, forced Ring, 8-128 B): 33.7 us at n = 8 reproduced, n = 2 within 5%
    from dse.modes.setup import scale_up_link
    bw, step, base = scale_up_link(registry("hardware").get("a100-sxm-80gb", "h"))
    assert (step, base) == (pytest.approx(1.94e-6), pytest.approx(6.6e-6))
    assert comm.ring_allreduce_time(0.0, 8, bw, step, base) == pytest.approx(33.7e-6, rel=2e-3)
    assert comm.ring_allreduce_time(0.0, 2, bw, step, base) == pytest.approx(10.0e-6, rel=0.05)


def test_expert_all_to_all_inside_and_across_nodes():
    n = 1e9
    # 16 ranks, 8 per node: 7/16 of what a rank sends stays on NVLink, 8/16 crosses its NIC, at once
    t = comm.hierarchical_alltoall(n, 16, 8, 300e9, 0.0, 25e9, 0.0, 0.0)
    assert t == pytest.approx(max(7 / 16 * n / 300e9, 8 / 16 * n / 25e9))
    assert comm.hierarchical_alltoall(n, 8, 8, 300e9, 1e-6, 25e9, 0.0, 5e-6) == pytest.approx(
        7 / 8 * n / 300e9 + 7e-6 + 5e-6, rel=1e-12)


def test_expert_parallel_all_to_all_in_train_mode():
    m = dse.evaluate(workload="mixtral-8x7b", **H100, gpus=8, ep=8, batch=8, micro_batch=1, seq_len=4096, zero=1)
    # per MoE layer and pass, dispatch and combine: each rank sends its 4096 tokens x top-2 x h x 2 B
    sent = 4096 * 2 * 4096 * 2
    a2a = 7 / 8 * sent / NVLINK4 + 7 * ALPHA_NVLINK4 + BASE_NVLINK4
    assert m["ep_comm_time_s"] == pytest.approx(32 * 2 * 2 * a2a, rel=1e-9)  # 32 layers, fwd+bwd, 2 each
    dense = dse.evaluate(workload="mixtral-8x7b", **H100, gpus=8, batch=8, micro_batch=1, seq_len=4096, zero=1)
    assert dense["ep_comm_time_s"] == 0
    assert m["memory_per_gpu_bytes"] < dense["memory_per_gpu_bytes"]  # experts split over 8 ranks


def test_tensor_parallel_traffic_is_two_all_reduces_per_layer_and_pass():
    m = dse.evaluate(workload="llama-3-8b", **H100, gpus=8, tp=8, batch=1, seq_len=8192)
    # all-gather + reduce-scatter of [8192 x 4096] x 2 B, twice per layer, in forward and backward
    ag = 7 / 8 * 8192 * 4096 * 2 / NVLINK4 + 7 * ALPHA_NVLINK4 + BASE_NVLINK4
    assert m["tp_comm_time_s"] == pytest.approx(32 * 2 * 4 * ag, rel=1e-9)
    full = dse.evaluate(workload="llama-3-8b", **H100, gpus=8, tp=8, batch=1, seq_len=8192, recompute="full")
    assert full["tp_comm_time_s"] == pytest.approx(32 * 3 * 4 * ag, rel=1e-9)  # the recomputed forward too


def test_tp_overlap_exposes_what_the_gemms_of_each_pass_cannot_hide():
    from dse.modes.train import _tp_exposed

    # 3 ms of TP traffic per layer and pass against 1 ms of GEMMs, two forwards (full recomputation)
    # and a backward, 30% of what hides still costing: 2 x (3 - 1 + 0.3 x 1) + (3 - 2 + 0.3 x 2)
    assert _tp_exposed(3e-3, 1e-3, 3.0, 0.3) == pytest.approx(2 * 2.3e-3 + 1.6e-3, rel=1e-12)
    # traffic that fits under its GEMMs costs only the interference: 0.3 x 0.5 ms in each of 2 passes
    assert _tp_exposed(0.5e-3, 1e-3, 2.0, 0.3) == pytest.approx(2 * 0.15e-3, rel=1e-12)


def test_tp_overlap_in_train_mode_leaves_the_interference_share_of_hidden_traffic():
    # Llama-3.1-70B as NVIDIA's DGX H100 benchmark lays it out: TP4's all-gathers of 4,096 tokens x 8,192
    # x 2 B (3/4 of 67 MB over NVLink, ~0.2 ms) fit under each pass's GEMMs of a layer (~1 ms forward)
    base = dict(workload="llama-3.1-70b", **H100, gpus=64, tp=4, pp=4, cp=2, vp=5, micro_batch=1, batch=128,
                seq_len=8192, zero=1)
    plain, over = dse.evaluate(**base), dse.evaluate(**base, tp_overlap=1)
    assert over["tp_comm_time_s"] == pytest.approx(0.3 * plain["tp_comm_time_s"], rel=1e-9)
    assert over["compute_time_s"] == plain["compute_time_s"]
    # the step loses the hidden 70% of the TP traffic, also in each bubble micro-batch: (m + (p-1)/v) / m
    m, bubble = 128 / 2, 3 / 5
    assert plain["step_time_s"] - over["step_time_s"] == pytest.approx(
        0.7 * plain["tp_comm_time_s"] * (m + bubble) / m, rel=1e-9)
    frame = dse.evaluate_many([{**base, "tp_overlap": v} for v in (0, 1)])
    assert list(frame["step_time_s"]) == pytest.approx([plain["step_time_s"], over["step_time_s"]], rel=1e-9)
    with pytest.raises(dse.DSEError, match="tp_overlap"):
        dse.evaluate(**base, tp_overlap=2)
    with pytest.raises(dse.DSEError, match="not used in serve mode"):
        dse.evaluate(workload="llama-3-8b", hardware="h100", mode="serve", tp_overlap=1)


# --- ZeRO-3 memory and traffic -------------------------------------------------------------------------------

def test_zero3_memory_and_traffic():
    base = dict(workload="llama-3-8b", **H100, gpus=16, batch=32, micro_batch=1, seq_len=4096)
    z3 = dse.evaluate(**base, zero=3)
    z0 = dse.evaluate(**base, zero=0)
    w = registry("workloads").get("llama-3-8b", "w")
    params = transformer.parameters(w)
    # all 16 B/parameter split over 16 ranks, plus a gathered layer and the next one prefetched
    layer = transformer.layer_weights(w)
    assert z0["memory_per_gpu_bytes"] - z3["memory_per_gpu_bytes"] == pytest.approx(
        params * 16 * 15 / 16 - 2 * layer * 2, rel=1e-9)
    # per micro-batch: gather the 2 B weights for the forward and the backward, reduce-scatter the
    # gradients, over a ring of 16 ranks on two nodes at each GPU's NIC share (50 GB/s; NDR has no
    # published latency), each collective paying NCCL's 6.6 us once: 2 micro-batches per step
    traffic = 2 * 3 * (15 / 16 * params * 2 / NDR_PER_GPU + 6.6e-6)
    # prefetched under the compute (2.58 s against 0.61 s here: communication-bound): what does not
    # fit is exposed, and 0.3 (interference) of what does
    window = z3["compute_time_s"]
    assert traffic > window
    assert z3["dp_comm_time_s"] == pytest.approx(traffic - window + 0.3 * window, rel=1e-9)
    assert z3["bottleneck"] == "communication"


# --- invariants over many layouts ---------------------------------------------------------------------------

LAYOUTS = [dict(tp=tp, pp=pp, micro_batch=mb, zero=z) for tp, pp, mb, z in
           itertools.product([1, 2, 8], [1, 2, 4], [1, 2], [0, 1, 3])]


def test_more_stages_never_shrink_the_bubble_at_fixed_micro_batches():
    rows = [dict(workload="llama-3-70b", **H100, gpus=8 * pp, tp=8, pp=pp, vp=vp, batch=64, micro_batch=1,
                 seq_len=4096, zero=1) for vp in (1, 2) for pp in (1, 2, 4, 8, 16) if pp > 1 or vp == 1]
    frame = dse.evaluate_many(rows)
    for vp in (1, 2):
        block = frame[[r["vp"] == vp for r in rows]]
        ratio = block["bubble_time_s"] / (block["compute_time_s"] + block["tp_comm_time_s"])
        assert np.all(np.diff(ratio.to_numpy()) >= 0)


def test_full_recomputation_never_uses_more_memory_than_selective():
    rows = [dict(workload="llama-3-70b", **H100, gpus=tp * pp * 4, batch=64, seq_len=4096, **{
        "tp": tp, "pp": pp, "micro_batch": mb, "zero": z}) for tp, pp, mb, z in
        itertools.product([1, 2, 8], [1, 2, 4], [1, 2], [0, 1, 3])]
    sel = dse.evaluate_many(pd.DataFrame(rows).assign(recompute="selective"))
    full = dse.evaluate_many(pd.DataFrame(rows).assign(recompute="full"))
    assert np.all(full["memory_per_gpu_bytes"] <= sel["memory_per_gpu_bytes"])
    assert np.all(full["step_time_s"] >= sel["step_time_s"])


@pytest.mark.parametrize("layout", LAYOUTS[::5])
def test_doubling_dp_at_fixed_micro_batch_halves_the_steps(layout):
    common = dict(workload="llama-3-8b", **H100, seq_len=2048, tokens=1e12, **layout)
    model = layout["tp"] * layout["pp"]
    one = dse.evaluate(**common, gpus=model * 4, batch=4 * layout["micro_batch"] * 8)
    two = dse.evaluate(**common, gpus=model * 8, batch=8 * layout["micro_batch"] * 8)
    steps = lambda m: m["failure_free_time_to_train_s"] / m["step_time_s"]  # noqa: E731
    assert steps(two) == pytest.approx(steps(one) / 2, rel=1e-9)


def test_evaluate_many_equals_evaluate_over_layouts():
    rows = [dict(workload="llama-3-70b", **H100, gpus=64, batch=128, seq_len=4096, cp=cp, **lay)
            for lay in LAYOUTS for cp in (1, 2) if 64 % (lay["tp"] * lay["pp"] * cp) == 0]
    frame = dse.evaluate_many(rows)
    for i in range(0, len(rows), 7):
        one = dse.evaluate(**rows[i])
        for k in ("step_time_s", "mfu", "memory_per_gpu_bytes", "bubble_fraction", "dp_comm_time_s"):
            assert frame.iloc[i][k] == pytest.approx(one[k], rel=1e-9), k
        assert bool(frame.iloc[i]["feasible"]) == one["feasible"]


def test_a_100000_gpu_layout_evaluates():
    m = dse.evaluate(workload="llama-3-405b", **H100, gpus=98304, tp=8, pp=16, batch=6144, micro_batch=1,
                     seq_len=8192, zero=1)
    assert m["gpus"] == 98304 and 0 < m["mfu"] < 1 and m["dp_comm_time_s"] > 0


# --- layout planning ---------------------------------------------------------------------------------------

def test_plan_ranks_valid_layouts_feasible_first():
    ranked = plan_training("llama-3-70b", "h100-sxm", 64, 512, cps=(1,))
    assert (ranked["tp"] * ranked["pp"] * ranked["cp"] * ranked["dp"] == 64).all()
    assert (512 % (ranked["dp"] * ranked["micro_batch"]) == 0).all()
    feasible = ranked["feasible"].to_numpy()
    assert feasible[0] and not np.any(np.diff(feasible.astype(int)) > 0)  # feasible rows first
    best = ranked[ranked["feasible"]]["tokens_per_s"].to_numpy()
    assert np.all(np.diff(best) <= 0)
    top = ranked.iloc[0]
    again = dse.evaluate(workload="llama-3-70b", **H100, gpus=64, batch=512, seq_len=8192, **{
        k: int(top[k]) for k in ("tp", "pp", "cp", "micro_batch", "vp", "zero")}, recompute=top["recompute"])
    assert again["tokens_per_s"] == pytest.approx(top["tokens_per_s"], rel=1e-9)


# --- bad layouts -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,fragments", [
    (dict(gpus=64, tp=8, pp=2, dp=8), ("gpus", "64", "tp x pp x dp x cp (128)")),
    (dict(gpus=60, tp=8), ("gpus", "60", "a multiple of tp x pp x cp (8)")),
    (dict(gpus=6, tp=6), ("tp", "6", "64 attention heads and 8 KV heads")),
    (dict(gpus=96, pp=96), ("pp", "96", "at most llama-3-70b's 80 layers")),
    (dict(gpus=8, batch=12, micro_batch=1), ("batch", "12", "a multiple of dp x micro_batch (8)")),
    (dict(gpus=8, vp=2), ("vp", "2", "without pipeline parallelism")),
    (dict(gpus=8, ep=2), ("ep", "2", "llama-3-70b is dense")),
    (dict(gpus=8, tp=0), ("tp", "0", ">= 1")),
    (dict(gpus=-8), ("gpus", "-8", ">= 1")),
    (dict(gpus=8, pp=2, vp=41), ("vp", "41", "80 layers divided by pp (2)")),
    (dict(gpus=8, cp=3, seq_len=4096), ("cp", "3", "a divisor of seq_len (4096)")),
    (dict(gpus=8, micro_batch=0), ("micro_batch", "0", ">= 1")),
    (dict(gpus=8, batch=-1), ("batch", "-1", ">= 1")),
    (dict(gpus=8, pp=0), ("pp", "0", ">= 1")),
    (dict(gpus=8, cp=0), ("cp", "0", ">= 1")),
    (dict(gpus=8, ep=0), ("ep", "0", ">= 1")),
    (dict(gpus=8, zero=4), ("zero", "4", "<= 3")),
    (dict(workload="mixtral-8x7b", gpus=8, ep=3), ("ep", "3", "a divisor of mixtral-8x7b's 8 experts")),
    (dict(workload="mixtral-8x7b", gpus=8, tp=2, ep=8), ("ep", "8", "a divisor of dp x cp (4)")),
])
def test_bad_layouts_name_the_rule(kwargs, fragments):
    options = {"workload": "llama-3-70b", **H100, "batch": 64, **kwargs}
    with pytest.raises(dse.DSEError) as info:
        dse.evaluate(**options)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_unfused_attention_keeps_5as2b_that_selective_recomputation_drops(tmp_path):
    f = tmp_path / "gpt.toml"
    f.write_text('name = "gpt-unfused"\nfamily = "transformer"\nlayers = 24\nhidden = 2304\nheads = 24\n'
                 'vocab = 51200\nseq_len = 2048\ntied_embeddings = true\nattention = "unfused"\n')
    base = dict(workload_file=str(f), hardware="a100-sxm-80gb", mode="train", precision="fp16", gpus=8, tp=8,
                batch=8, micro_batch=1)
    none, sel = dse.evaluate(**base, recompute="none"), dse.evaluate(**base, recompute="selective")
    # Korthikanti et al. 2022: softmax output, dropout mask and output, 5 a s^2 b bytes a layer, over tp
    assert none["memory_per_gpu_bytes"] - sel["memory_per_gpu_bytes"] == pytest.approx(
        24 * 5 * 24 * 2048**2 * 1 / 8, rel=1e-9)
    assert sel["step_time_s"] > none["step_time_s"]  # the attention core runs again


def test_hfu_counts_the_recomputed_attention_core_of_unfused_attention(tmp_path):
    f = tmp_path / "gpt.toml"
    f.write_text('name = "gpt-unfused"\nfamily = "transformer"\nlayers = 24\nhidden = 2304\nheads = 24\n'
                 'vocab = 51200\nseq_len = 2048\ntied_embeddings = true\nattention = "unfused"\n')
    m = dse.evaluate(workload_file=str(f), hardware="a100-sxm-80gb", mode="train", precision="fp16", gpus=8,
                     batch=8, micro_batch=1, recompute="selective")
    peak = 312e12 * 8
    extra = 4 * 24 * 2304 * (2048 + 1) / 2 * 8 * 2048  # 4 L h s_att per token, the causal keys attended
    assert (m["hfu"] - m["mfu"]) * m["step_time_s"] * peak == pytest.approx(extra, rel=1e-9)


def test_plan_cli_ranks_and_names_bad_options(capsys):
    from dse.cli import main
    assert main(["plan", "--workload", "llama-3-8b", "--hardware", "h100", "--gpus", "8", "--global-batch", "8",
                 "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].split()[:4] == ["tp", "pp", "cp", "dp"]
    for argv, fragment in ((["--top", "0"], "--top = '0'"), (["--precision", "int4"], "--precision = 'int4'"),
                           (["--gpus", "-8"], "--gpus")):
        base = {"--workload": "llama-3-8b", "--hardware": "h100", "--gpus": "8", "--global-batch": "8"}
        base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
        assert main(["plan", *[x for kv in base.items() for x in kv]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dse plan: error:") and fragment in err and "Traceback" not in err


# --- fp8 training: Transformer Engine's cast-transpose of each GEMM operand --------------------------------

def test_fp8_casts_each_gemm_input_forward_and_each_output_gradient_backward(monkeypatch):
    w = registry("workloads").get("llama-3-8b", "w")
    # per token over 32 layers: inputs h (QKV), h (out proj), h + f (MLP); outputs Q + K + V, h, 2f + h
    ins, outs = transformer.gemm_io_elements(w)
    assert ins == 32 * (4096 + 4096 + 4096 + 14336)
    assert outs == 32 * (4096 + 2 * 8 * 128 + 4096 + 2 * 14336 + 4096)
    base = dict(workload="llama-3-8b", **{**H100, "precision": "fp8"}, gpus=8, batch=16, micro_batch=1,
                seq_len=8192, zero=1)
    with_casts = dse.evaluate(**base)
    monkeypatch.setattr(training, "FP8_CAST_BYTES", 0.0)
    dse.evaluation._cached_metrics.cache_clear()
    without = dse.evaluate(**base)
    dse.evaluation._cached_metrics.cache_clear()
    # 2 micro-batches of 8192 tokens: 4 B (read 2, write fp8 and its transpose) per element at 0.9 x 3.35 TB/s
    per_byte = 1 / (0.9 * 3.35e12)
    assert with_casts["forward_time_s"] - without["forward_time_s"] == pytest.approx(
        2 * 8192 * ins * 4 * per_byte, rel=1e-9)
    assert with_casts["compute_time_s"] - without["compute_time_s"] == pytest.approx(
        2 * 8192 * (ins + outs) * 4 * per_byte, rel=1e-9)
    bf16 = dse.evaluate(**{**base, "precision": "bf16"})
    assert 1.3 < bf16["step_time_s"] / with_casts["step_time_s"] < 1.5  # published fp8 speedups 1.3-1.5x


# --- expert parallelism: each expert's GEMM gets the tokens the whole group routes to it -----------------

def test_expert_gemm_rows_are_the_groups_tokens_routed_to_each_expert():
    w = registry("workloads").get("deepseek-v3", "w")  # 256 experts, top 8, expert width 2048
    alone = transformer.pass_ops(w, 1, 4096, 4096, 4096, 2.0, 2.0)
    group = transformer.pass_ops(w, 1, 4096, 4096, 4096, 2.0, 2.0, expert_group=64)
    i = alone.names.index("mlp")
    touched = lambda t: 256 * (1 - (1 - 8 / 256) ** t)  # noqa: E731  experts hit by t uniform tokens
    # one GPU's 4096 tokens x top 8 over 256 experts: ~128 rows an expert; over EP 64, 64x as many
    assert alone.rows[i] == pytest.approx(4096 * 8 / touched(4096), rel=1e-12)
    assert group.rows[i] == pytest.approx(4096 * 64 * 8 / touched(4096 * 64), rel=1e-12)
    assert 127 < alone.rows[i] < 129 and 8191 < group.rows[i] < 8193
    # the same FLOP per GPU; the weights read are those of its 4 local experts
    assert group.flops_tensor[i] == alone.flops_tensor[i]
    assert group.weights[i] == pytest.approx(3 * 7168 * 2048 * touched(4096 * 64) / 64, rel=1e-12)
    # at 128 rows a GEMM reaches 128/(128 + 50) of the large-GEMM rate, at 8192 rows 8192/8242
    m = dict(workload="deepseek-v3", hardware="h100-sxm", mode="train", precision="bf16", gpus=64, tp=1, pp=8,
             batch=64, micro_batch=1, seq_len=4096, zero=1)
    assert dse.evaluate(**m, ep=8)["compute_time_s"] < dse.evaluate(**m, ep=1)["compute_time_s"]


def test_evaluate_many_equals_evaluate_over_expert_layouts():
    rows = [dict(workload="mixtral-8x7b", **H100, gpus=64, batch=128, seq_len=4096, tp=tp, pp=pp, ep=ep, zero=1)
            for tp in (1, 2) for pp in (1, 4) for ep in (1, 2, 8) if 64 % (tp * pp * ep) == 0]
    frame = dse.evaluate_many(rows)
    for i, row in enumerate(rows):
        one = dse.evaluate(**row)
        for k in ("step_time_s", "compute_time_s", "ep_comm_time_s", "memory_per_gpu_bytes"):
            assert frame.iloc[i][k] == pytest.approx(one[k], rel=1e-9), (row, k)


# --- the invariants over random layouts (Hypothesis) -----------------------------------------------------

LAYOUT = st.fixed_dictionaries({
    "tp": st.sampled_from([1, 2, 4, 8]), "pp": st.sampled_from([1, 2, 4, 8]), "dp": st.sampled_from([1, 2, 4]),
    "cp": st.sampled_from([1, 2]), "micro_batch": st.sampled_from([1, 2]), "zero": st.integers(0, 3),
    "micro_batches": st.sampled_from([1, 4, 16]), "precision": st.sampled_from(["bf16", "fp8"])})


def _layout(d: dict, **over) -> dict:
    """A valid Llama-3-70B layout on tp x pp x dp x cp H100s with `micro_batches` per step."""
    d = {**d, **over}
    gpus = d["tp"] * d["pp"] * d["dp"] * d["cp"]
    return dict(workload="llama-3-70b", hardware="h100-sxm", mode="train", precision=d["precision"], gpus=gpus,
                tp=d["tp"], pp=d["pp"], cp=d["cp"], micro_batch=d["micro_batch"], zero=d["zero"], seq_len=4096,
                batch=d["micro_batches"] * d["dp"] * d["micro_batch"], tokens=1e12)


@settings(max_examples=25, deadline=None)
@given(LAYOUT)
def test_more_stages_never_shrink_the_bubble_fraction_of_a_micro_batch(d):
    # at fixed micro-batches, the bubble in units of one micro-batch's work, (p - 1) / v, grows with p
    ratios = []
    for pp in (1, 2, 4, 8):
        m = dse.evaluate(**_layout(d, pp=pp))
        per_micro = m["compute_time_s"] + m["tp_comm_time_s"] + m["cp_comm_time_s"]
        ratios.append(m["bubble_time_s"] / per_micro * m["gradient_accumulation_steps"])
    assert ratios == pytest.approx([0, 1, 3, 7], rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(LAYOUT)
def test_full_recomputation_never_uses_more_memory_or_less_time_than_selective(d):
    sel = dse.evaluate(**_layout(d), recompute="selective")
    full = dse.evaluate(**_layout(d), recompute="full")
    assert full["memory_per_gpu_bytes"] <= sel["memory_per_gpu_bytes"]
    assert full["step_time_s"] >= sel["step_time_s"]


@settings(max_examples=25, deadline=None)
@given(LAYOUT)
def test_doubling_dp_at_fixed_micro_batch_halves_the_steps_per_token_budget(d):
    one = dse.evaluate(**_layout(d))
    two = dse.evaluate(**_layout(d, dp=2 * d["dp"]))
    steps = lambda m: m["failure_free_time_to_train_s"] / m["step_time_s"]  # noqa: E731
    assert steps(two) == pytest.approx(steps(one) / 2, rel=1e-9)
