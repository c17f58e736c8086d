"""Operator-level roofline with size-dependent efficiency and per-kernel launch overhead.

For each operator i of a pass (Williams, Waterman & Patterson 2009, "Roofline: an insightful visual
performance model", CACM 52(4)):

    t_i = max(t_compute_i, t_memory_i) + kernels_i * t_launch

    t_compute_i = F_tensor_i / (R_tensor * eta_tensor * s_p * M_i / (M_i + M_half))
                + F_vector_i / (R_vector * eta_vector)
    t_memory_i  = bytes_i / (BW * eta_memory)

The tensor term applies Hockney's half-performance model (Hockney & Jesshope 1988, "Parallel
Computers 2", section 1.3.3) to a GEMM's row count M (tokens, or query rows for attention): matrix
units work on fixed tiles, so a GEMM of few rows wastes most of each tile (tile quantization, NVIDIA
"Matrix Multiplication Background User's Guide") and reaches eta_tensor * M / (M + M_half) of peak.
`M_half`, the etas and `t_launch` are set per device class (see `dse.models.calibration`), never
per measurement row. s_p (`Execution.tensor_share`) carries what a device's measured matmul rate says
of its fraction of peak against the class's reference boards (H100 SXM bf16 0.96, A100 SXM 1.04,
H100 fp8 0.85; `dse.models.precision.tensor_share`).

Arrays: every table field has shape (ops,) for one design point or (ops, points) for a population;
the reductions sum over axis 0, so one function serves both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.models.calibration import Efficiency
from dse.models.precision import Execution


@dataclass(frozen=True, slots=True)
class OpTable:
    """The operators of one pass. Per-instance values; `repeat` instances of each (e.g. layers).

    Attributes:
        names: operator names, shape (ops,).
        repeat: instances of each operator in the pass (layers, or 1), shape (ops,).
        weights: weight elements read per instance (0 for weight-free operators); (ops,), (ops, 1)
            or (ops, points).
        flops_tensor: FLOP per instance on matrix units (GEMMs, convolutions, attention matmuls).
        rows: rows M of each matrix operation (GEMM M dimension), 1 for operators without matrix work.
        flops_vector: FLOP per instance on vector units (norms, softmax, activations, depthwise conv).
        act_bytes: activation / KV bytes moved per instance (weights are added from `weights`).
        kernels: kernel launches per instance.
        kv_bytes: the part of act_bytes that is K/V (projection outputs and the cache read), which
            tensor parallelism splits only as far as the KV heads; 0 where not given.
    """

    names: tuple[str, ...]
    repeat: np.ndarray
    weights: np.ndarray
    flops_tensor: np.ndarray
    rows: np.ndarray
    flops_vector: np.ndarray
    act_bytes: np.ndarray
    kernels: np.ndarray
    kv_bytes: object = 0.0


@dataclass(frozen=True, slots=True)
class Timing:
    """Roofline result of a pass; every field is a float or an array over design points."""

    total: object
    compute: object
    memory: object
    overhead: object
    compute_bound: object
    memory_bound: object
    flops: object
    bytes: object


def weight_bytes_per_element(ex: Execution, sparsity_24: bool, zero_fraction: float) -> float:
    """Stored bytes per weight element after structured or unstructured sparsity.

    2:4 keeps 2 of every 4 values plus a 2-bit index per kept value, i.e. 1 bit per original element
    (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks", section 3). A fraction f of zeros
    stored as values plus a 1-bit mask costs (1 - f) * b + 1/8 bytes when that is smaller than dense
    (bitmap formats such as Flash-LLM, Xia et al. 2023).
    """
    b = ex.weight_bytes
    if sparsity_24:
        return 0.5 * b + 1.0 / 8.0
    if zero_fraction > 0:
        return min(b, (1.0 - zero_fraction) * b + 1.0 / 8.0)
    return b


def run(table: OpTable, ex: Execution, eff: Efficiency, *, bandwidth: float, weight_bytes: float,
        tensor_speedup: float = 1.0) -> Timing:
    """Time a pass on one device. `tensor_speedup` multiplies the matrix rate of weight GEMMs (2 for
    2:4 sparse tensor cores); dequantization adds 2 vector FLOP per weight element (convert and scale,
    as fused weight-only kernels do: Lin et al. 2024, AWQ, section 4; Frantar et al. 2024, MARLIN)
    inside the GEMM, where it competes with the arithmetic but overlaps the memory traffic.

    Sums over operators are ``repeat @ x``, which reduces (ops,) to a number and (ops, points) to a
    column in one call."""
    w = table.weights
    ft = table.flops_tensor
    fv = table.flops_vector + 2.0 * w if ex.dequant else table.flops_vector
    inv_tensor = 1.0 / (ex.tensor_rate * eff.tensor * ex.tensor_share)
    if tensor_speedup != 1.0:
        inv_tensor = inv_tensor / np.where(w > 0, tensor_speedup, 1.0)
    t_c = ft * (1.0 + tile_rows_half(ex, eff) / table.rows) * inv_tensor + fv * (1.0 / (ex.vector_rate * eff.vector))
    nbytes = w * weight_bytes + table.act_bytes
    t_m = nbytes * (1.0 / (eff.memory * bandwidth))
    rep = table.repeat
    slowest = np.maximum(t_c, t_m)
    on_compute = slowest * (t_c >= t_m)
    overhead = float(rep @ table.kernels) * eff.launch
    total = rep @ slowest
    bound_c = rep @ on_compute
    return Timing(total=total + overhead, compute=rep @ t_c, memory=rep @ t_m, overhead=overhead + 0.0 * total,
                  compute_bound=bound_c, memory_bound=total - bound_c, flops=rep @ (ft + fv), bytes=rep @ nbytes)


def tile_rows_half(ex: Execution, eff: Efficiency) -> float:
    """The rows M_1/2 of the tile-efficiency penalty, which belongs to tensor-core GEMMs: fp32 runs on
    CUDA cores without matrix tiles (a GEMV there is memory-bound), and weight-only kernels tile for
    small M (MARLIN reaches near the ideal 3.9x over fp16 at batch 1-16: Frantar et al. 2024, "MARLIN:
    Mixed-Precision Auto-Regressive Parallel Inference on Large Language Models", Fig. 1)."""
    return 0.0 if ex.compute == "fp32" or ex.dequant else eff.rows_half


BOTTLENECKS = np.array(["compute", "memory", "overhead"], dtype=object)


def bottleneck(timing: Timing) -> object:
    """Label the largest share of a pass's time: 'compute', 'memory' or 'overhead' (kernel launches);
    for a population, a column of Python strings."""
    c, m, o = timing.compute_bound, timing.memory_bound, timing.overhead
    if np.ndim(c) == 0:
        return "compute" if c >= m and c >= o else ("memory" if m >= o else "overhead")
    return BOTTLENECKS[np.where((c >= m) & (c >= o), 0, np.where(m >= o, 1, 2))]
