"""What every mode shares: a design point's categorical choices resolved against the catalog (its
`Setup`), the roofline of one forward pass, phase stacking for columns, the scale-up link, and the
memory feasibility every mode reports."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dse import config as cfg
from dse.catalog import CNN, Accelerator, Transformer, Workload, accuracy_ranges, links, node_for, registry
from dse.errors import UserInputError
from dse.models import calibration, cnn, compression, roofline, transformer
from dse.models.precision import BYTES, Execution, resolve
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
    link: tuple[float | None, float, float]
    params: float


def setup(workload: Workload, device: Accelerator, mode: str, precision: str, weight_precision: str | None,
          sparsity: object, recompute: str) -> Setup:
    """Resolve precision, sparsity and efficiency for one (workload, device, mode) combination."""
    try:
        ex = resolve(device, precision, weight_precision)
    except ValueError as exc:
        raise UserInputError("--weight-precision" if weight_precision else "--precision",
                             weight_precision or precision, str(exc)) from None
    if isinstance(workload, Transformer) and ex.act_bytes < 2.0 and mode != "train":  # train: per Transformer Engine
        # 8-bit transformer inference (FP8 and W8A8, e.g. SmoothQuant, Xiao et al. 2023, section 4;
        # TensorRT-LLM's and vLLM's fp8 schemes) quantizes each GEMM's input inside the kernel: the residual
        # stream, norms, attention's Q/O, the activations between layers and the TP all-reduces stay 16-bit;
        # the KV cache keeps the 8-bit storage it was given
        ex = dataclasses.replace(ex, act_bytes=2.0)
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
        raise UserInputError("--precision", precision, f"a precision {device.name} computes in natively, e.g. "
                             f"{ex.compute}, for training: it has no native {precision}, and training does not "
                             "store weights narrower than its arithmetic")
    if mode == "train" and precision == "fp8":
        notes.append("fp8 training keeps 16-bit weights and gradients and casts them per GEMM (Transformer Engine)")
    if mode == "serve" and ex.kv_bytes < 2:
        notes.append(f"KV cache stored in {ex.compute} ({ex.kv_bytes:g} B/element)")
    if recompute == "selective" and getattr(workload, "attention", "") == "flash":
        notes.append("selective recomputation (of the attention core) is what FlashAttention does by "
                     "construction: same memory and time as none")
    if recompute != "none" and not isinstance(workload, Transformer):
        raise UserInputError("--recompute", recompute, f"none for the CNN {workload.name!r}: activation "
                             "recomputation is modelled for transformers")
    if mode == "serve" and not (isinstance(workload, Transformer) and workload.causal):
        raise UserInputError("--mode", mode, f"infer or train for {workload.name!r}: serve models the prefill "
                             "and token-by-token decode of a causal (decoder) language model")
    eff = calibration.for_device(device.device_class, device.vendor)
    if not eff.calibrated:
        notes.append(f"uncalibrated: {device.name} efficiency ({eff.basis})")
    family = "llm" if isinstance(workload, Transformer) and workload.causal else (
        "cnn" if isinstance(workload, CNN) else "encoder")
    for method in compression.methods(ex, structured, zeros):
        cited = [r.describe() for r in accuracy_ranges() if r.method == method and r.family == family]
        notes += cited or [f"{method} on {family}s: no published accuracy range in the catalog"]
    wb = roofline.weight_bytes_per_element(ex, structured, zeros)
    return Setup(workload, device, mode, precision, ex, eff, wb, speedup,
                 recompute, tuple(notes), scale_up_link(device),
                 cnn.parameters(workload) if isinstance(workload, CNN) else transformer.parameters(workload))


def forward_pass(s: Setup, batch, q_len, kv_len, logit_tokens, training_pass: bool = False, tp=1,
                 kv_streams=1.0) -> roofline.Timing:
    """Roofline timing of one forward pass of the workload (per GPU under tensor parallelism); the
    attention streams each KV head's cache `kv_streams` times (`transformer.decode_kv_streams`)."""
    w = s.workload
    if isinstance(w, CNN):
        table = cnn.pass_ops(w, batch, s.ex.act_bytes, training_pass)
    else:
        table = transformer.pass_ops(w, batch, q_len, kv_len, logit_tokens, s.ex.act_bytes, s.ex.kv_bytes,
                                     kv_streams=kv_streams)
        if np.any(tp > 1):
            table = transformer.shard(table, tp, w)
    return run_pass(s, table)


