"""The models composed per mode: what one design point (or a column of them) costs in infer, serve
and train mode, its memory checks, the input pipeline in front of it and the serving SLOs. The
catalog resolution of a point's categorical choices is its `Setup`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse import config as cfg
from dse.catalog import CNN, Accelerator, Transformer, Workload, accuracy_ranges, node_for, registry
from dse.errors import UserInputError
from dse.models import (
    calibration,
    cnn,
    communication,
    compression,
    data_pipeline,
    roofline,
    serving,
    training,
    transformer,
)
from dse.models.precision import Execution, resolve
from dse.units import format_bytes


@dataclass(frozen=True, slots=True)
class Setup:
    """The categorical part of a design point, resolved against the catalog."""

    workload: Workload
    device: Accelerator
    mode: str
    precision: str
    ex: Execution
    eff: calibration.Efficiency
    weight_bytes: float
    tensor_speedup: float
    recompute: str
    notes: tuple[str, ...]
    link: tuple[float | None, float]
    params: float


def setup(workload: Workload, device: Accelerator, mode: str, precision: str, weight_precision: str | None,
          sparsity: object, recompute: str) -> Setup:
    """Resolve precision, sparsity and efficiency for one (workload, device, mode) combination."""
    try:
        ex = resolve(device, precision, weight_precision)
    except ValueError as exc:
        raise UserInputError("--weight-precision" if weight_precision else "--precision",
                             weight_precision or precision, str(exc)) from None
    notes = list(ex.notes)
    structured, zeros = cfg.sparsity(sparsity)
    speedup = 1.0
    if structured and device.sparsity_2_4:
        speedup = 2.0
        notes.append("2:4 structured sparsity: sparse tensor cores double the weight-GEMM rate and "
                     "weights take 0.5 B/element + 1 bit of index")
    elif structured:
        notes.append(f"{device.name} has no 2:4 sparse tensor cores: weights are stored compressed, "
                     "the arithmetic runs dense")
    elif zeros > 0:
        notes.append(f"{zeros:.0%} unstructured zeros: stored as values plus a bitmask when smaller; "
                     "dense matrix units do not skip zeros, so FLOP are unchanged")
    if recompute != "none" and mode != "train":
        raise UserInputError("--recompute", recompute, f"not used in {mode} mode (it applies to train)")
    if mode == "train" and (precision in ("int8", "int4", "fp4") or weight_precision):
        field = "--weight-precision" if weight_precision else "--precision"
        raise UserInputError(field, weight_precision or precision, "fp32, tf32, bf16, fp16 or fp8 arithmetic in "
                             "train mode, without weight-only quantization")
    if mode == "train" and ex.weight_bytes < ex.act_bytes:
        raise UserInputError("--precision", precision, f"one {device.name} computes in for training: it has no "
                             f"native {precision}, and training does not store weights narrower than its "
                             f"arithmetic ({ex.compute})")
    if mode == "train" and precision == "fp8":
        notes.append("fp8 training keeps 16-bit weights and gradients and casts them per GEMM (Transformer Engine)")
    if mode == "serve" and ex.kv_bytes < 2:
        notes.append(f"KV cache stored in {ex.compute} ({ex.kv_bytes:g} B/element)")
    if recompute == "selective":
        notes.append("selective recomputation (of the attention core) is what FlashAttention does by "
                     "construction: same memory and time as none")
    if recompute != "none" and not isinstance(workload, Transformer):
        raise UserInputError("--recompute", recompute, f"none for the CNN {workload.name!r}: activation "
                             "recomputation is modelled for transformers")
    if mode == "serve" and not (isinstance(workload, Transformer) and workload.causal):
        raise UserInputError("--mode", mode, f"infer or train for {workload.name!r}: serve models the prefill "
                             "and token-by-token decode of a causal (decoder) language model")
    eff = calibration.for_class(device.device_class)
    if not eff.calibrated:
        notes.append(f"uncalibrated: {device.device_class} efficiency ({eff.basis})")
    family = "llm" if isinstance(workload, Transformer) and workload.causal else (
        "cnn" if isinstance(workload, CNN) else "encoder")
    for method in compression.methods(ex, structured, zeros):
        cited = [r.describe() for r in accuracy_ranges() if r.method == method and r.family == family]
        notes += cited or [f"{method} on {family}s: no published accuracy range in the catalog"]
    wb = roofline.weight_bytes_per_element(ex, structured, zeros)
    return Setup(workload, device, mode, precision, ex, eff, wb, speedup,
                 recompute, tuple(notes), _link(device),
                 cnn.parameters(workload) if isinstance(workload, CNN) else transformer.parameters(workload))


def _pass(s: Setup, batch, q_len, kv_len, logit_tokens, training_pass: bool = False, tp=1) -> roofline.Timing:
    """Roofline timing of one forward pass of the workload (per GPU under tensor parallelism)."""
    w = s.workload
    if isinstance(w, CNN):
        table = cnn.pass_ops(w, batch, s.ex.act_bytes, training_pass)
    else:
        table = transformer.pass_ops(w, batch, q_len, kv_len, logit_tokens, s.ex.act_bytes, s.ex.kv_bytes)
        if np.any(tp > 1):
            table = transformer.shard(table, tp)
    return roofline.run(table, s.ex, s.eff, bandwidth=s.device.memory_bandwidth,
                               weight_bytes=s.weight_bytes, tensor_speedup=s.tensor_speedup)


def _phases(scalar: bool, *columns):
    """Stack per-phase values of every design point into one column: a single point gives (phases,),
    a population of N gives (phases * N,). Columns of a population share the batch's shape."""
    return np.array(columns, dtype=float) if scalar else np.concatenate(columns)


