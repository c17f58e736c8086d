"""Config -> Metrics. Composes the models for one design point, or for a whole pandas frame of them
column-wise (rows grouped by their categorical choices, numeric columns as numpy arrays), through the
same functions, so a sweep and a single question give the same numbers."""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from dse import config as cfg
from dse.catalog import CNN, Accelerator, Transformer, Workload, accuracy_ranges, registry
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


@dataclass
class Result:
    """What `dse eval` prints: the resolved config, the metrics and the notes (assumptions, fallbacks)."""

    config: dict
    metrics: dict
    notes: list[str] = field(default_factory=list)


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
    family = "llm" if isinstance(workload, Transformer) else "cnn"
    for method in compression.methods(ex, structured, zeros):
        cited = [r.describe() for r in accuracy_ranges() if r.method == method and r.family == family]
        notes += cited or [f"{method} on {family}s: no published accuracy range in the catalog"]
    wb = roofline.weight_bytes_per_element(ex, structured, zeros)
    return Setup(workload, device, mode, precision, ex, eff, wb, speedup,
                 recompute, tuple(notes), _link(device),
                 cnn.parameters(workload) if isinstance(workload, CNN) else transformer.parameters(workload))


def _pass(s: Setup, batch, q_len, kv_len, logit_tokens, training_pass: bool = False, tp=1):
    """Roofline timing of one forward pass of the workload (per GPU under tensor parallelism)."""
    w = s.workload
    if isinstance(w, CNN):
        table = cnn.pass_ops(w, batch, s.ex.act_bytes, training_pass)
    else:
        table = transformer.pass_ops(w, batch, q_len, kv_len, logit_tokens, s.ex.act_bytes, s.ex.kv_bytes)
        if np.any(tp > 1):
            table = transformer.shard(table, tp)
    return table, roofline.run(table, s.ex, s.eff, bandwidth=s.device.memory_bandwidth,
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
    _, t = _pass(s, batch, seq, seq, 1.0)
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
         "memory_time_s": t.memory, "overhead_time_s": t.overhead, "arithmetic_intensity": t.flops / t.bytes,
         "flops": t.flops, "bottleneck": roofline.bottleneck(t)}
    if isinstance(w, Transformer):
        m["tokens_per_s"] = batch * seq / t.total
    return m, checks


