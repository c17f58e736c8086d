"""Serve mode: tensor-parallel replicas run as engines run them, continuous batching with chunked
prefill (the default) or static batches, and the service levels at a request rate."""
from __future__ import annotations

import dataclasses

import numpy as np

from dse import config as cfg
from dse.models import memory, roofline, serving, transformer
from dse.modes.setup import (
    Setup,
    engine_allreduce,
    forward_pass,
    model_weight_bytes,
    phase_timing,
    run_pass,
    split_phases,
    stack_phases,
    tp_link,
)


def serve(s: Setup, n: dict) -> tuple[dict, list]:
    """Serve metrics of one replica and the deployment, by the scheduler chosen, over the link a
    tensor-parallel group of that size really has (`setup.tp_link`: its bandwidth and latency per step)."""
    tp = n["tp"]
    if np.ndim(tp) and (tp == tp[0]).all():  # a column of one degree: one link, as a number
        tp = tp[0]
    bw, latency, largest = tp_link(s.device, tp)
    if largest:
        cfg.require(n["tp"] <= largest, "tp", n["tp"], f"at most {largest}: the largest "
                    f"group of {s.device.name} that one server's links join (links.toml)")
    if bw is not None:
        n["link_bw"] = np.where(tp > 1, bw, np.inf) if np.ndim(tp) else (bw if tp > 1 else np.inf)
        n["link_latency"] = latency + 0.0 * np.asarray(tp)
    return static(s, n) if n["scheduler"] == "static" else continuous(s, n)


def static(s: Setup, n: dict) -> tuple[dict, list]:
    """Static batches (`--scheduler static`): prefill + decode of a whole batch on one tensor-parallel
    replica; deployment throughput over its replicas.

    The batch's prompts are prefilled `prefill_batch` at a time (default: all in one pass), in
    ceil(batch / prefill_batch) equal passes; the TTFT is their sum (the last request's first token)
    and the working memory is the activations of a full pass of prefill_batch prompts. Kernels launch
    one by one; with `--cuda-graphs on` each decode step replays one graph, whose kernel boundaries
    cost `serving.GRAPH_KERNEL_S` each instead of a launch (gpt-fast compiles its decode step with
    torch.compile's "reduce-overhead" mode, CUDA graphs, and its prefill without: pytorch-labs/gpt-fast
    generate.py), so the prefill still launches per kernel."""
    w = s.workload
    b, i, o, tp = n["batch"], n["input_len"], n["output_len"], n["tp"]
    pb = 0.0 if n["prefill_batch"] is None else n["prefill_batch"]
    b = b + 0.0 * (i + o + tp + pb)  # a column whenever any option is one
    # the two phases (one prefill pass, decode at mean context) run as columns of one pass:
    # [prefill | decode] for each design point
    scalar = np.ndim(b) == 0
    one, i, o, tp = (x + 0.0 * b for x in (1.0, i, o, tp))  # every column shaped like the batch
    passes = np.ceil(b / (b if n["prefill_batch"] is None else n["prefill_batch"]))
    per_pass = b / passes
    tps = stack_phases(scalar, tp, tp)
    streams = stack_phases(scalar, one, transformer.decode_kv_streams(w, tp, n["decode_attention"]) * one)
    t = forward_pass(s, stack_phases(scalar, per_pass, b), stack_phases(scalar, i, one),
                     stack_phases(scalar, i, i + o / 2.0), 1.0, tp=tps, kv_streams=streams)
    if n["cuda_graphs"] == "on":  # the decode phase's launches become graph kernel boundaries
        saved = t.overhead * stack_phases(scalar, 0.0 * one, one) * (1.0 - serving.GRAPH_KERNEL_S / s.eff.launch)
        t = dataclasses.replace(t, total=t.total - saved, overhead=t.overhead - saved)
    if scalar and tp == 1:  # one GPU per replica: nothing to all-reduce
        comm = np.zeros(2)
    else:
        link, lat = n["link_bw"] + 0.0 * b, n["link_latency"] + 0.0 * b  # a link column (per TP degree) per phase
        comm = transformer.tp_allreduce_time(w, stack_phases(scalar, per_pass * i, b), tps, s.ex.act_bytes,
                                             stack_phases(scalar, link, link), stack_phases(scalar, lat, lat),
                                             n["link_base"])
    prefill, itl = split_phases(t.total + comm, 2, scalar)
    ttft = passes * prefill
    comm_dec = split_phases(comm, 2, scalar)[1]
    dec = phase_timing(t, 1, 2, scalar)
    kv_seq = transformer.kv_cache_bytes(w, 1.0, i + o, s.ex.kv_bytes)
    kv_share = transformer.kv_rank_share(w, tp)  # KV heads split, replicated past them
    weights = _rank_weights(s, tp)
    act_prompt = transformer.inference_activation_bytes(w, i, 1.0, s.ex.act_bytes) / tp  # one prompt's live set
    work = (b if n["prefill_batch"] is None else n["prefill_batch"]) * act_prompt
    cap, engine = s.device.memory_capacity, memory.engine_workspaces(tp)
    usable = memory.usable_memory(s.device) - engine
    if n["prefill_batch"] is None:  # each added request adds its KV cache and its prompt's activations
        largest = serving.max_batch(usable, weights, kv_seq * kv_share + act_prompt)
    else:
        largest = serving.max_batch(usable, weights + n["prefill_batch"] * act_prompt, kv_seq * kv_share)
    replicas = n["gpus"] / tp
    per_replica = serving.static_tokens_per_s(b, o, ttft, itl)
    m = {"ttft_s": ttft, "itl_s": itl, "request_latency_s": ttft + (o - 1) * itl,
         "kv_cache_bytes": kv_seq * b, "max_batch": largest,
         "tokens_per_s": per_replica * replicas,
         "replicas": replicas, "weights_bytes": model_weight_bytes(s) + 0.0 * weights,
         "communication_time_s": comm_dec,
         "prefill_compute_time_s": passes * split_phases(t.compute, 2, scalar)[0], "decode_memory_time_s": dec.memory,
         "activity": 1.0 - (dec.overhead + comm_dec) / itl,  # decode steps dominate a replica's time
         "bottleneck": roofline.bottleneck(dec)}
    parts = [("weights", weights), ("KV cache", kv_seq * b * kv_share), ("activations", work),
             ("engine workspaces", engine), *memory.reserved_parts(s.device)]
    return m, [(parts, cap, "of accelerator memory per GPU")]


