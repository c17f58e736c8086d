"""Load catalog TOML files (shipped in `dse/catalog/data/` or given by the user) into frozen definitions.

Every quantity is an inline table ``{ value, unit, source, date }`` with optional ``low``, ``high`` and
``note``. Shipped files must carry source and date on every number; user files may omit them and are
then labelled as user-supplied.
"""
from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Generic, TypeVar

from dse.catalog.types import (
    CNN,
    PRECISIONS,
    Accelerator,
    AccuracyRange,
    Fabric,
    Node,
    Quantity,
    Region,
    Transformer,
)
from dse.errors import CatalogFileError, UnknownNameError
from dse.units import dimension, si_factor

T = TypeVar("T")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
DEVICE_CLASSES = ("datacenter-gpu", "datacenter-accel", "edge-gpu", "mcu")

# The unit each known quantity field is measured in (any unit of the same dimension is accepted).
UNITS = {
    "peak": "TFLOP/s", "memory_capacity": "GB", "memory_visible": "GB", "memory_bandwidth": "GB/s", "sram": "MB",
    "flash": "MB", "sram_bandwidth": "GB/s", "tdp": "W", "idle_power": "W", "scale_up_bandwidth": "GB/s",
    "scale_out_bandwidth": "GB/s", "host_link_bandwidth": "GB/s", "purchase_price": "USD",
    "rent_on_demand": "USD/h", "rent_reserved": "USD/h", "rent_gpu_cloud": "USD/h", "die_area": "mm^2",
    "embodied_carbon": "kg", "clock": "MHz", "vector_fp32": "TFLOP/s", "vector_bf16": "TFLOP/s",
    "achievable_bf16": "TFLOP/s",
    "achievable_fp8": "TFLOP/s", "grid_intensity": "g/kWh", "pue": "",
    "wue": "L/kWh", "water_offsite": "L/kWh",
    "electricity_price": "USD/kWh", "bandwidth": "GB/s", "latency": "us", "base_latency": "us", "system_power": "kW",
    "host_power": "kW", "engine_allreduce_base": "us", "engine_allreduce_base_eager": "us",
    "engine_allreduce_bandwidth": "GB/s",
    # economics.toml [assumptions]
    "hardware_life": "year", "maintenance_rate": "1/year", "facility_cost": "USD/kW/month",
    "network_capex_fraction": "", "storage_capex_fraction": "", "host_load_fraction": "", "idle_power_fraction": "",
    "gpu_failure_rate": "1/h", "node_failure_rate": "1/h", "restart_time": "min", "checkpoint_bandwidth": "GB/s",
    "embodied_per_die_area": "kg/cm^2", "embodied_per_memory_gb": "kg/GB", "embodied_packaging": "kg",
}
FIELDS = {
    "accelerator": {"name", "aliases", "display", "vendor", "class", "year", "sparsity_2_4", "note", "peak", "spec"},
    "spec": {"memory_capacity", "memory_bandwidth", "sram", "flash", "sram_bandwidth", "tdp", "idle_power",
             "scale_up_bandwidth", "scale_out_bandwidth", "host_link_bandwidth", "purchase_price", "rent_on_demand",
             "rent_reserved", "rent_gpu_cloud", "embodied_carbon", "die_area", "clock", "vector_fp32", "memory_visible",
             "achievable_bf16", "achievable_fp8", "vector_bf16"},
    "economics": {"hardware_life", "maintenance_rate", "facility_cost", "network_capex_fraction",
                  "storage_capex_fraction", "host_load_fraction", "idle_power_fraction", "gpu_failure_rate",
                  "node_failure_rate", "restart_time", "checkpoint_bandwidth", "embodied_per_die_area",
                  "embodied_per_memory_gb", "embodied_packaging"},
    "transformer": {"name", "aliases", "display", "family", "layers", "hidden", "heads", "kv_heads", "vocab", "ffn",
                    "ffn_hidden", "seq_len", "experts", "top_k", "tied_embeddings", "causal", "patch", "image",
                    "channels", "source", "date", "note", "attention", "head_dim", "q_lora_rank", "kv_lora_rank",
                    "qk_rope_head_dim", "shared_experts", "moe_ffn_hidden", "dense_layers", "parallel_block"},
    "cnn": {"name", "aliases", "display", "family", "input", "layers", "source", "date", "note"},
}