def serve(s: Setup, n: dict) -> tuple[dict, list]:
    """Prefill + decode on one tensor-parallel replica; deployment throughput over its replicas.

    The batch's prompts are prefilled `prefill_batch` at a time (default: all in one pass), in
    ceil(batch / prefill_batch) equal passes; the TTFT is their sum (the last request's first token)
    and the working memory is one pass's activations."""
    w = s.workload
    b, i, o, tp = n["batch"], n["input_len"], n["output_len"], n["tp"]
    # the three phases (one prefill pass, decode at mean context, prefill of one request) run as
    # columns of one pass: [prefill | decode | prefill-one] for each design point
    scalar = np.ndim(b) == 0
    one, i, o, tp = (x + 0.0 * b for x in (1.0, i, o, tp))  # every column shaped like the batch
    passes = np.ceil(b / (b if n["prefill_batch"] is None else n["prefill_batch"]))
    per_pass = b / passes
    tps = _phases(scalar, tp, tp, tp)
    _, t = _pass(s, _phases(scalar, per_pass, b, one), _phases(scalar, i, one, i),
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
    work = per_pass * act_prompt
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
    _, fwd = _pass(s, mb, seq, seq, seq, training_pass=True)
    extra = fwd.total if s.recompute == "full" else 0.0  # full recomputation repeats the forward
    params = s.params
    shard = params / (dp if n["zero"] >= 1 else 1)
    opt = training.optimizer_time(shard, s.device.memory_bandwidth, s.ex.vector_rate, s.eff.memory, s.eff.vector)
    # fp8 training keeps 16-bit weights and gradients and casts per GEMM (NVIDIA Transformer Engine)
    grad_bytes = state_bytes = max(s.ex.act_bytes, 2.0)
    # ZeRO-1/2 reduce-scatter gradients and all-gather weights: the all-reduce volume; ZeRO-3 also
    # gathers the weights again for the backward: 1.5x (Rajbhandari et al. 2020, section 7.2)
    comm = communication.ring_allreduce_time(params * grad_bytes, dp, n["link_bw"], n["link_latency"]) * (
        1.5 if n["zero"] == 3 else 1.0)
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
         "gradient_accumulation_steps": accum}
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
    t_sto = data_pipeline.stage_time(samples, sample_bytes, n["storage_bw"] or np.inf)
    cpu_rate = np.inf if n["cpu_workers"] is None else n["cpu_workers"] * n["worker_bw"]
    t_cpu = data_pipeline.stage_time(samples, sample_bytes, cpu_rate)
    t, util, stall = data_pipeline.pipelined_step(t_compute, t_sto, t_cpu)
    scale = t_compute / t
    m.update({"data_stall_fraction": stall, "accelerator_utilization": util, "storage_time_s": t_sto,
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


def _require(ok, field: str, value, allowed: str) -> None:
    """Raise a UserInputError for the first design point where `ok` is false (row-aware for columns)."""
    if ok is True or ok is np.True_ or (np.ndim(ok) and ok.all()):
        return
    if np.ndim(ok):
        row = int(np.argmin(ok))
        shown = value[row] if np.ndim(value) else value
        raise UserInputError(cfg.option(field), _plain(shown), allowed, hint=f"(row {row})")
    raise UserInputError(cfg.option(field), _plain(value), allowed)


def _anywhere(condition) -> bool:
    return bool(condition.any()) if np.ndim(condition) else bool(condition)


def _plain(v):
    """A number as the user would write it: 4 rather than 4.0 or np.float64(4.0)."""
    if isinstance(v, float | np.floating):
        return int(v) if float(v).is_integer() else float(v)
    return v.item() if isinstance(v, np.generic) else v


def _link(device: Accelerator) -> tuple[float | None, float]:
    """One direction of the device's scale-up link (B/s) and the per-step latency of its fabric."""
    bw = device.get("scale_up_bandwidth")
    latency = 0.0
    for node in registry("nodes"):
        if node.accelerator == device.name:
            fabric = next((f for f in registry("fabrics") if f.name == node.scale_up), None)
            latency = (fabric.get("latency") if fabric else None) or 0.0
            break
    return (bw / 2.0 if bw else None), latency


def numbers(given: dict, s: Setup) -> dict:
    """Validated numeric inputs with defaults and derived degrees; floats or numpy columns."""
    w, mode = s.workload, s.mode
    n = dict(cfg.NUMERIC_DEFAULTS)
    n.update(given)
    if n["seq_len"] is None:
        n["seq_len"] = float(w.seq_len)
    if n["global_batch"] is not None:
        _require(n["global_batch"] == n["batch"] if "batch" in given else True,
                 "global_batch", n["global_batch"], "equal to --batch (in train mode they name the same thing)")
        n["batch"] = n["global_batch"]
    for key in ("pp", "cp", "ep", "vp"):
        _require(n[key] == 1, key, n[key], "1 for now: pipeline, context and expert parallelism "
                 "arrive with the distributed-training model")
    heads = w.heads if isinstance(w, Transformer) else 1
    tp, per_node = n["tp"], n["gpus_per_node"]
    if mode == "serve":
        _require(n["prefill_batch"] is None or n["prefill_batch"] <= n["batch"], "prefill_batch",
                 n["prefill_batch"], f"at most --batch ({_plain(n['batch'])})")
        _require(heads % tp == 0, "tp", tp, f"a divisor of {w.name}'s {heads} attention heads")
        _require(tp <= per_node, "tp", tp, f"at most --gpus-per-node ({_plain(per_node)}): serve TP stays in a node")
        n["gpus"] = tp if n["gpus"] is None else n["gpus"]
        _require(n["gpus"] % tp == 0, "gpus", n["gpus"], f"a multiple of --tp ({_plain(tp)}) in serve mode")
    elif mode == "train":
        _require(tp == 1, "tp", tp, "1 for now: tensor-parallel training arrives with the "
                 "distributed-training model (use --dp inside a node)")
        if n["dp"] is None:
            n["dp"] = 1.0 if n["gpus"] is None else n["gpus"]
        n["gpus"] = n["dp"] if n["gpus"] is None else n["gpus"]
        _require(n["gpus"] == n["dp"], "gpus", n["gpus"], f"equal to --dp ({_plain(n['dp'])}) "
                 "while tp = pp = 1")
        field = "dp" if "dp" in given else "gpus"
        _require(n["dp"] <= per_node, field, n[field], f"at most --gpus-per-node ({_plain(per_node)}): "
                 "training spans one node for now")
        if n["micro_batch"] is None:
            _require(n["batch"] % n["dp"] == 0, "batch", n["batch"], f"a multiple of the data-parallel degree "
                     f"({_plain(n['dp'])}) so every rank gets whole samples")
            n["micro_batch"] = n["batch"] / n["dp"]
        _require(n["batch"] % (n["dp"] * n["micro_batch"]) == 0, "batch", n["batch"],
                 "a multiple of --dp x --micro-batch (whole gradient-accumulation steps)")
    else:
        for key in ("tp", "dp"):
            _require(n[key] is None or n[key] == 1, key, n[key],
                     "1 in infer mode (one device); use --mode serve for tensor-parallel inference")
        n["gpus"] = 1.0 if n["gpus"] is None else n["gpus"]
        _require(n["gpus"] == 1, "gpus", n["gpus"], "1 in infer mode (one device)")
    cfg.check_mode_options(mode, given, isinstance(w, Transformer))
    _require(n["tokens"] is None or isinstance(w, Transformer), "tokens", n["tokens"],
             f"only for token-based (transformer) workloads, not the CNN {w.name!r}")
    n["pipeline"] = n["cpu_workers"] is not None or n["storage_bw"] is not None
    if n["pipeline"]:
        _require(n["sample_bytes"] is not None, "sample_bytes", None,
                 "a value whenever --cpu-workers or --storage-bw is given")
        _require(n["cpu_workers"] is None or n["worker_bw"] is not None, "worker_bw", None,
                 "a value whenever --cpu-workers is given")
    else:
        for key in ("worker_bw", "sample_bytes"):
            _require(n[key] is None, key, n[key], "used only with --cpu-workers or --storage-bw (the input pipeline)")
    link_bw, latency = s.link
    multi = _anywhere(n["tp"] > 1) or (n["dp"] is not None and _anywhere(n["dp"] > 1))
    _require(link_bw is not None or not multi, "tp" if mode == "serve" else "dp", n["tp"] if mode == "serve"
             else n["dp"], f"1: {s.device.name} publishes no scale-up bandwidth to communicate over")
    n["link_bw"], n["link_latency"] = link_bw or np.inf, latency
    return n


def _common(m: dict, checks: list, n: dict, reasons: list) -> dict:
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
            "memory_per_gpu_bytes": per_gpu, "gpus": n["gpus"], **m}


COUNTS = frozenset(("max_batch", "gpus", "cpu_workers_needed", "replicas", "gradient_accumulation_steps",
                    "replicas_needed", "gpus_needed"))
SLO_OPTIONS = frozenset(("qps", "ttft_slo", "itl_slo"))


def _point(kwargs: dict, notes: list | None) -> tuple:
    """Validate and evaluate one design point: (setup, numbers, given options, metrics). Notes on
    queueing and memory are appended to `notes` when a list is passed."""
    cfg.check_keys(kwargs)
    given = {k: v for k, v in kwargs.items() if v is not None}
    w = cfg.resolve_workload(given.get("workload"), given.get("workload_file"))
    dev = cfg.resolve_hardware(given.get("hardware"), given.get("hardware_file"))
    mode, precision, weight_precision, recompute = (
        cfg.check_choice(k, given[k]) if k in given else cfg.DEFAULTS.get(k)
        for k in ("mode", "precision", "weight_precision", "recompute"))
    s = _setup_cached(w, dev, mode, precision, weight_precision, given.get("sparsity"), recompute)
    nums = {k: cfg.check_number(k, v) for k, v in given.items() if k in cfg.NUMERIC}
    n = numbers(nums, s)
    m, checks = MODELS[s.mode](s, n)
    if n["pipeline"]:
        m = with_data_pipeline(m, n, s)
    metrics = _common(m, checks, n, [])
    for key, v in metrics.items():
        if key in COUNTS:
            metrics[key] = int(v)
        elif isinstance(v, np.generic | np.ndarray):  # numpy scalars and 0-d results become Python values
            metrics[key] = v.item()
    if notes is not None and not metrics["feasible"]:
        notes.append("does not fit in memory: time metrics are computed as if it did")
    if notes is not None and n["tp"] > 1 and not any(node.accelerator == s.device.name for node in registry("nodes")):
        notes.append(f"no catalog node joins {s.device.name} GPUs: tensor parallelism uses the device's own "
                     f"scale-up bandwidth; check that its links reach {_plain(n['tp'])} GPUs (bridges join pairs)")
    context = n["input_len"] + n["output_len"] if s.mode == "serve" else n["seq_len"]
    if notes is not None and isinstance(s.workload, Transformer) and context > s.workload.seq_len:
        notes.append(f"{_plain(context)} tokens exceed {s.workload.name}'s context length of {s.workload.seq_len}")
    if s.mode == "serve" and SLO_OPTIONS.intersection(nums):
        _service_levels(metrics, n, notes if notes is not None else [])
    return s, n, given, metrics


def evaluate_point(**kwargs) -> Result:
    """Evaluate one design point with its resolved config and notes (what `dse eval` prints)."""
    notes: list[str] = []
    s, n, given, metrics = _point(kwargs, notes)
    w = s.workload
    shown = {k: _plain(v) for k, v in n.items() if (k in given or k == "gpus" or (
        k == "seq_len" and s.mode != "serve" and isinstance(w, Transformer))) and k in cfg.NUMERIC}
    config = {"workload": w.name, "hardware": s.device.name, "mode": s.mode, "precision": s.precision, **shown}
    return Result(config=config, metrics=metrics, notes=[*s.notes, *notes])


def _service_levels(m: dict, n: dict, notes: list) -> None:
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
        m["ttft_p99_s"] = m["ttft_s"] + serving.wait_quantile(slots, service, per, 0.99)
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


def evaluate(**kwargs) -> dict:
    """Metrics of one design point (DESIGN.md 4.4): ``dse.evaluate(workload=..., hardware=..., ...)``.

    The models are pure functions of the options, so a repeated point (samplers over discrete spaces
    revisit many) is answered from a cache of recent results; each call gets its own copy."""
    try:
        metrics = _cached_metrics(tuple(sorted(kwargs.items())))
    except TypeError:  # an unhashable option value: evaluate (and let validation name it)
        return _point(kwargs, None)[3]
    return {**metrics, "infeasible_reasons": list(metrics["infeasible_reasons"])}


@lru_cache(maxsize=1 << 16)
def _cached_metrics(options: tuple) -> dict:
    return _point(dict(options), None)[3]


_setup_cached = lru_cache(maxsize=4096)(setup)

CATEGORICAL = ("workload", "workload_file", "hardware", "hardware_file", "mode", "precision",
               "weight_precision", "sparsity", "recompute")


def _column(values: pd.Series, key: str) -> np.ndarray:
    """A numeric column as floats (rates and sizes parsed once per distinct text)."""
    if values.dtype.kind in "iuf":
        arr = values.to_numpy(dtype=float)
        spec = cfg.NUMERIC[key]
        _require(spec.ok(arr), key, arr, spec.allowed())
        return arr
    parsed = {}
    out = np.empty(len(values))
    for i, v in enumerate(values):
        try:
            out[i] = parsed[v] if v in parsed else parsed.setdefault(v, cfg.check_number(key, v))
        except UserInputError as exc:
            raise UserInputError(exc.field, exc.value, exc.allowed, hint=f"(row {i})") from None
    return out


CHUNK = 1 << 17  # rows per pass through the models: bounds memory at ~1 GB for 70-operator CNNs


def _groups(frame: pd.DataFrame):
    """Yield (categorical choices, row labels) for each distinct combination in the frame; columns
    that hold one value (or are absent) are not grouped on."""
    fixed = {k: cfg.DEFAULTS.get(k) for k in CATEGORICAL if k not in frame}
    varying = []
    for key in (k for k in CATEGORICAL if k in frame):
        col = frame[key]
        first = col.iloc[0] if len(col) else None
        if col.isna().all() or (not pd.isna(first) and (col == first).all()):
            fixed[key] = None if pd.isna(first) else first
        else:
            varying.append(key)
    if not varying:
        yield fixed, frame.index
        return
    labels = frame[varying].astype(object).where(frame[varying].notna(), None)
    by = varying if len(varying) > 1 else varying[0]  # a one-element list makes pandas warn
    for combo, rows in labels.groupby(by, dropna=False, sort=False).groups.items():
        combo = combo if isinstance(combo, tuple) else (combo,)
        yield {**fixed, **{k: None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                           for k, v in zip(varying, combo, strict=True)}}, rows


@contextmanager
def _at_rows(rows, offset: int = 0):
    """Re-raise a UserInputError whose hint names a position inside a block as a row of the frame."""
    try:
        yield
    except UserInputError as exc:
        hint, position = exc.hint, 0
        if hint.endswith(")") and "(row " in hint:
            hint, _, number = hint.rpartition("(row ")
            position = int(number.rstrip(")"))
        row = int(rows[offset + position])
        raise UserInputError(exc.field, exc.value, exc.allowed, hint=f"{hint.strip()} (row {row})".strip()) from None


def evaluate_many(points: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """Evaluate a frame of design points column-wise; same rows, same order, one column per metric.

    Rows are grouped by their categorical choices (workload, hardware, mode, precision, ...); each
    group's numeric columns go through the models as numpy arrays, in chunks of `CHUNK` rows.
    Metrics equal `evaluate`'s; `infeasible_reasons` is left out.
    """
    given = pd.DataFrame(points)
    if given.empty:
        return pd.DataFrame(index=given.index)
    frame = given.reset_index(drop=True)  # positions; the caller's index is put back at the end
    cfg.check_keys({c: frame[c].dropna().iloc[0] if frame[c].notna().any() else None for c in frame.columns})
    out: list[pd.DataFrame] = []
    for c, rows in _groups(frame):
        with _at_rows(rows):
            w = cfg.resolve_workload(c["workload"], c["workload_file"])
            dev = cfg.resolve_hardware(c["hardware"], c["hardware_file"])
            cats = {k: cfg.check_choice(k, c[k]) if c[k] is not None else cfg.DEFAULTS.get(k) for k in cfg.CHOICES}
            s = _setup_cached(w, dev, cats["mode"], cats["precision"], cats["weight_precision"], c["sparsity"],
                              cats["recompute"])
            sub = frame.loc[rows]
            for k in (k for k in cfg.NUMERIC if k in sub):
                missing = sub[k].isna().to_numpy()
                if missing.any() and not missing.all():
                    raise UserInputError(cfg.option(k), None, "a value on every row that has the same workload, "
                                         "hardware and mode, or on none", hint=f"(row {int(np.argmax(missing))})")
            nums = {k: _column(sub[k], k) for k in cfg.NUMERIC if k in sub and sub[k].notna().all()}
        for start in range(0, len(rows), CHUNK):
            part = {k: v[start:start + CHUNK] for k, v in nums.items()}
            with _at_rows(rows, start):
                n = numbers(part, s)
            out.append(_block(s, n, rows[start:start + CHUNK], bool(SLO_OPTIONS.intersection(nums))))
    result = pd.concat(out).sort_index()
    for key in COUNTS.intersection(result.columns):  # nullable: absent on rows of another mode
        result[key] = result[key].astype("Int64")
    result.index = given.index
    return result


def _block(s: Setup, n: dict, rows, service_levels: bool) -> pd.DataFrame:
    """Metrics of a block of design points that share their categorical choices."""
    m, checks = MODELS[s.mode](s, n)
    if n["pipeline"]:
        m = with_data_pipeline(m, n, s)
    metrics = _common(m, checks, n, [])
    metrics.pop("infeasible_reasons")
    block = pd.DataFrame({k: np.broadcast_to(np.asarray(v), (len(rows),)) for k, v in metrics.items()}, index=rows)
    if service_levels:
        _service_level_rows(block, n, len(rows))
    return block


def _service_level_rows(block: pd.DataFrame, n: dict, size: int) -> None:
    """SLO checks and queueing search, row by row, for frames that give a rate or an SLO."""
    queued = n["qps"] is not None
    for j, idx in enumerate(block.index):
        row = {k: (float(np.broadcast_to(v, (size,))[j]) if v is not None and np.ndim(v) else v)
               for k, v in n.items()}
        m = {k: block.at[idx, k] for k in ("request_latency_s", "replicas", "ttft_s", "itl_s")}
        m.update(feasible=bool(block.at[idx, "feasible"]), infeasible_reasons=[])
        _service_levels(m, row, [])
        block.loc[idx, "feasible"] = m["feasible"]
        for k in ("queue_utilization", "ttft_p50_s", "ttft_p99_s", "replicas_needed", "gpus_needed") if queued else ():
            block.loc[idx, k] = m.get(k, np.nan)