def service_levels(m: dict, n: dict, notes: list) -> None:
    """Serve-mode SLO checks and, at a request rate, feasibility at that load; numbers or columns
    under continuous batching, one point at a time for static batches."""
    if n["scheduler"] == "static":
        static_service_levels(m, n, notes)
        return
    scalar = np.ndim(m["itl_s"] + sum(n[k] for k in ("qps", "itl_slo", "ttft_slo") if n[k] is not None)) == 0
    checks = []
    if n["qps"] is not None:
        cap = m["capacity_requests_per_s"]
        checks.append((m.pop("load_stable"), lambda j: f"{_at(n['qps'], j):g} requests/s exceed the capacity of "
                       f"{_at(m['replicas'], j):g} replica(s) ({_at(cap, j):.3g} requests/s); "
                       f"{_needed(m, j)}"))
    if n["itl_slo"] is not None:
        checks.append((m["itl_s"] <= n["itl_slo"], lambda j: f"inter-token latency {_at(m['itl_s'], j) * 1e3:.1f} "
                       f"ms > SLO {_at(n['itl_slo'], j) * 1e3:.1f} ms"))
    if n["ttft_slo"] is not None:
        key = "ttft_p99_s" if n["qps"] is not None else "ttft_s"
        checks.append((m[key] <= n["ttft_slo"], lambda j: f"{'p99 ' if n['qps'] is not None else ''}TTFT "
                       f"{_at(m[key], j):.3g} s > SLO {_at(n['ttft_slo'], j):.3g} s"
                       + (f"; {_needed(m, j)}" if n["qps"] is not None else "")))
    for ok, reason in checks:
        m["feasible"] = m["feasible"] & ok
        if scalar and not ok:
            m["infeasible_reasons"].append(reason(None))
    if n["qps"] is not None:
        notes.append("at --qps: Poisson arrivals; the operating point solves Little's law with the model's own "
                     "step times; the slots are an M/M/c queue (c = --batch) for the tails")


def _at(x, j):
    return x if j is None or np.ndim(x) == 0 else x[j]


def _needed(m: dict, j) -> str:
    r = _at(m["replicas_needed"], j)
    return "no replica count meets the SLOs" if np.isnan(r) else f"{r:g} replica(s) needed"


