"""Infer mode: one forward pass over a batch."""
from __future__ import annotations

from dse.catalog import CNN, Transformer
from dse.models import cnn, memory, roofline, transformer
from dse.modes.setup import Setup, forward_pass, model_weight_bytes


def infer(s: Setup, n: dict) -> tuple[dict, list]:
    """One forward pass over a batch (encoders, CNNs, or a prompt for a decoder)."""
    w = s.workload
    batch, seq = n["batch"], n["seq_len"]
    t = forward_pass(s, batch, seq, seq, 1.0)
    if isinstance(w, CNN):
        act = cnn.peak_activation_elements(w) * batch * s.ex.act_bytes
    else:
        act = transformer.inference_activation_bytes(w, batch * seq, batch, s.ex.act_bytes)
    weights = model_weight_bytes(s)
    if s.device.get("flash"):  # a microcontroller keeps its weights in flash and works in SRAM
        checks = [([("weights", weights)], s.device.get("flash"), "of flash"),
                  ([("activations", act)], s.device.memory_capacity, "of SRAM")]
    else:
        parts = [("weights", weights), ("activations", act), ("engine workspaces", memory.engine_workspaces()),
                 *memory.reserved_parts(s.device)]
        checks = [(parts, s.device.memory_capacity, "of accelerator memory")]
    m = {"latency_s": t.total, "throughput_per_s": batch / t.total, "compute_time_s": t.compute,
         "activity": 1.0 - t.overhead / t.total,
         "memory_time_s": t.memory, "overhead_time_s": t.overhead, "arithmetic_intensity": t.flops / t.bytes,
         "flop": t.flops, "bottleneck": roofline.bottleneck(t)}
    if isinstance(w, Transformer):
        m["tokens_per_s"] = batch * seq / t.total
    return m, checks
