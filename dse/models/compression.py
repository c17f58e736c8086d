"""Which compression method a design point applies, named as the accuracy literature names it.

Speed and memory effects of compression live where they act: narrower bytes in `precision`,
dequantization work and sparse rates in `roofline`. Accuracy is not modelled; `method` only selects
which cited ranges (catalog `compression.toml`) to show beside the numbers.
"""
from __future__ import annotations

from dse.models.precision import BYTES, Execution


def methods(precision: str, ex: Execution, structured: bool, zero_fraction: float) -> list[str]:
    """Method names (as in compression.toml) that describe this point's quantization and sparsity."""
    out = []
    if ex.weight_bytes < BYTES[ex.compute] or (ex.compute in ("fp16", "bf16", "fp32") and ex.weight_bytes < 2):
        out.append("weight-only int4" if ex.weight_bytes <= 0.5 else "weight-only int8")
    elif ex.compute == "int8":
        out.append("w8a8 int8")
    elif ex.compute == "fp8" or precision == "fp8":
        out.append("fp8")
    if structured:
        out.append("2:4 sparsity")
    elif zero_fraction >= 0.4:
        out.append("unstructured 50% sparsity")
    return out