def _split(x, parts: int, scalar: bool):
    """Undo `_phases` on a result: row k holds phase k (a number for one point, a column otherwise)."""
    rows = x.reshape(parts, -1)
    return rows[:, 0] if scalar else rows


def _phase(t: roofline.Timing, k: int, parts: int, scalar: bool) -> roofline.Timing:
    """Phase `k` of a Timing computed over `_phases` columns (without per-operator detail)."""
    return roofline.Timing(**{f: _split(getattr(t, f), parts, scalar)[k] for f in roofline.Timing.__slots__})


def _reason(parts: list[tuple[str, float]], capacity: float, where: str) -> str:
    total = sum(v for _, v in parts)
    shown = [f"{name} {format_bytes(v)}" for name, v in parts if v > 0]
    total_text = "" if len(shown) == 1 else f" = {format_bytes(total)}"
    return f"{' + '.join(shown)}{total_text} > {format_bytes(capacity)} {where}"


def infer(s: Setup, n: dict) -> tuple[dict, list]:
    """One forward pass over a batch (encoders, CNNs, or a prompt for a decoder)."""
    w = s.workload
    batch, seq = n["batch"], n["seq_len"]
    t = _pass(s, batch, seq, seq, 1.0)
    if isinstance(w, CNN):
        act = cnn.peak_activation_elements(w) * batch * s.ex.act_bytes
    else:
        act = transformer.inference_activation_bytes(w, batch * seq, batch, s.ex.act_bytes)
    weights = s.params * s.weight_bytes
    if s.device.get("flash"):  # a microcontroller keeps its weights in flash and works in SRAM
        checks = [([("weights", weights)], s.device.get("flash"), "of flash"),
                  ([("activations", act)], s.device.memory_capacity, "of SRAM")]
    else:
        checks = [([("weights", weights), ("activations", act)], s.device.memory_capacity, "of accelerator memory")]
    m = {"latency_s": t.total, "throughput_per_s": batch / t.total, "compute_time_s": t.compute,
         "activity": 1.0 - t.overhead / t.total,
         "memory_time_s": t.memory, "overhead_time_s": t.overhead, "arithmetic_intensity": t.flops / t.bytes,
         "flop": t.flops, "bottleneck": roofline.bottleneck(t)}
    if isinstance(w, Transformer):
        m["tokens_per_s"] = batch * seq / t.total
    return m, checks


def serve(s: Setup, n: dict) -> tuple[dict, list]:
    """Prefill + decode on one tensor-parallel replica; deployment throughput over its replicas.

    The batch's prompts are prefilled `prefill_batch` at a time (default: all in one pass), in
    ceil(batch / prefill_batch) equal passes; the TTFT is their sum (the last request's first token)
    and the working memory is the activations of a full pass of prefill_batch prompts."""
    w = s.workload
    b, i, o, tp = n["batch"], n["input_len"], n["output_len"], n["tp"]
    # the three phases (one prefill pass, decode at mean context, prefill of one request) run as
    # columns of one pass: [prefill | decode | prefill-one] for each design point
    scalar = np.ndim(b) == 0
    one, i, o, tp = (x + 0.0 * b for x in (1.0, i, o, tp))  # every column shaped like the batch
    passes = np.ceil(b / (b if n["prefill_batch"] is None else n["prefill_batch"]))
    per_pass = b / passes
    tps = _phases(scalar, tp, tp, tp)
    t = _pass(s, _phases(scalar, per_pass, b, one), _phases(scalar, i, one, i),
                 _phases(scalar, i, i + o / 2.0, i), 1.0, tp=tps)
    if scalar and tp == 1:  # one GPU per replica: nothing to all-reduce
        comm = np.zeros(3)
    else:
        comm = transformer.tp_allreduce_time(w, _phases(scalar, per_pass * i, b, i), tps, s.ex.act_bytes,
                                             n["link_bw"], n["link_latency"])
    prefill, itl, pf1 = _split(t.total + comm, 3, scalar)
    ttft = passes * prefill
    comm_dec = _split(comm, 3, scalar)[1]
    dec = _phase(t, 1, 3, scalar)
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
         "prefill_compute_time_s": passes * _split(t.compute, 3, scalar)[0], "decode_memory_time_s": dec.memory,
         "activity": 1.0 - (dec.overhead + comm_dec) / itl,  # decode steps dominate a replica's time
         "bottleneck": roofline.bottleneck(dec)}
    parts = [("weights", weights), ("KV cache", kv_seq * b * kv_share), ("activations", work)]
    return m, [(parts, cap, "of accelerator memory per GPU")]