GEMMS = ("qkv_proj", "out_proj", "mlp", "router", "shared_mlp", "dense_mlp")  # a layer's weight GEMMs
ELEMENTWISE = ("activation", "norms", "residual")


@lru_cache(maxsize=64)
def sixteen_bit(device: Accelerator) -> Execution:
    """The 16-bit arithmetic 8-bit (and narrower) GEMM schemes keep outside the layer GEMMs (bf16, or
    fp16 where the device has no bf16)."""
    return resolve(device, "bf16", None)


@lru_cache(maxsize=256)
def _pick(all_names: tuple[str, ...], names: tuple[str, ...], invert: bool) -> np.ndarray:
    return np.flatnonzero([(name in names) != invert for name in all_names])


def time_ops(table: roofline.OpTable, names, s: Setup, ex: Execution, invert: bool = False, *,
             eff: calibration.Efficiency | None = None, weight_bytes: float | None = None,
             tensor_speedup: float = 1.0) -> roofline.Timing:
    """Roofline of the operators named (or, with `invert`, of all others) in a pass, in `ex`; weights
    in `weight_bytes` per element (by default at least 16 bits) and the class efficiency `eff`
    (by default the setup's)."""
    pick = _pick(table.names, names, invert)
    sub = dataclasses.replace(table, names=tuple(table.names[i] for i in pick),
                              **{f: getattr(table, f)[pick] for f in ("repeat", "weights", "flops_tensor", "rows",
                                                                       "flops_vector", "act_bytes", "kernels")})
    return roofline.run(sub, ex, s.eff if eff is None else eff, bandwidth=s.device.memory_bandwidth,
                        weight_bytes=max(s.weight_bytes, 2.0) if weight_bytes is None else weight_bytes,
                        tensor_speedup=tensor_speedup)


def narrow_gemms(s: Setup) -> bool:
    """Transformer inference whose arithmetic is narrower than 16 bits (fp8, int8 W8A8, fp4)."""
    return isinstance(s.workload, Transformer) and s.mode != "train" and BYTES.get(s.ex.compute, 2.0) < 2.0


def run_pass(s: Setup, table: roofline.OpTable, eff: calibration.Efficiency | None = None) -> roofline.Timing:
    """Roofline of an inference pass's operators. FP8 / W8A8 / FP4 schemes quantize the inputs of the
    layers' linear GEMMs only: attention (QK^T, softmax, PV), element-wise work and the LM head run in
    16 bits, and the embedding and head are stored in 16 bits. vLLM's fp8 method quantizes `LinearBase`
    layers (and the KV cache through `Attention`), not the `ParallelLMHead`/`VocabParallelEmbedding`
    (vllm/model_executor/layers/quantization/fp8.py, `Fp8Config.get_quant_method`, docs.vllm.ai API
    reference); fp8 checkpoints keep the head out: LLM Compressor recipes `targets: [Linear]`,
    `ignore: [lm_head]` (huggingface.co/neuralmagic/Llama-3.2-1B-FP8, recipe.yaml) and NVIDIA ModelOpt
    exports `"exclude_modules": ["lm_head"]` (hf_quant_config.json). An fp8 attention kernel
    (TensorRT-LLM `use_fp8_context_fmha`) is opt-in and not modelled. Fp8 training splits the pass the
    same way (dse.modes.train)."""
    eff = s.eff if eff is None else eff
    if not narrow_gemms(s):
        return roofline.run(table, s.ex, eff, bandwidth=s.device.memory_bandwidth, weight_bytes=s.weight_bytes,
                            tensor_speedup=s.tensor_speedup)
    gemm = time_ops(table, GEMMS, s, s.ex, eff=eff, weight_bytes=s.weight_bytes, tensor_speedup=s.tensor_speedup)
    rest = time_ops(table, GEMMS, s, sixteen_bit(s.device), invert=True, eff=eff, weight_bytes=2.0)
    return roofline.Timing(**{f: getattr(gemm, f) + getattr(rest, f) for f in roofline.Timing.__slots__})


