"""Unit parsing at the boundaries (catalog files, CLI input). Inside `dse.models` all values are SI floats.

FLOP and OP (integer operations) are counted as dimensionless quantities of their own kind so that
"TFLOP/s" and "TOP/s" both parse to operations per second; USD is a currency dimension.
"""
from __future__ import annotations

import math
from functools import lru_cache

import pint

ureg = pint.UnitRegistry()
ureg.define("FLOP = [operation]")
ureg.define("OP = FLOP")
ureg.define("USD = [currency]")

_BYTE_UNITS = {"B": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2.0**10,
               "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40}
_BIT_UNITS = {"b": 1.0, "kb": 1e3, "Kb": 1e3, "Mb": 1e6, "Gb": 1e9, "Tb": 1e12}


def _bytes_factor(unit: str) -> float | None:
    """Bytes (or bytes/s) per unit for memory sizes and rates; pint's 'B' means bel, so bytes are ours."""
    base, _, per = unit.partition("/")
    base = base.strip()
    if per and per.strip() != "s":
        return None
    if base in _BYTE_UNITS:
        return _BYTE_UNITS[base]
    if base in _BIT_UNITS:
        return _BIT_UNITS[base] / 8.0
    return None


def _per_bytes(unit: str) -> tuple[str, float] | None:
    """(numerator, bytes per unit) for a quantity per byte unit such as kg/GB; pint would count bits."""
    num, sep, den = unit.rpartition("/")
    if sep and num.strip() and den.strip() in _BYTE_UNITS and _bytes_factor(num) is None:
        return num.strip(), _BYTE_UNITS[den.strip()]
    return None


@lru_cache(maxsize=512)
def si_factor(unit: str) -> float:
    """Multiplier that converts a value in `unit` to SI base units (bytes and bytes/s for memory).

    Other units go through pint's base units (m, kg, s, FLOP, USD), so g/kWh becomes kg/J.
    Raises ValueError for a unit that is neither a byte unit nor parsed by pint.
    """
    factor = _bytes_factor(unit)
    if factor is not None:
        return factor
    if unit.strip() in ("", "1"):
        return 1.0
    per = _per_bytes(unit)
    if per is not None:
        return si_factor(per[0]) / per[1]
    try:
        return float(ureg.Quantity(1.0, unit).to_base_units().magnitude)
    except (pint.errors.PintError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"unsupported unit {unit!r}: {exc}") from None


@lru_cache(maxsize=512)
def dimension(unit: str) -> str:
    """What a unit measures: "bytes", "bytes/s", or pint's dimensionality of its base units."""
    factor = _bytes_factor(unit)
    if factor is not None:
        return "bytes/s" if "/" in unit else "bytes"
    if unit.strip() in ("", "1"):
        return "dimensionless"
    per = _per_bytes(unit)
    if per is not None:
        return f"{dimension(per[0])} per byte"
    return str(ureg.Quantity(1.0, unit).to_base_units().dimensionality)


def parse_quantity(text: str | float | int, default_unit: str, field: str, kind: str) -> float:
    """Parse user text such as ``250MB/s`` or ``3e9`` into an SI float; raises UserInputError.

    Args:
        text: a number (taken in `default_unit`) or a number with a unit.
        default_unit: the unit of a bare number.
        field: the option name for the error message.
        kind: "bytes" or "bytes/s" (what dimension is allowed), used in the message.
    """
    from dse.errors import UserInputError

    s = str(text).strip().replace(" ", "")
    number, unit = s, default_unit
    for i in range(len(s), 0, -1):
        try:
            number = float(s[:i])
            unit = s[i:] or default_unit
            break
        except ValueError:
            continue
    else:
        raise UserInputError(field, text, f"a number with a {kind} unit, e.g. 250MB/s")
    factor = _bytes_factor(unit)
    wants_rate = kind.endswith("/s")
    if factor is None or ("/" in unit) != wants_rate:
        raise UserInputError(field, text, f"a number with a {kind} unit such as "
                             f"{'250MB/s or 2GB/s' if wants_rate else '500kB or 150KiB'}")
    value = number * factor
    if not (value > 0 and math.isfinite(value)):
        raise UserInputError(field, text, "a positive, finite amount")
    return value


def format_bytes(n: float) -> str:
    """A byte count for people: GB, MB or kB (decimal)."""
    for factor, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"