def _known_fields(raw: Mapping, kind: str, where: str) -> None:
    """Refuse a misspelt field (e.g. kv_head for kv_heads) instead of silently ignoring it."""
    for key in raw:
        if key not in FIELDS[kind]:
            raise UnknownNameError(f"{where}.{key}", key, FIELDS[kind])


class Registry(Generic[T]):
    """Named definitions of one kind, looked up by name or alias (case-insensitive)."""

    def __init__(self, kind: str, items: list[T]) -> None:
        self.kind = kind
        self.items = items
        self._by_name: dict[str, T] = {}
        for item in items:
            for key in (item.name, *item.aliases):  # type: ignore[attr-defined]
                self._by_name[key.lower()] = item

    def get(self, name: str, field: str) -> T:
        item = self._by_name.get(str(name).lower())
        if item is None:
            raise UnknownNameError(field, name, self._by_name, where=f"dse catalog {self.kind}")
        return item

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def quantity(raw: object, where: str, strict: bool, unit_like: str | None = None) -> Quantity:
    """Parse one ``{value, unit, source, date}`` table; `where` names the field for error messages and
    `unit_like` (e.g. "GB/s") the dimension the unit must have."""
    if not isinstance(raw, Mapping):
        raise CatalogFileError(where, raw, "an inline table { value = ..., unit = \"...\", source, date }")
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise CatalogFileError(f"{where}.value", value, "a finite non-negative number")
    unit = raw.get("unit")
    if not isinstance(unit, str):
        raise CatalogFileError(f"{where}.unit", unit, "a unit string such as \"TB/s\" or \"GiB\"")
    try:
        factor = si_factor(unit)
    except ValueError:
        raise CatalogFileError(f"{where}.unit", unit, "a unit pint understands, e.g. TFLOP/s, GiB, W") from None
    if unit_like is not None and dimension(unit) != dimension(unit_like):
        raise CatalogFileError(f"{where}.unit", unit, f"a unit of the same kind as {unit_like or 'a plain ratio'}")
    source, date = raw.get("source", ""), str(raw.get("date", ""))
    if strict and not (isinstance(source, str) and source.strip()):
        raise CatalogFileError(f"{where}.source", source, "a non-empty citation")
    if strict and not _DATE.match(date):
        raise CatalogFileError(f"{where}.date", date, "a date written YYYY, YYYY-MM or YYYY-MM-DD")
    bounds = []
    for key in ("low", "high"):
        b = raw.get(key)
        if b is not None and (isinstance(b, bool) or not isinstance(b, int | float) or b < 0):
            raise CatalogFileError(f"{where}.{key}", b, "a non-negative number in the same unit")
        bounds.append(None if b is None else float(b) * factor)
    low, high = bounds
    if (low is not None and low > value * factor * (1 + 1e-9)) or (
            high is not None and high < value * factor * (1 - 1e-9)):
        raise CatalogFileError(where, raw, "low <= value <= high")
    return Quantity(si=float(value) * factor, value=float(value), unit=unit,
                    source=source or "user-supplied file", date=date or "user-supplied",
                    low_si=low, high_si=high, note=str(raw.get("note", "")),
                    basis=str(raw.get("basis", "")), year=raw.get("year"))


def _quantities(raw: object, where: str, strict: bool) -> dict[str, Quantity]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise CatalogFileError(where, raw, "a table of quantities")
    return {k: quantity(v, f"{where}.{k}", strict, UNITS["peak" if where.endswith(".peak") else k])
            for k, v in raw.items()}