def model_weight_bytes(s: Setup) -> float:
    """Bytes of the whole model's weights as stored: under 8-bit (or narrower) GEMMs the embedding and
    LM head stay 16-bit (see `run_pass`)."""
    total = s.params * s.weight_bytes
    if not narrow_gemms(s):
        return total
    outside = s.params - s.workload.layers * transformer.layer_weights(s.workload)  # embedding, head, final norm
    return total + outside * (2.0 - s.weight_bytes)


def stack_phases(scalar: bool, *columns):
    """Stack per-phase values of every design point into one column: a single point gives (phases,),
    a population of N gives (phases * N,). Columns of a population share the batch's shape."""
    return np.array(columns, dtype=float) if scalar else np.concatenate(columns)


def split_phases(x, parts: int, scalar: bool):
    """Undo `_phases` on a result: row k holds phase k (a number for one point, a column otherwise)."""
    rows = x.reshape(parts, -1)
    return rows[:, 0] if scalar else rows


def phase_timing(t: roofline.Timing, k: int, parts: int, scalar: bool) -> roofline.Timing:
    """Phase `k` of a Timing computed over `_phases` columns (without per-operator detail)."""
    return roofline.Timing(**{f: split_phases(getattr(t, f), parts, scalar)[k] for f in roofline.Timing.__slots__})


def memory_reason(parts: list[tuple[str, float]], capacity: float, where: str) -> str:
    total = sum(v for _, v in parts)
    shown = [f"{name} {format_bytes(v)}" for name, v in parts if v > 0]
    total_text = "" if len(shown) == 1 else f" = {format_bytes(total)}"
    return f"{' + '.join(shown)}{total_text} > {format_bytes(capacity)} {where}"


def relabel(condition, label: str, otherwise):
    """`label` where `condition` holds, else the previous bottleneck label (scalar or column)."""
    picked = np.where(condition, label, np.asarray(otherwise, dtype=object))  # Python strings, as `bottleneck`
    return str(picked) if picked.ndim == 0 else picked


def scale_up_link(device: Accelerator) -> tuple[float | None, float, float]:
    """One direction of the scale-up link between the device's GPUs (B/s) for the largest group its
    links join (`tp_link`: the whole server, or one bridge where nothing joins the bridges), the per-step
    latency of that fabric and its fixed cost per collective (s; fabrics.toml `latency` and
    `base_latency`, 0 where unpublished): from the catalog node built from the device, else from its
    entry in links.toml (PCIe through the host, NVLink bridges, point-to-point meshes, ICI, with that
    link's collective latency), else, for a user's own chip, its scale_up_bandwidth as a switched fabric
    without latency; (None, 0, 0) when nothing says how its accelerators connect, so that parallelism is
    refused, not guessed."""
    fabric = _scale_up_fabric(device)
    if fabric is not None:
        bw = device.get("scale_up_bandwidth") or fabric.get("bandwidth")
        return bw / 2.0, fabric.get("latency") or 0.0, fabric.get("base_latency") or 0.0
    bw, latency, _ = tp_link(device, None)
    link = link_entry(device)
    return (None if bw is None else float(bw)), float(latency), link.base_latency if link else 0.0


def link_entry(device: Accelerator):
    """The links.toml entry of a catalog accelerator, or None (a user's file, whatever its name)."""
    return links().get(device.name) if any(d is device for d in registry("hardware")) else None


def _scale_up_fabric(device: Accelerator):
    """The fabrics.toml entry of the scale-up link of the catalog node built from the device, or None."""
    node = node_for(device)
    return next((f for f in registry("fabrics") if node and f.name == node.scale_up), None)


