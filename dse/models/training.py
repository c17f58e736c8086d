"""One training step on one device (and data parallelism inside a node): time and memory.

Step = forward + backward + optional recomputation + optimizer (+ gradient all-reduce for DP > 1,
see `dse.models.communication`).
The backward pass costs twice the forward (one GEMM for input gradients, one for weight gradients;
Narayanan et al. 2021, section 5.1, the 3x in 6N FLOP per token of Kaplan et al. 2020). Full
recomputation repeats the forward; selective recomputation repeats the attention core only
(Korthikanti et al. 2022). Mixed-precision Adam keeps 16-bit weights and gradients plus fp32 master
weights, momentum and variance: 2 + 2 + 12 = 16 bytes per parameter (Rajbhandari et al. 2020, ZeRO,
section 3.1); ZeRO stage 1/2/3 partitions the optimizer states, then gradients, then weights across
the data-parallel group (same paper, section 5).
"""
from __future__ import annotations

import numpy as np

BACKWARD_FACTOR = 2.0
OPTIMIZER_STATE_BYTES = 12.0  # fp32 master weights, Adam momentum and variance (master dropped for fp32 weights)
# Adam's update (Kingma & Ba 2015, Algorithm 1) per parameter, as one fused streaming kernel:
# read the 16-bit gradient (2 B) and the fp32 master weight, m and v (12 B); write master, m, v (12 B)
# and the 16-bit weight copy (2 B); about 10 FLOP (two moment updates of 2-3 each, bias corrections,
# square root, divide, scale and subtract).
ADAM_BYTES_MOVED = 28.0
ADAM_FLOPS = 10.0


# fp8 training (NVIDIA Transformer Engine): Hopper's fp8 tensor cores take only the TN layout, so each
# GEMM operand that is an activation or an output gradient passes through one cast-transpose kernel
# (TE `cast_transpose`, which also takes the amax for the scaling factor): read the 16-bit tensor
# (2 B), write its fp8 copy and the transposed fp8 copy the weight-gradient GEMM needs (1 + 1 B). The
# forward casts the GEMM inputs, the backward the gradients of their outputs (TE documentation,
# "Using FP8 with Transformer Engine", and transformer_engine/pytorch/module/linear.py). Weight casts,
# once per optimizer step and reused by the micro-batches, are left out.
FP8_CAST_BYTES = 4.0


def fp8_cast_time(elements, bandwidth: float, eff_memory: float):
    """Memory-bound cast-transpose of `elements` 16-bit values to fp8 and its transpose."""
    return FP8_CAST_BYTES * elements / (bandwidth * eff_memory)


def optimizer_time(params_local, bandwidth: float, vector_rate: float, eff_memory: float, eff_vector: float):
    """Adam update as one streaming pass over the local optimizer shard: max(bytes/BW, FLOP/rate)."""
    return np.maximum(ADAM_BYTES_MOVED * params_local / (bandwidth * eff_memory),
               ADAM_FLOPS * params_local / (vector_rate * eff_vector))


def model_state_bytes(params, weight_bytes: float, grad_bytes: float, dp, zero):
    """Weights, gradients and optimizer states per GPU under ZeRO stage `zero` over `dp` ranks
    (numbers or numpy columns). The fp32 master copy is kept only when the weights are narrower."""
    states = OPTIMIZER_STATE_BYTES if weight_bytes < 4 else OPTIMIZER_STATE_BYTES - 4.0
    weights = params * weight_bytes / np.where(zero >= 3, dp, 1.0)
    grads = params * grad_bytes / np.where(zero >= 2, dp, 1.0)
    return weights + grads + params * states / np.where(zero >= 1, dp, 1.0)


def bubble_ratio(pp, micro_batches, vp):
    """Pipeline bubble over the ideal compute time: (p - 1) / (v m) for 1F1B with v virtual stages per
    GPU (v = 1: PipeDream-Flush 1F1B; Narayanan et al. 2021, sections 2.2.1 and 2.2.2)."""
    return (pp - 1) / (vp * micro_batches)


def in_flight_factor(pp, micro_batches, vp):
    """Micro-batches' activations the first pipeline stage holds, in units of one micro-batch of its
    layers: min(p, m) under 1F1B, times 1 + (p - 1)/(p v) when interleaved (Korthikanti et al. 2022,
    section 4.2.3); 1 without pipelining."""
    interleave = np.where(vp > 1, 1.0 + (pp - 1) / (pp * vp), 1.0)
    return np.minimum(pp, micro_batches) * interleave


def layer_activation_bytes(per_token_replicated, per_token_sharded, tokens, tp, act_bytes: float, sp: bool = True):
    """Activations one layer keeps for its backward, per GPU, for `tokens` tokens of one micro-batch
    (Korthikanti et al. 2022, section 4.1: sbh(34/t) with sequence parallelism, sbh(10 + 24/t)
    without). Tensor parallelism splits what is sharded by heads or columns; sequence parallelism also
    splits what would be replicated (norm and linear inputs)."""
    replicated = per_token_replicated / np.where(sp, tp, 1.0)
    return tokens * (replicated + per_token_sharded / tp) * act_bytes