def train(s: Setup, n: dict) -> tuple[dict, list]:
    """A training step with data parallelism inside one node; tensor/pipeline parallel training is
    refused until the distributed-training model exists."""
    w = s.workload
    gb, dp, mb = n["batch"], n["dp"], n["micro_batch"]
    seq = n["seq_len"]
    accum = gb / (dp * mb)
    fwd = _pass(s, mb, seq, seq, seq, training_pass=True)
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
    m["bottleneck"] = _relabel(comm > micro_time * accum, "communication", label)
    if isinstance(w, CNN):
        act = cnn.training_activation_elements(w) * mb * s.ex.act_bytes
    else:
        act = transformer.training_activation_bytes(w, mb, seq, s.recompute, s.ex.act_bytes)
    state = training.model_state_bytes(params, state_bytes, grad_bytes, dp, n["zero"])
    parts = [("weights+gradients+optimizer", state), ("activations", act)]
    return m, [(parts, s.device.memory_capacity, "of accelerator memory per GPU")]


def _relabel(condition, label: str, otherwise):
    """`label` where `condition` holds, else the previous bottleneck label (scalar or column)."""
    picked = np.where(condition, label, otherwise)
    return str(picked) if picked.ndim == 0 else picked


MODELS = {"infer": infer, "serve": serve, "train": train}


def with_data_pipeline(m: dict, n: dict, s: Setup) -> dict:
    """Put the input pipeline (storage read, CPU decode/augment) in front of the accelerator when
    --cpu-workers or --storage-bw is given; a stage without its option is not modelled."""
    key = "step_time_s" if s.mode == "train" else "latency_s"
    samples, sample_bytes, t_compute = n["batch"], n["sample_bytes"], m[key]
    t_sto = data_pipeline.stage_time(samples, sample_bytes, np.inf if n["storage_bw"] is None else n["storage_bw"])
    cpu_rate = np.inf if n["cpu_workers"] is None else n["cpu_workers"] * n["worker_bw"]
    t_cpu = data_pipeline.stage_time(samples, sample_bytes, cpu_rate)
    t, util, stall = data_pipeline.pipelined_step(t_compute, t_sto, t_cpu)
    scale = t_compute / t
    m.update({"data_stall_fraction": stall, "accelerator_utilization": util, "activity": m["activity"] * util,
              "storage_time_s": t_sto,
              "cpu_transform_time_s": t_cpu, "accelerator_time_s": t_compute, key: t})
    if n["worker_bw"] is not None:
        m["cpu_workers_needed"] = data_pipeline.workers_needed(samples, sample_bytes, n["worker_bw"], t_compute)
    for rate in ("throughput_per_s", "samples_per_s", "tokens_per_s", "mfu", "hfu", "model_tflops_per_gpu"):
        if rate in m:
            m[rate] = m[rate] * scale
    if "time_to_train_s" in m:
        m["time_to_train_s"] = m["time_to_train_s"] / scale
    m["bottleneck"] = _relabel(stall > 1e-9, "data", m["bottleneck"])  # the slowest stage sets the step
    return m


def _link(device: Accelerator) -> tuple[float | None, float]:
    """One direction of the scale-up link between the device's GPUs (B/s) and the per-step latency
    of that fabric, from the catalog node built from the device; (None, 0) when no node says how its
    GPUs connect (PCIe cards with bridges, TPUs, Gaudi), so that parallelism is refused, not guessed."""
    node = node_for(device)
    fabric = next((f for f in registry("fabrics") if node and f.name == node.scale_up), None)
    if fabric is None:
        return None, 0.0
    bw = device.get("scale_up_bandwidth") or fabric.get("bandwidth")
    return bw / 2.0, fabric.get("latency") or 0.0


def common(m: dict, checks: list, n: dict, reasons: list, compute: str) -> dict:
    """The metrics every mode reports (DESIGN.md 4.1): memory feasibility against each check's capacity,
    with reasons in numbers for a single point, the bottleneck, the arithmetic actually used, and
    the mode's own metrics."""
    feasible = True
    per_gpu = 0.0
    for parts, capacity, where in checks:
        total = sum(v for _, v in parts)
        per_gpu = per_gpu + total
        ok = total <= capacity
        feasible = feasible & ok
        if not np.ndim(ok) and not ok:
            reasons.append(_reason(parts, capacity, where))
    return {"feasible": feasible, "infeasible_reasons": reasons, "bottleneck": m.pop("bottleneck"),
            "compute_precision": compute,
            "memory_per_gpu_bytes": per_gpu, "gpus": n["gpus"], **m}


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