def engine_allreduce(device: Accelerator, graphs: bool = True) -> tuple[float, float]:
    """(fixed cost s, peer-read rate B/s) of one serving engine's custom all-reduce on the device's
    scale-up fabric, inside CUDA graphs or, `graphs` False, launched eagerly (fabrics.toml
    `engine_allreduce_base` / `engine_allreduce_base_eager`, `engine_allreduce_bandwidth`); (0, 0)
    where they are not measured: there the engine's all-reduce is modelled as NCCL's."""
    fabric = _scale_up_fabric(device)
    base = fabric and fabric.get("engine_allreduce_base" if graphs else "engine_allreduce_base_eager")
    if not base or not fabric.get("engine_allreduce_bandwidth"):
        return 0.0, 0.0
    return base, fabric.get("engine_allreduce_bandwidth")


def tp_link(device: Accelerator, tp) -> tuple[object, float, int | None]:
    """(bandwidth per direction per rank for a tensor-parallel group of `tp`, latency per step, the
    largest group) for devices described in links.toml or by their own scale_up_bandwidth; `tp` None
    means the largest group. (None, 0, None) when neither says how the device connects. A mesh gives a
    group of n its n - 1 peer links, (n - 1) x peer bandwidth (AMD MI300X platform: 64 GB/s per
    direction per pair); a bridge its NVLink within the bridge and PCIe through the host beyond, and
    where the catalog has no host link nothing joins the bridges: the largest group is one bridge and a
    larger one gets None, never a bandwidth; "rings" the slowest hop of the ring a group forms, from the
    link's table by group size, a group between two listed sizes taking the larger's (the ring
    all-reduce's beta is set by its slowest link, Patarasuk & Yuan 2009; MI250X: 4 in-package links for
    a GCD pair, 1 inter-package link beyond).
    The latency per step is the link's (links.toml header; a bridge's NVLink figure within the bridge,
    PCIe's beyond it, as NCCL's tuning.cc picks by the ring's links); 0 for a user's own chip."""
    link = link_entry(device)
    up, host = device.get("scale_up_bandwidth"), device.get("host_link_bandwidth")
    if link is None:
        return (None, 0.0, None) if up is None or node_for(device) else (up / 2.0, 0.0, None)
    # ICI ("torus") spans hosts: its `gpus` is chips per host, no bound on a group (largest None)
    largest = None if link.topology == "torus" else link.bridge if link.topology == "bridge" and not host else link.gpus
    group = largest if tp is None else tp
    if link.topology == "mesh":
        return (group - 1.0) * link.peer_bandwidth, link.latency, largest
    if link.topology == "rings":
        sizes, per_direction = np.array(link.ring_bandwidth).T
        at = np.minimum(np.searchsorted(sizes, group), len(sizes) - 1)  # past the server: refused by `largest`
        return per_direction[at], link.latency, largest
    if link.topology == "pcie":
        return host / 2.0, link.latency, largest
    if link.topology == "bridge" and not host:
        within = up / 2.0 + 0.0 * group, link.bridge_latency + 0.0 * group
        return (None, 0.0, largest) if np.any(group > link.bridge) else (*within, largest)
    if link.topology == "bridge":
        within = group <= link.bridge
        return np.where(within, up / 2.0, host / 2.0), np.where(within, link.bridge_latency, link.latency), largest
    return up / 2.0, link.latency, largest


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
            reasons.append(memory_reason(parts, capacity, where))
    return {"feasible": feasible, "infeasible_reasons": reasons, "bottleneck": m.pop("bottleneck"),
            "compute_precision": compute,
            "memory_per_gpu_bytes": per_gpu, "gpus": n["gpus"], **m}


def scale_out_link(device: Accelerator) -> tuple[float | None, float, int]:
    """Each GPU's share of its node's scale-out NICs (one direction, B/s: nics x port rate / GPUs per
    node), the fabric's latency (0 where unpublished) and the node's GPU count, from the catalog node
    built from the device; (None, 0, 8) when no node names a scale-out fabric and its NICs."""
    node = node_for(device)
    fabric = next((f for f in registry("fabrics") if node and f.name == node.scale_out), None)
    if fabric is None or not node.nics or fabric.get("bandwidth") is None:
        return None, 0.0, node.accelerators if node else 8
    return node.nics * fabric.get("bandwidth") / node.accelerators, fabric.get("latency") or 0.0, node.accelerators
