"""Serve mode: prefill and decode on tensor-parallel replicas, and the service levels at a request rate."""
from __future__ import annotations

import numpy as np

from dse.models import roofline, serving, transformer
from dse.modes.setup import Setup, forward_pass, phase_timing, split_phases, stack_phases


def serve(s: Setup, n: dict) -> tuple[dict, list]:
    """Prefill + decode on one tensor-parallel replica; deployment throughput over its replicas.

    The batch's prompts are prefilled `prefill_batch` at a time (default: all in one pass), in
    ceil(batch / prefill_batch) equal passes; the TTFT is their sum (the last request's first token)
    and the working memory is the activations of a full pass of prefill_batch prompts."""
    w = s.workload
    b, i, o, tp = n["batch"], n["input_len"], n["output_len"], n["tp"]
    pb = 0.0 if n["prefill_batch"] is None else n["prefill_batch"]
    b = b + 0.0 * (i + o + tp + pb)  # a column whenever any option is one
    # the three phases (one prefill pass, decode at mean context, prefill of one request) run as
    # columns of one pass: [prefill | decode | prefill-one] for each design point
    scalar = np.ndim(b) == 0
    one, i, o, tp = (x + 0.0 * b for x in (1.0, i, o, tp))  # every column shaped like the batch
    passes = np.ceil(b / (b if n["prefill_batch"] is None else n["prefill_batch"]))
    per_pass = b / passes
    tps = stack_phases(scalar, tp, tp, tp)
    t = forward_pass(s, stack_phases(scalar, per_pass, b, one), stack_phases(scalar, i, one, i),
                 stack_phases(scalar, i, i + o / 2.0, i), 1.0, tp=tps)
    if scalar and tp == 1:  # one GPU per replica: nothing to all-reduce
        comm = np.zeros(3)
    else:
        comm = transformer.tp_allreduce_time(w, stack_phases(scalar, per_pass * i, b, i), tps, s.ex.act_bytes,
                                             n["link_bw"], n["link_latency"])
    prefill, itl, pf1 = split_phases(t.total + comm, 3, scalar)
    ttft = passes * prefill
    comm_dec = split_phases(comm, 3, scalar)[1]
    dec = phase_timing(t, 1, 3, scalar)
    kv_seq = transformer.kv_cache_bytes(w, 1.0, i + o, s.ex.kv_bytes)
    kv_share = np.maximum(1.0 / tp, 1.0 / w.kv_heads)  # KV heads split over TP ranks, replicated past kv_heads
    weights = s.params * s.weight_bytes / tp
    act_prompt = transformer.inference_activation_bytes(w, i, 1.0, s.ex.act_bytes) / tp  # one prompt's live set
    work = (b if n["prefill_batch"] is None else n["prefill_batch"]) * act_prompt
    cap = s.device.memory_capacity
    if n["prefill_batch"] is None:  # each added request adds its KV cache and its prompt's activations
        largest = serving.max_batch(cap, weights, kv_seq * kv_share + act_prompt)
    else:
        largest = serving.max_batch(cap, weights + n["prefill_batch"] * act_prompt, kv_seq * kv_share)
    replicas = n["gpus"] / tp
    per_replica = serving.static_tokens_per_s(b, o, ttft, itl)
    m = {"ttft_s": ttft, "itl_s": itl, "request_latency_s": ttft + (o - 1) * itl,
         "kv_cache_bytes": kv_seq * b, "max_batch": largest,
         "tokens_per_s": per_replica * replicas,
         "continuous_tokens_per_s": serving.continuous_tokens_per_s(b, o, itl, pf1) * replicas,
         "replicas": replicas, "weights_bytes": weights * tp, "communication_time_s": comm_dec,
         "prefill_compute_time_s": passes * split_phases(t.compute, 3, scalar)[0], "decode_memory_time_s": dec.memory,
         "activity": 1.0 - (dec.overhead + comm_dec) / itl,  # decode steps dominate a replica's time
         "bottleneck": roofline.bottleneck(dec)}
    parts = [("weights", weights), ("KV cache", kv_seq * b * kv_share), ("activations", work)]
    return m, [(parts, cap, "of accelerator memory per GPU")]


def service_levels(m: dict, n: dict, notes: list) -> None:
    """Serve-mode SLO checks and, at a request rate, tail latency and the replicas needed (each
    replica an M/M/c queue with c = batch slots; see `dse.models.serving`)."""
    slots, replicas = int(n["batch"]), int(m["replicas"])
    if n["itl_slo"] is not None and m["itl_s"] > n["itl_slo"]:
        m["feasible"] = False
        m["infeasible_reasons"].append(f"inter-token latency {m['itl_s'] * 1e3:.1f} ms > SLO "
                                       f"{n['itl_slo'] * 1e3:.1f} ms at batch {slots}")
    if n["qps"] is None:  # no arrivals to queue: the TTFT SLO applies to the bare TTFT
        if n["ttft_slo"] is not None and m["ttft_s"] > n["ttft_slo"]:
            m["feasible"] = False
            m["infeasible_reasons"].append(f"TTFT {m['ttft_s']:.3g} s > SLO {n['ttft_slo']:.3g} s")
        return
    service, rate = m["request_latency_s"], n["qps"]
    needed = serving.replicas_needed(rate, slots, service, m["ttft_s"], n["ttft_slo"])
    per = rate / replicas
    m["queue_utilization"] = per * service / slots
    stable = m["queue_utilization"] < 1
    if stable:  # an unstable queue has no finite quantiles: the metrics are left out, the reason says why
        m["ttft_p50_s"] = m["ttft_s"] + serving.wait_quantile(slots, service, per, 0.50)
        wait_p99 = serving.wait_quantile(slots, service, per, 0.99)
        m["ttft_p99_s"] = m["ttft_s"] + wait_p99
        m["request_latency_p99_s"] = m["request_latency_s"] + wait_p99
    if needed is not None:
        m["replicas_needed"] = needed
        m["gpus_needed"] = needed * int(n["tp"])
    wanted = f"{needed} needed" if needed is not None else "no replica count meets the TTFT SLO"
    if not stable:
        m["feasible"] = False
        m["infeasible_reasons"].append(f"{rate:g} requests/s exceed the capacity of {replicas} replica(s) "
                                       f"({replicas * slots / service:.3g} requests/s); {wanted}")
    if n["ttft_slo"] is not None and needed is None:
        m["feasible"] = False
        m["infeasible_reasons"].append(f"TTFT {m['ttft_s']:.3g} s without any queueing already exceeds the "
                                       f"SLO {n['ttft_slo']:.3g} s: no number of replicas meets it")
    elif n["ttft_slo"] is not None and stable and m["ttft_p99_s"] > n["ttft_slo"]:
        m["feasible"] = False
        m["infeasible_reasons"].append(f"p99 TTFT {m['ttft_p99_s']:.3g} s > SLO {n['ttft_slo']:.3g} s "
                                       f"with {replicas} replica(s); {wanted}")
    notes.append("queueing: each replica is an M/M/c queue with c = batch slots and service time = "
                 "request latency")