def static_service_levels(m: dict, n: dict, notes: list) -> None:
    """Static batches: SLO checks and, at a request rate, tail latency and the replicas needed (each
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


def _steps(s: Setup, n: dict, decoding, context, chunk, prompt, tp):
    """Roofline of engine steps (stacked phase columns) under CUDA graphs: the per-kernel launches
    of `roofline.run` are replaced by the engine's per-step overhead, plus, in steps that carry a
    prefill chunk, one eager attention launch per layer outside the piecewise graphs (vLLM V1 captures
    decode-only steps whole and mixed steps piecewise, split at attention: docs.vllm.ai, "CUDA
    Graphs" design note, 2025); with `--cuda-graphs off` (vLLM's --enforce-eager) every kernel
    launches, on top of the per-step overhead. Weights and KV stream at `serving.STREAM_EFFICIENCY`
    of the device class's bandwidth efficiency; the TP all-reduces of the step's tokens, in 16 bits, by
    the engine's own all-reduce where it is measured on the link, inside the graphs or launched eagerly
    with `--cuda-graphs off` (`communication.engine_allreduce_time`), else NCCL's model."""
    w, ex = s.workload, s.ex
    table = transformer.mixed_ops(w, decoding, context, chunk, prompt, ex.act_bytes, ex.kv_bytes,
                                  transformer.decode_kv_streams(w, tp, n["decode_attention"]))
    if np.any(tp > 1):
        table = transformer.shard(table, tp, w)
    eff = dataclasses.replace(s.eff, memory=s.eff.memory * serving.STREAM_EFFICIENCY)
    t = run_pass(s, table, eff)
    eager = np.where(chunk > 0, w.layers * s.eff.launch, 0.0) if n["cuda_graphs"] == "on" else t.overhead
    link, lat = (x if np.ndim(x) == 0 or np.ndim(tp) == 0 else np.tile(x, len(tp) // len(x))
                 for x in (n["link_bw"], n["link_latency"]))  # one link column per phase
    comm = transformer.tp_allreduce_time(w, decoding + chunk, tp, ex.act_bytes, link, lat,
                                         n["link_base"],
                                         engine_allreduce(s.device, n["cuda_graphs"] == "on"))
    t = dataclasses.replace(t, total=t.total - t.overhead + serving.STEP_S + eager,
                            overhead=serving.STEP_S + eager + 0.0 * t.total)
    return t, comm


def _rank_weights(s: Setup, tp):
    """Weight bytes one of `tp` ranks holds (`transformer.weights_per_rank`; the 16-bit embedding and
    head of an 8-bit model split over the ranks, vocabulary-parallel)."""
    return (transformer.weights_per_rank(s.workload, tp) * s.weight_bytes
            + (model_weight_bytes(s) - s.params * s.weight_bytes) / tp)


def _step_times(s: Setup, n: dict, counts: tuple, shape: dict):
    """Decode-only and mixed step times (each with its TP all-reduces) at each number of sequences
    decoding in `counts`, timed as phase columns [decode at each count, mixed at each count], with
    the roofline Timing and communication of those phases."""
    scalar, one, k = shape["scalar"], shape["one"], len(counts)
    zero, chunk = 0.0 * one, shape["chunk"] * one
    t, comm = _steps(s, n, stack_phases(scalar, *[c * one for c in counts * 2]),
                     stack_phases(scalar, *[shape["context"] * one] * 2 * k),
                     stack_phases(scalar, *[zero] * k, *[chunk] * k),
                     stack_phases(scalar, *[shape["prompt"] * one] * 2 * k),
                     stack_phases(scalar, *[n["tp"] * one] * 2 * k))
    times = split_phases(t.total + comm, 2 * k, scalar)
    return times[:k], times[k:], t, comm


def _engine(n: dict, low, high, decode: tuple, mixed: tuple, shape: dict) -> serving.Engine:
    """The replica's `serving.Engine`: the decode and mixed step times at `low` and `high` sequences
    decoding (`decode`, `mixed`: pairs from `_step_times`) joined by straight lines."""
    (d_low, d_high), (m_low, m_high) = decode, mixed
    steps = shape["steps"]
    p_low, p_high = steps * (m_low - d_low), steps * (m_high - d_high)
    span = high - low
    wide = np.abs(span) > 1e-6
    span = np.where(wide, span, 1.0)
    slope_d, slope_p = np.where(wide, (d_high - d_low) / span, 0.0), np.where(wide, (p_high - p_low) / span, 0.0)
    return serving.Engine(a=d_low - slope_d * low, b=slope_d, c=p_low - slope_p * low, e=slope_p, slots=n["batch"],
                          full=shape["full"], prompt_steps=steps, output_len=n["output_len"],
                          prompt_tokens=shape["computed"], room=shape["room"])


def continuous(s: Setup, n: dict) -> tuple[dict, list]:
    """Continuous batching with chunked prefill (`--scheduler continuous`, the default), as vLLM V1 runs
    it: each engine step carries the decode token of every running sequence and, in what is left of
    `--max-batched-tokens`, chunks of waiting prompts (decodes first); at most `--batch` sequences are
    in flight (default: what the KV cache holds, capped at the engine's max_num_seqs). Step times come
    from the roofline of that mixed step (`transformer.mixed_ops`) and are made affine in the number
    of sequences decoding (`serving.Engine`). Without `--qps` the replica runs full: a closed loop of
    `--batch` requests, each replaced as it ends, whose tokens/s is C * O / request latency (Little's
    law), at most `capacity_requests_per_s`, what an open queue that never empties reaches; with
    it, at the self-consistent operating point of `serving.operating_point`, with an M/M/c queue for
    the slots in front (c = --batch, service = a slot's holding time).

    TTFT = per-request overhead + queueing wait for a slot + half a step (an arrival waits for the
    step in progress to end) + the step the scheduler has already planned (vLLM's async scheduling
    runs one step ahead, `serving.AHEAD_STEPS`) + the wait for room in the steps' token budget (an
    M/D/1 queue, `serving.prefill_wait`; without --qps, where the budget limits the replica, the wait
    Little's law gives the loop) + the steps that carry its prompt's chunks; ITL = the mean step;
    request latency = TTFT + (O - 1) * ITL. Memory: weights, the KV cache of every sequence at full
    context, the activations of a full step of `--max-batched-tokens` tokens and the engine's
    non-PyTorch workspaces (`memory.engine_workspaces`), within vLLM's gpu_memory_utilization of the
    memory the device exposes (`memory.usable_memory`); the rest is the runtime's, and on GDDR cards
    the ECC bits' (`memory.reserved_parts`)."""
    w, ex = s.workload, s.ex
    i, o, tp = n["input_len"], n["output_len"], n["tp"]
    budget_default, seqs_default = serving.engine_defaults(s.device.name, s.device.memory_capacity)
    budget = budget_default if n["max_batched_tokens"] is None else n["max_batched_tokens"]
    hit = 0.0 if n["prefix_cache_hit"] is None else n["prefix_cache_hit"]
    prompt = np.maximum(1.0, np.ceil(i * (1.0 - hit)))  # cached tokens are read, not recomputed
    cap, engine = s.device.memory_capacity, memory.engine_workspaces(tp)
    usable = memory.usable_memory(s.device) - engine
    weights = _rank_weights(s, tp)
    kv_share = transformer.kv_rank_share(w, tp)  # KV heads split, replicated past them
    kv_seq = transformer.kv_cache_bytes(w, 1.0, i + o, ex.kv_bytes)
    work = transformer.inference_activation_bytes(w, budget, np.minimum(budget, seqs_default), ex.act_bytes) / tp
    largest = serving.max_batch(usable, weights + work, kv_seq * kv_share)
    if n["batch"] is None:  # vLLM's max_num_seqs, no more than the KV cache holds nor the step's budget
        n["batch"] = np.maximum(1.0, np.minimum(np.minimum(largest, seqs_default), budget))
    slots = n["batch"]
    rate_column = 0.0 if n["qps"] is None else n["qps"]
    one = 0.0 * (slots + i + o + tp + budget + hit + rate_column) + 1.0  # every column shaped like the population
    chunk = np.minimum(prompt, np.maximum(budget - slots, 1.0))  # decodes go first, prompts fill the rest
    steps = np.ceil(prompt / chunk)
    room = np.maximum(budget - slots, 1.0)
    # decoding at full load: the slots' turnover or, where fewer prompts fit a step's budget, those
    # prompts' O - 1 decode steps each (`serving.capacity`)
    full = np.maximum(np.minimum(slots / (steps + o - 1.0), room / prompt) * (o - 1.0), 1.0)
    scalar = np.ndim(one) == 0
    shape = dict(scalar=scalar, one=one, chunk=chunk, context=i + o / 2.0, prompt=i, steps=steps, full=full,
                 computed=prompt, room=room)
    # the steps at full load and, at a rate, at one sequence too (the chords of `serving.Engine`); without
    # --qps every use is at full load, where a one-point engine is the same line's value
    low = full if n["qps"] is None else 1.0
    counts = (full,) if n["qps"] is None else (1.0, full)
    decode, mixed_steps, t, comm = _step_times(s, n, counts, shape)
    d_full, m_full = decode[-1], mixed_steps[-1]
    g = _engine(n, low, full, (decode[0], d_full), (mixed_steps[0], m_full), shape)
    per_replica, itl, budget_bound = serving.capacity(g)
    replicas = n["gpus"] / tp
    k = len(counts)
    dec, mixed = phase_timing(t, k - 1, 2 * k, scalar), phase_timing(t, 2 * k - 1, 2 * k, scalar)
    comm_dec = split_phases(comm, 2 * k, scalar)[k - 1]
    chunk_steps = steps * serving.step_time(g, full) + serving.prefill_extra(g, full)
    # without --qps the replica runs full: `batch` requests in flight, each replaced as it ends (a closed
    # loop, as a benchmark at fixed concurrency runs it). Where the slots limit it, a prompt waits for
    # room in the step budget as in `serving.prefill_wait`; where the budget does, the requests queue for
    # it and, by Little's law on the loop, each is in flight slots / capacity seconds, of which its
    # overheads, prompt's chunk steps and O - 1 decode steps take their share: the rest is its wait
    unqueued = serving.REQUEST_S + (0.5 + serving.AHEAD_STEPS) * itl + chunk_steps
    wait = np.where(budget_bound, np.maximum(slots / per_replica - unqueued - (o - 1.0) * itl, 0.0),
                    serving.prefill_wait(g, full, per_replica)[0])
    ttft = unqueued + wait
    latency = ttft + (o - 1.0) * itl
    # the loop's throughput by Little's law, `slots` requests in flight each for `latency` (a request's
    # overheads and its wait for the step budget hold no slot, so where the slots limit it this is
    # below the capacity an open queue reaches; where the budget does, the two are equal by the above)
    loop = np.minimum(slots / latency, per_replica)
    m = {"ttft_s": ttft, "itl_s": itl, "request_latency_s": latency,
         "kv_cache_bytes": kv_seq * slots, "max_batch": largest, "concurrency": slots * one,
         "tokens_per_s": loop * o * replicas, "capacity_requests_per_s": per_replica * replicas,
         "replicas": replicas, "weights_bytes": model_weight_bytes(s) + 0.0 * weights,
         "communication_time_s": comm_dec,
         "prefill_compute_time_s": steps * mixed.compute * (1.0 - dec.flops / mixed.flops),  # the prompt's share
         "decode_memory_time_s": dec.memory, "activity": 1.0 - (dec.overhead + comm_dec) / itl,
         "bottleneck": roofline.bottleneck(dec)}
    if n["qps"] is not None:  # two secant refinements around the operating point (MoE weights are concave in n)
        rate = n["qps"] / replicas  # (each step time is timed once: the chords share their ends)
        start = np.clip(serving.operating_point(g, rate)[0], np.minimum(1.0, full), full)  # a step runs >= 1
        (d_start,), (m_start,), _, _ = _step_times(s, n, (start,), shape)
        g_near = _engine(n, start, full, (d_start, d_full), (m_start, m_full), shape)
        near = np.clip(serving.operating_point(g_near, rate)[0], np.minimum(1.0, full), full)
        (d_near,), (m_near,), _, _ = _step_times(s, n, (near,), shape)
        g, whole = _engine(n, near, start, (d_near, d_start), (m_near, m_start), shape), g
    if n["qps"] is not None:
        _at_rate(m, g, whole, n, replicas)
    parts = [("weights", weights), ("KV cache", kv_seq * slots * kv_share), ("activations", work),
             ("engine workspaces", engine), *memory.reserved_parts(s.device)]
    return m, [(parts, cap, "of accelerator memory per GPU")]


def _ttft_parts(g: serving.Engine, rate, cap=None):
    """(mean step, TTFT before queueing for a slot, slot holding time, budget utilisation, stable) of a
    replica at `rate` whose capacity is `cap` requests/s (by default g's own). A request holds its
    slot from its first chunk to its last token, its prompt's chunk steps and O - 1 decode steps of the
    mean step (vLLM V1 moves a request from the waiting queue to the running set, at most max_num_seqs,
    when it schedules its first chunk: vllm/v1/core/sched/scheduler.py), the cycle `serving.capacity`
    counts, so the slot queue fills (rate * hold = slots) at the capacity; the wait for room in the
    step budget is spent waiting, before the slot. Stable: the operating point below the capacity,
    the budget's M/D/1 queue and the slots' M/M/c queue."""
    decoding, t, stable = serving.operating_point(g, rate, cap)
    chunk_steps = g.prompt_steps * serving.step_time(g, decoding) + serving.prefill_extra(g, decoding)
    wait, room = serving.prefill_wait(g, decoding, rate)
    hold = (g.prompt_steps + g.output_len - 1.0) * t
    busy = rate * serving.prefill_service(g, decoding)
    stable = stable & room & (rate * hold < g.slots)
    return t, serving.REQUEST_S + (0.5 + serving.AHEAD_STEPS) * t + wait + chunk_steps, hold, busy, stable


def _at_rate(m: dict, g: serving.Engine, whole: serving.Engine, n: dict, replicas) -> None:
    """The metrics at `--qps` (means and tails) from the engine refined around this load, `g`, columns
    throughout; the replicas needed under the SLOs from the engine's chord over every load, `whole`."""
    o = n["output_len"]
    rate = n["qps"] / replicas
    t, base, hold, busy, stable = _ttft_parts(g, rate, serving.capacity(whole)[0])
    queued = serving.erlang_c_column(g.slots, rate * hold)  # probability of waiting for a slot
    margin = g.slots / hold - rate
    wait = np.where(margin > 0, queued / np.where(margin > 0, margin, 1.0), np.inf)  # M/M/c mean wait
    # beyond capacity the means are those of the replica running full and the tails are left out (NaN)
    at = {"ttft_s": base + wait, "itl_s": t, "request_latency_s": base + wait + (o - 1.0) * t}
    at["concurrency"] = rate * at["request_latency_s"]
    for q, key in ((0.5, "ttft_p50_s"), (0.99, "ttft_p99_s")):
        at[key] = base + serving.wait_quantile_column(g.slots, hold, rate, q, queued)
    at["request_latency_p99_s"] = at["ttft_p99_s"] + (o - 1.0) * t
    for key, value in at.items():
        m[key] = np.where(stable, value, m.get(key, np.nan))
    m["tokens_per_s"] = np.minimum(n["qps"], m["capacity_requests_per_s"]) * o
    # the busier of the slots and the step budget; at and beyond capacity, the load over the capacity
    m["queue_utilization"] = np.where(stable, np.maximum(rate * hold / g.slots, busy),
                                      n["qps"] / m["capacity_requests_per_s"])
    needed = _replicas_needed(whole, n, m["capacity_requests_per_s"] / replicas)
    m.update(replicas_needed=needed, gpus_needed=needed * n["tp"], load_stable=stable)
    for key, value in m.items():  # a single point's numbers as floats
        if isinstance(value, np.ndarray) and value.ndim == 0:
            m[key] = value.item()


def _replicas_needed(g: serving.Engine, n: dict, per_replica):
    """Fewest replicas whose queue is stable and whose p99 TTFT and mean ITL meet the SLOs given (NaN
    where no count does: the SLO is below the unloaded TTFT or ITL). Both fall as replicas are added,
    so a doubling search and a bisection over integers find it, column-wise."""
    qps = n["qps"]
    low = np.floor(qps / per_replica) + 1.0

    def meets(r):
        t, base, hold, _, stable = _ttft_parts(g, qps / r)
        ok = stable
        if n["ttft_slo"] is not None:
            ok = ok & (base + serving.wait_quantile_column(g.slots, hold, qps / r, 0.99) <= n["ttft_slo"])
        if n["itl_slo"] is not None:
            ok = ok & (t <= n["itl_slo"])
        return ok

    if n["ttft_slo"] is None and n["itl_slo"] is None:
        return low
    reachable = meets(1e18 + 0.0 * low)
    high = low
    for _ in range(64):
        good = meets(high) | ~reachable
        if np.all(good):
            break
        high = np.where(good, high, high * 2.0)
    for _ in range(64):
        if np.all(high - low < 1):
            break
        mid = np.floor((low + high) / 2.0)
        ok = meets(mid)
        low, high = np.where(ok, low, mid + 1.0), np.where(ok, mid, high)
    return np.where(reachable, high, np.nan)
