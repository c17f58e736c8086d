"""Train mode: one optimizer step, its memory, and MFU/HFU."""
from __future__ import annotations

import numpy as np

from dse.catalog import CNN, Transformer
from dse.models import cnn, communication, roofline, training, transformer
from dse.modes.setup import Setup, forward_pass, relabel


def train(s: Setup, n: dict) -> tuple[dict, list]:
    """A training step with data parallelism inside one node; tensor/pipeline parallel training is
    refused until the distributed-training model exists."""
    w = s.workload
    gb, dp, mb = n["batch"], n["dp"], n["micro_batch"]
    seq = n["seq_len"]
    accum = gb / (dp * mb)
    fwd = forward_pass(s, mb, seq, seq, seq, training_pass=True)
    extra = fwd.total if s.recompute == "full" else 0.0  # full recomputation repeats the forward
    params = s.params
    shard = params / np.where(n["zero"] >= 1, dp, 1.0)
    opt = training.optimizer_time(shard, s.device.memory_bandwidth, s.ex.vector_rate, s.eff.memory, s.eff.vector)
    # fp8 training keeps 16-bit weights and gradients and casts per GEMM (NVIDIA Transformer Engine)
    grad_bytes = state_bytes = max(s.ex.act_bytes, 2.0)
    # ZeRO-1/2 reduce-scatter gradients and all-gather weights: the all-reduce volume; ZeRO-3 also
    # gathers the weights again for the backward: 1.5x (Rajbhandari et al. 2020, section 7.2)
    comm = communication.ring_allreduce_time(params * grad_bytes, dp, n["link_bw"], n["link_latency"]) * (
        np.where(n["zero"] == 3, 1.5, 1.0))
    passes = 1.0 + training.BACKWARD_FACTOR + (1.0 if s.recompute == "full" else 0.0)
    micro_time = fwd.total * (1.0 + training.BACKWARD_FACTOR) + extra
    step = micro_time * accum + opt + comm
    samples_per_s = gb / step
    if isinstance(w, Transformer):
        model_flops = transformer.model_flops(w, gb * seq, seq, training=True)
    else:
        model_flops = 3.0 * cnn.forward_flops(w) * gb
    # HFU counts recomputed work too (Korthikanti et al. 2022, section 6)
    hw_flops = model_flops * (1.0 + 1.0 / (1.0 + training.BACKWARD_FACTOR)) if s.recompute == "full" else model_flops
    peak = s.ex.tensor_rate * n["gpus"]
    m = {"step_time_s": step, "samples_per_s": samples_per_s,
         "mfu": model_flops / (step * peak), "hfu": hw_flops / (step * peak),
         "model_tflops_per_gpu": model_flops / step / n["gpus"] / 1e12, "bubble_fraction": 0.0 * step,
         "forward_time_s": fwd.total * accum, "optimizer_time_s": opt, "communication_time_s": comm,
         "gradient_accumulation_steps": accum,
         "checkpoint_bytes": training.model_state_bytes(params, state_bytes, 0.0, 1.0, 0) + 0.0 * step,
         "activity": 1.0 - (fwd.overhead * passes * accum + comm) / step}  # launch gaps and exposed all-reduce idle
    if isinstance(w, Transformer):
        m["tokens_per_s"] = samples_per_s * seq
        if n["tokens"] is not None:
            m["time_to_train_s"] = n["tokens"] / m["tokens_per_s"]
    label = roofline.bottleneck(fwd)
    m["bottleneck"] = relabel(comm > micro_time * accum, "communication", label)
    if isinstance(w, CNN):
        act = cnn.training_activation_elements(w) * mb * s.ex.act_bytes
    else:
        act = transformer.training_activation_bytes(w, mb, seq, s.recompute, s.ex.act_bytes)
    state = training.model_state_bytes(params, state_bytes, grad_bytes, dp, n["zero"])
    parts = [("weights+gradients+optimizer", state), ("activations", act)]
    return m, [(parts, s.device.memory_capacity, "of accelerator memory per GPU")]