def _text(raw: Mapping, key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise CatalogFileError(f"{where}.{key}", value, "a non-empty string")
    return value


def _aliases(raw: Mapping) -> tuple[str, ...]:
    return tuple(str(a) for a in raw.get("aliases", ()))


def _positive_int(raw: Mapping, key: str, where: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogFileError(f"{where}.{key}", value, "a positive integer")
    return value


def _bool(raw: Mapping, key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise CatalogFileError(f"{where}.{key}", value, "true or false (unquoted TOML booleans)")
    return value


def _year(raw: Mapping, where: str) -> int | None:
    value = raw.get("year")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1940 <= value <= 2100):
        raise CatalogFileError(f"{where}.year", value, "a year such as 2023")
    return value


def accelerator(raw: Mapping, where: str, strict: bool) -> Accelerator:
    name = _text(raw, "name", where)
    where = f"{where}[{name}]"
    _known_fields(raw, "accelerator", where)
    if isinstance(raw.get("spec"), Mapping):
        _known_fields(raw["spec"], "spec", f"{where}.spec")
    peaks = _quantities(raw.get("peak"), f"{where}.peak", strict)
    for key, q in peaks.items():
        if q.si <= 0:
            raise CatalogFileError(f"{where}.peak.{key}.value", q.value, "a positive rate (leave out a precision "
                                   "the device does not run)")
    unknown = set(peaks) - set(PRECISIONS)
    if unknown:
        raise CatalogFileError(f"{where}.peak", sorted(unknown)[0], f"one of {', '.join(PRECISIONS)}")
    if not peaks:
        raise CatalogFileError(f"{where}.peak", None, "at least one precision's dense peak, e.g. fp16")
    spec = _quantities(raw.get("spec"), f"{where}.spec", strict)
    for key in ("memory_capacity", "memory_bandwidth"):
        if key not in spec or spec[key].si <= 0:
            shown = f"{spec[key].value:g} {spec[key].unit}" if key in spec else None
            raise CatalogFileError(f"{where}.spec.{key}", shown, "a positive quantity (required)")
    if "memory_visible" in spec and not 0 < spec["memory_visible"].si <= spec["memory_capacity"].si:
        raise CatalogFileError(f"{where}.spec.memory_visible", spec["memory_visible"].value, "a positive quantity "
                               f"at most the memory capacity ({spec['memory_capacity'].value:g} "
                               f"{spec['memory_capacity'].unit})")
    if "idle_power" in spec and "tdp" in spec and spec["idle_power"].si > spec["tdp"].si:
        raise CatalogFileError(f"{where}.spec.idle_power", spec["idle_power"].value, f"at most the TDP "
                               f"({spec['tdp'].value:g} {spec['tdp'].unit})")
    device_class = raw.get("class", "datacenter-gpu")
    if device_class not in DEVICE_CLASSES:
        raise CatalogFileError(f"{where}.class", device_class, f"one of {', '.join(DEVICE_CLASSES)}")
    return Accelerator(name=name.lower(), display=str(raw.get("display", name)), vendor=str(raw.get("vendor", "")),
                       device_class=device_class, year=_year(raw, where), peaks=peaks, spec=spec,
                       sparsity_2_4=_bool(raw, "sparsity_2_4", where, False), aliases=_aliases(raw),
                       note=str(raw.get("note", "")))


def workload(raw: Mapping, where: str) -> Transformer | CNN:
    name = str(raw.get("name", "")).lower() or where
    family = raw.get("family")
    common = dict(name=name, display=str(raw.get("display", name)), source=str(raw.get("source", "")),
                  date=str(raw.get("date", "")), note=str(raw.get("note", "")), aliases=_aliases(raw))
    where = f"{where}[{name}]"
    if family in ("cnn", "transformer"):
        _known_fields(raw, family, where)
    if family == "cnn":
        shape = raw.get("input")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
            raise CatalogFileError(f"{where}.input", shape, "[height, width, channels] as positive integers")
        layers = raw.get("layers")
        if not isinstance(layers, list) or not layers or not all(isinstance(x, Mapping) for x in layers):
            raise CatalogFileError(f"{where}.layers", layers, "a non-empty list of layer tables")
        from dse.models.cnn import expand_layers  # validates every layer spec

        cnn = CNN(input=tuple(shape), layers=tuple(_freeze(x) for x in layers), **common)
        expand_layers(cnn, where)
        return cnn
    if family != "transformer":
        raise CatalogFileError(f"{where}.family", family, "\"transformer\" or \"cnn\"")
    dims = {k: _positive_int(raw, k, where) for k in ("layers", "hidden", "heads")}
    vocab = raw.get("vocab")
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 0:
        raise CatalogFileError(f"{where}.vocab", vocab, "a non-negative integer (required)")
    heads = dims["heads"]
    kv_heads = _positive_int(raw, "kv_heads", where, heads)
    if dims["hidden"] % heads and "head_dim" not in raw:
        raise CatalogFileError(f"{where}.hidden", dims["hidden"], f"a multiple of heads ({heads}), or head_dim given")
    if heads % kv_heads:
        raise CatalogFileError(f"{where}.kv_heads", kv_heads, f"a divisor of heads ({heads})")
    ffn = raw.get("ffn", "gelu")
    if ffn not in ("gelu", "swiglu"):
        raise CatalogFileError(f"{where}.ffn", ffn, "\"gelu\" or \"swiglu\"")
    if ffn == "swiglu" and "ffn_hidden" not in raw:
        raise CatalogFileError(f"{where}.ffn_hidden", None, "a positive integer (required with swiglu)")
    ffn_hidden = _positive_int(raw, "ffn_hidden", where, 4 * dims["hidden"])
    experts = _positive_int(raw, "experts", where, 1)
    top_k = _positive_int(raw, "top_k", where, 1)
    if top_k > experts:
        raise CatalogFileError(f"{where}.top_k", top_k, f"at most experts ({experts})")
    extra = {k: _positive_int(raw, k, where) for k in ("patch", "image", *_SHAPE_OPTIONS) if k in raw}
    _check_shape_options(extra, experts, dims["layers"], where)
    if raw.get("attention", "flash") not in ("flash", "unfused"):
        raise CatalogFileError(f"{where}.attention", raw["attention"], "\"flash\" (fused, the default) or "
                               "\"unfused\" (score matrix written to memory)")
    extra["attention"] = raw.get("attention", "flash")
    default_len = 2048
    if "patch" in extra and "image" in extra:  # a ViT sees (image/patch)^2 patches and a class token
        if extra["image"] % extra["patch"]:
            raise CatalogFileError(f"{where}.image", extra["image"], f"a multiple of patch ({extra['patch']})")
        default_len = (extra["image"] // extra["patch"]) ** 2 + 1
    return Transformer(**dims, vocab=vocab, kv_heads=kv_heads, ffn=ffn, ffn_hidden=ffn_hidden,
                       seq_len=_positive_int(raw, "seq_len", where, default_len), experts=experts, top_k=top_k,
                       tied_embeddings=_bool(raw, "tied_embeddings", where, False),
                       causal=_bool(raw, "causal", where, True), channels=_positive_int(raw, "channels", where, 3),
                       parallel_block=_bool(raw, "parallel_block", where, False), **extra, **common)


_SHAPE_OPTIONS = ("head_dim", "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "shared_experts", "moe_ffn_hidden",
                  "dense_layers")


def _check_shape_options(given: dict, experts: int, layers: int, where: str) -> None:
    """Latent-attention fields need kv_lora_rank; shared experts, expert width and dense layers need experts."""
    for key in ("q_lora_rank", "qk_rope_head_dim"):
        if key in given and "kv_lora_rank" not in given:
            raise CatalogFileError(f"{where}.kv_lora_rank", None, f"a positive integer when {key} is given "
                                   "(multi-head latent attention)")
    for key in ("shared_experts", "moe_ffn_hidden", "dense_layers"):
        if key in given and experts == 1:
            raise CatalogFileError(f"{where}.{key}", given[key], "left out of a dense model (experts = 1)")
    if given.get("dense_layers", 0) >= layers:
        raise CatalogFileError(f"{where}.dense_layers", given["dense_layers"], f"fewer than layers ({layers})")


def _freeze(layer: Mapping) -> tuple:
    """A layer spec as a hashable tuple of (key, value) pairs, so CNN definitions can be cached."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in layer.items())


def _sourced_fields(raw: Mapping, where: str) -> dict[str, Quantity]:
    """Every inline-table field of a region, fabric or node entry as a sourced quantity."""
    return {k: quantity(v, f"{where}.{k}", True, UNITS.get(k)) for k, v in raw.items() if isinstance(v, Mapping)}


def region(raw: Mapping, where: str) -> Region:
    name = _text(raw, "name", where)
    fields = _sourced_fields(raw, f"{where}[{name}]")
    return Region(name=name, display=str(raw.get("display", name)), country=str(raw.get("country", "")),
                  fields=fields, aliases=_aliases(raw))


def fabric(raw: Mapping, where: str) -> Fabric:
    name = _text(raw, "name", where)
    fields = _sourced_fields(raw, f"{where}[{name}]")
    return Fabric(name=name, display=str(raw.get("display", name)), kind=str(raw.get("kind", "")),
                  fields=fields, aliases=_aliases(raw))


def node(raw: Mapping, where: str) -> Node:
    name = _text(raw, "name", where)
    fields = _sourced_fields(raw, f"{where}[{name}]")
    return Node(name=name, display=str(raw.get("display", name)), accelerator=_text(raw, "accelerator", where),
                accelerators=_positive_int(raw, "accelerators", where), scale_up=str(raw.get("scale_up", "")),
                scale_out=str(raw.get("scale_out", "")), fields=fields, nics=int(raw.get("nics", 0)),
                cpu=str(raw.get("cpu", "")), aliases=_aliases(raw), **_citation(raw, f"{where}[{name}]"))


def _citation(raw: Mapping, where: str) -> dict:
    """An entry's own optional ``source`` and ``date`` (a citation for the whole entry)."""
    if "source" not in raw and "date" not in raw:
        return {}
    date = str(raw.get("date", ""))
    if not _DATE.match(date):
        raise CatalogFileError(f"{where}.date", date, "a date written YYYY, YYYY-MM or YYYY-MM-DD")
    return {"source": _text(raw, "source", where), "date": date}


MAX_FILE_BYTES = 1 << 20  # a definition file is a few kB; anything larger is not one
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark that some editors write first; TOML itself forbids it


def read_file(path: Path | str, field: str) -> bytes:
    """The bytes of a user's definition file, or a CatalogFileError saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CatalogFileError(field, str(path), "an existing TOML file") from None
    except IsADirectoryError:
        raise CatalogFileError(field, str(path), "a TOML file, not a directory") from None
    except (OSError, ValueError) as exc:  # a path through a file, too long, unreadable, NUL bytes
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CatalogFileError(field, str(path), f"a readable TOML file ({reason})") from None
    if len(data) > MAX_FILE_BYTES:
        raise CatalogFileError(field, str(path), f"a TOML file of at most {MAX_FILE_BYTES // 1024} KiB")
    return data


def parse_toml(data: bytes, path: Path | str, field: str) -> dict:
    """TOML text as a dict; a leading UTF-8 byte-order mark is accepted (and dropped)."""
    try:
        return tomllib.loads(data.removeprefix(BOM).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CatalogFileError(field, str(path), f"UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogFileError(field, str(path), f"valid TOML ({exc})") from None


def _read_toml(path: Path | str, field: str) -> dict:
    return parse_toml(read_file(path, field), path, field)


def _packaged(filename: str) -> dict:
    with resources.files("dse.catalog").joinpath("data", filename).open("rb") as f:
        return tomllib.load(f)


@cache
def registry(kind: str) -> Registry:
    """The shipped catalog of one kind: hardware, workloads, regions, nodes or fabrics."""
    if kind == "hardware":
        return Registry(kind, [accelerator(r, "accelerators.toml", True)
                               for r in _packaged("accelerators.toml")["accelerator"]])
    if kind == "workloads":
        return Registry(kind, [workload(r, "workloads.toml") for r in _packaged("workloads.toml")["workload"]])
    if kind == "regions":
        return Registry(kind, [region(r, "regions.toml") for r in _packaged("regions.toml")["region"]])
    if kind == "fabrics":
        return Registry(kind, [fabric(r, "fabrics.toml") for r in _packaged("fabrics.toml")["fabric"]])
    if kind == "nodes":
        return Registry(kind, [node(r, "nodes.toml") for r in _packaged("nodes.toml")["node"]])
    raise UnknownNameError("catalog kind", kind, KINDS)


KINDS = ("hardware", "nodes", "fabrics", "workloads", "regions")


def node_for(device: Accelerator) -> Node | None:
    """The first catalog node built from a catalog accelerator (its host, fabrics and prices); None for
    an accelerator from a user's file, whatever its name."""
    if not any(d is device for d in registry("hardware")):
        return None
    return next((n for n in registry("nodes") if n.accelerator == device.name), None)


@cache
def economics() -> dict[str, Quantity]:
    """The sourced cost, reliability and embodied-carbon assumptions of economics.toml ``[assumptions]``,
    by key (values in SI in ``.si``). Strict like the shipped catalog: every key known, with source and date."""
    return _assumptions(_packaged("economics.toml"), "economics.toml")


def _assumptions(data: Mapping, where: str) -> dict[str, Quantity]:
    table = data.get("assumptions")
    if not isinstance(table, Mapping) or not table:
        raise CatalogFileError(f"{where} [assumptions]", table, "a table of sourced quantities")
    _known_fields(table, "economics", f"{where} [assumptions]")
    return {key: quantity(raw, f"{where} [assumptions].{key}", True, UNITS[key]) for key, raw in table.items()}


def _single(data: dict, key: str) -> dict:
    """A user file holds one definition: top-level fields or a one-element ``[[key]]`` array."""
    entries = data.get(key)
    if isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], Mapping):
        return entries[0]
    return data


def load_hardware_file(path: str) -> Accelerator:
    """An accelerator from a user TOML file (same fields as an ``[[accelerator]]`` entry). Parsed
    definitions are cached by the file's content, so an edited file is read afresh."""
    return _hardware_from(path, read_file(path, "--hardware-file"))


@lru_cache(maxsize=64)
def _hardware_from(path: str, data: bytes) -> Accelerator:
    raw = _single(parse_toml(data, path, "--hardware-file"), "accelerator")
    raw = {"name": Path(path).stem, **raw}
    return accelerator(raw, f"--hardware-file {path}", strict=False)


def load_workload_file(path: str) -> Transformer | CNN:
    """A workload from a user TOML file (DESIGN.md 4.1: family, layers, hidden, heads, vocab, ...),
    cached by the file's content."""
    return _workload_from(path, read_file(path, "--workload-file"))


@lru_cache(maxsize=64)
def _workload_from(path: str, data: bytes) -> Transformer | CNN:
    raw = _single(parse_toml(data, path, "--workload-file"), "workload")
    return workload({"name": Path(path).stem, **raw}, f"--workload-file {path}")


@cache
def accuracy_ranges() -> tuple[AccuracyRange, ...]:
    """Cited accuracy deltas of quantization and sparsity methods (compression.toml)."""
    out = []
    for i, raw in enumerate(_packaged("compression.toml")["accuracy"]):
        where = f"compression.toml accuracy[{i}]"
        for key in ("method", "family", "metric", "unit", "models", "source", "date"):
            _text(raw, key, where)
        low, high = raw.get("low"), raw.get("high")
        if not (isinstance(low, int | float) and isinstance(high, int | float) and low <= high):
            raise CatalogFileError(f"{where}.low", low, "numbers with low <= high")
        out.append(AccuracyRange(raw["method"], raw["family"], raw["metric"], float(low), float(high),
                                 raw["unit"], raw["models"], raw["source"], str(raw["date"]),
                                 str(raw.get("note", ""))))
    return tuple(out)


LINK_TOPOLOGIES = ("pcie", "bridge", "mesh", "rings", "torus", "switch")


@dataclass(frozen=True, slots=True)
class Link:
    """How an accelerator without a catalog node connects inside its server (links.toml)."""

    accelerator: str
    topology: str
    gpus: int
    bridge: int
    peer_bandwidth: float  # B/s per direction per peer pair ("mesh"), else 0
    ring_bandwidth: tuple[tuple[int, float], ...]  # ("rings") (group size, B/s per direction), ascending
    latency: float  # s per ring step over the whole server's group (beyond the bridge for "bridge")
    bridge_latency: float  # s per ring step within a bridge ("bridge"), else = latency
    base_latency: float  # s once per collective
    source: str
    date: str


@cache
def links() -> dict[str, Link]:
    """The sourced intra-server links of links.toml, by accelerator name, each with its collective
    latency (the header of links.toml: a named fabric's, else NCCL's by topology, else none)."""
    data = _packaged("links.toml")
    nccl = {k: quantity(q, f"links.toml [collective_latency].{k}", True, "us").si
            for k, q in data["collective_latency"].items()}
    out = {}
    for i, raw in enumerate(data["link"]):
        where = f"links.toml link[{i}]"
        topology = _text(raw, "topology", where)
        if topology not in LINK_TOPOLOGIES:
            raise CatalogFileError(f"{where}.topology", topology, " | ".join(LINK_TOPOLOGIES))
        peer = quantity(raw["peer_bandwidth"], f"{where}.peer_bandwidth", True, "GB/s").si if (
            topology == "mesh") else 0.0
        gpus = _positive_int(raw, "gpus", where)
        cited = _citation(raw, where)
        out[_text(raw, "accelerator", where)] = Link(
            accelerator=raw["accelerator"], topology=topology, gpus=gpus,
            bridge=_positive_int(raw, "bridge", where) if topology == "bridge" else 0, peer_bandwidth=peer,
            ring_bandwidth=_ring_table(raw, gpus, where) if topology == "rings" else (),
            **_link_latency(raw, topology, nccl, where), source=cited["source"], date=cited["date"])
    return out


def _link_latency(raw: Mapping, topology: str, nccl: Mapping[str, float], where: str) -> dict[str, float]:
    """A link's collective latency (s): its named fabric's `latency` and `base_latency` (fabrics.toml), else
    NCCL's base and per-step figures for the hardware its ring runs over (tuning.cc: NVLink within a bridge,
    PCIe through the host), else none."""
    if "fabric" in raw:
        fabric = registry("fabrics").get(_text(raw, "fabric", where), f"{where}.fabric")
        step = fabric.get("latency") or 0.0
        return {"latency": step, "bridge_latency": step, "base_latency": fabric.get("base_latency") or 0.0}
    if topology in ("pcie", "bridge"):
        return {"latency": nccl["pcie"], "bridge_latency": nccl["nvlink" if topology == "bridge" else "pcie"],
                "base_latency": nccl["base"]}
    return {"latency": 0.0, "bridge_latency": 0.0, "base_latency": 0.0}


def _ring_table(raw: Mapping, gpus: int, where: str) -> tuple[tuple[int, float], ...]:
    """A "rings" link's ``[link.ring_bandwidth]``: group size -> sourced per-direction bandwidth (B/s),
    sizes from 2 up to and including the server's `gpus`, ascending."""
    table = raw.get("ring_bandwidth")
    allowed = f"a table of group sizes 2..{gpus} (ending at gpus = {gpus}) to {{ value, unit, source, date }}"
    if not isinstance(table, Mapping) or not table:
        raise CatalogFileError(f"{where}.ring_bandwidth", table, allowed)
    rows = []
    for key, q in table.items():
        if not (key.isdigit() and 2 <= int(key) <= gpus):
            raise CatalogFileError(f"{where}.ring_bandwidth", key, allowed)
        rows.append((int(key), quantity(q, f"{where}.ring_bandwidth.{key}", True, "GB/s").si))
    rows.sort()
    if rows[-1][0] != gpus:
        raise CatalogFileError(f"{where}.ring_bandwidth", [k for k, _ in rows], allowed)
    return tuple(rows)
