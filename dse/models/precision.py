"""How a requested precision runs on a device, the way real software would run it.

Bytes per element follow the formats (IEEE 754 binary32/16, bfloat16, OCP FP8 E4M3/E5M2 and MX FP4 E2M1,
two's-complement int8/int4). A precision the device lacks falls back to the nearest wider arithmetic
it has, keeping the narrow storage for weights (weight-only quantization, e.g. W4A16 as in AWQ,
Lin et al. 2024, and fp8 weights on A100 as in Marlin-style kernels, Frantar et al. 2024), and
the fallback is always reported in the notes.
"""
from __future__ import annotations

from dataclasses import dataclass

from dse.catalog.types import Accelerator
from dse.models.calibration import REFERENCE_MATMUL_SHARE

BYTES = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5, "int8": 1.0, "int4": 0.5}
# Stored weights carry their quantization scales: int4 in groups of 128 with a 16-bit scale and zero
# point each, 4 + 32/128 = 4.25 bits (the AWQ/GPTQ default: Lin et al. 2024, section 5.1; Frantar et
# al. 2023); fp4 as NVFP4, an FP8 scale per 16 values, 4 + 8/16 = 4.5 bits (NVIDIA Technical Blog,
# "Introducing NVFP4 for Efficient and Accurate Low-Precision Inference", 2025; MXFP4's E8M0 scale
# per 32 would be 4.25). 8-bit formats keep per-channel or per-tensor scales, negligible per value.
STORED_BYTES = {**BYTES, "int4": 4.25 / 8.0, "fp4": 4.5 / 8.0}

# Wider arithmetic that software uses when the device lacks the requested one, nearest first.
_FALLBACK = {
    "fp32": (),
    "tf32": ("fp32",),
    "bf16": ("fp16", "fp32"),
    "fp16": ("bf16", "fp32"),
    "fp8": ("fp16", "bf16", "fp32"),
    "fp4": ("fp8", "fp16", "bf16", "fp32"),
    "int8": ("fp16", "bf16", "fp32"),
    "int4": ("fp16", "bf16", "int8", "fp32"),
}


@dataclass(frozen=True, slots=True)
class Execution:
    """Arithmetic and storage of one design point on one device.

    Attributes:
        compute: precision the math units run in.
        tensor_rate: dense peak of that precision (FLOP/s).
        vector_rate: rate for element-wise work outside matrix units (vector fp32 or bf16 rate, FLOP/s).
        stored: the weights' storage format (e.g. int4 under fp16 arithmetic).
        weight_bytes: bytes per stored weight element (before sparsity).
        act_bytes: bytes per activation element (the arithmetic's width, fp32 counts 4).
        kv_bytes: bytes per KV-cache element.
        dequant: weights are stored narrower than the arithmetic and expanded in the kernel.
        notes: what was substituted and why.
        tensor_share: the fraction of its peak a GEMM in this arithmetic reaches on this device relative
            to the fraction the class efficiency was fitted at (see `tensor_share`); 1 where unmeasured.
    """

    compute: str
    tensor_rate: float
    vector_rate: float
    stored: str
    weight_bytes: float
    act_bytes: float
    kv_bytes: float
    dequant: bool
    notes: tuple[str, ...]
    tensor_share: float = 1.0


def resolve(device: Accelerator, precision: str, weight_precision: str | None) -> Execution:
    """Pick the arithmetic a device would really use for `precision` and the storage widths.

    Raises:
        ValueError: when `weight_precision` is wider than `precision` or the device has no usable
        arithmetic at all (callers turn this into a UserInputError naming the field).
    """
    notes: list[str] = []
    compute = precision
    if device.peak(precision) is None:
        compute = next((p for p in _FALLBACK[precision] if device.peak(p) is not None), "")
        if not compute:
            raise ValueError(f"a precision {device.name} runs: it publishes rates for "
                             f"{', '.join(device.peaks)} only")
        notes.append(f"{device.name} has no native {precision} arithmetic: computing in {compute}"
                     + (f" with {precision} weights stored and dequantized in the kernel"
                        if BYTES[precision] < BYTES[compute] else ""))
    stored = weight_precision or precision
    if BYTES[stored] > BYTES[precision] or (stored != precision and BYTES[stored] == BYTES[precision]):
        raise ValueError(f"a format narrower than the arithmetic {precision} (weight-only quantization)")
    weight_bytes = STORED_BYTES[stored]
    act_bytes = BYTES[compute]  # activations in the arithmetic's width (integer GEMMs: W8A8, Xiao et al. 2023)
    dequant = weight_bytes < BYTES[compute]
    if weight_precision and weight_bytes < BYTES[compute]:
        notes.append(f"weights stored in {stored} ({weight_bytes:g} B/element), arithmetic in {compute}: "
                     "dequantization adds element-wise work inside each weight GEMM")
    # GPUs and accelerators run element-wise and depthwise work on vector units: the spec's vector fp32
    # rate where the fp32 peak is a matrix figure (AMD CDNA), or the published vector bf16 rate of chips
    # whose matrix engines do nothing else (Gaudi 3's TPCs), else the fp32 peak (NVIDIA CUDA cores);
    # an MCU has one SIMD datapath, which runs all of it at the arithmetic's rate (CMSIS-NN kernels)
    if device.device_class == "mcu":
        vector = device.peak(compute)
    else:
        vector = device.get("vector_fp32") or device.get("vector_bf16") or device.peak("fp32")
        if vector is None:
            vector = device.peak(compute)
            notes.append(f"{device.name} publishes no vector fp32 rate: element-wise work is timed at its "
                         f"{compute} matrix rate, an optimistic bound")
    # KV caches are kept in 8 bits or wider (fp8/int8 KV in TensorRT-LLM and vLLM; no 4-bit caches)
    return Execution(compute=compute, tensor_rate=device.peak(compute), vector_rate=vector, stored=stored,
                     weight_bytes=weight_bytes, act_bytes=act_bytes, kv_bytes=max(act_bytes, 1.0),
                     dequant=dequant, notes=tuple(notes), tensor_share=tensor_share(device, compute))


def tensor_share(device: Accelerator, compute: str) -> float:
    """The fraction of its peak a GEMM in `compute` reaches on this device, relative to the fraction the
    class efficiency `tensor` was fitted at (`calibration.REFERENCE_MATMUL_SHARE`).

    The device's fraction is its measured maximum achievable matmul rate over its peak (catalog
    `achievable_fp8` for fp8, else `achievable_bf16`, the same 16-bit rate serving every matrix
    arithmetic whose own rate is unmeasured; stas00/ml-engineering, "Maximum Achievable Matmul FLOPS":
    e.g. A100 SXM 271.2 of 312 TFLOP/s, 0.869; H100 SXM bf16 794.5 of 989.5, 0.803, fp8 1,402.6 of
    1,979, 0.709; MI300X 668.4 of 1,307.4, 0.511). Clock, power and software limits that differ
    between boards show in these rates, not in the one fitted `tensor`. 1 for fp32 (CUDA cores, no
    matrix tiles) and where the device has no measured rate, which keeps such devices on the fit."""
    if compute == "fp32":
        return 1.0
    rate = device.get("achievable_fp8") if compute == "fp8" else None
    peak = device.peak("fp8") if rate else device.peak("bf16")
    rate = rate or device.get("achievable_bf16")
    if not (rate and peak):
        return 1.0
    return rate / peak / REFERENCE_MATMUL_SHARE
