"""Which compression method a design point applies, named as the accuracy literature names it.

Speed and memory effects of compression live where they act: narrower bytes in `precision`,
dequantization work and sparse rates in `roofline`. Accuracy is not modelled; `method` only selects
which cited ranges (catalog `compression.toml`) to show beside the numbers.
"""
from __future__ import annotations

from dse.models.precision import BYTES, Execution


def methods(ex: Execution, structured: bool, zero_fraction: float) -> list[str]:
    """Method names (as in compression.toml) that describe this point's quantization and sparsity."""
    out = []
    if ex.weight_bytes < BYTES[ex.compute]:
        out.append(f"weight-only {ex.stored}")
    elif ex.compute in ("int8", "int4"):
        out.append(f"w{BYTES[ex.compute] * 8:.0f}a{BYTES[ex.compute] * 8:.0f} {ex.compute}")
    elif ex.compute in ("fp8", "fp4"):
        out.append(ex.compute)
    if structured:
        out.append("2:4 sparsity")
    elif zero_fraction > 0:
        out.append(f"unstructured {zero_fraction:.0%} sparsity")
    return out
