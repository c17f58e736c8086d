"""Immutable catalog definitions. Numbers are stored in SI (bytes, FLOP/s, W, USD, kg, J) next to the
value, unit, source and date they were read with, so a report can always say where a number came from."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int8", "int4")


@dataclass(frozen=True, slots=True)
class Quantity:
    """One sourced number: `si` is `value` converted from `unit` to SI base units."""

    si: float
    value: float
    unit: str
    source: str
    date: str
    low_si: float | None = None
    high_si: float | None = None
    note: str = ""
    basis: str = ""
    year: int | None = None

    def as_dict(self) -> dict:
        out = {"value": self.value, "unit": self.unit, "source": self.source, "date": self.date}
        if self.low_si is not None:
            out["low"] = self.low_si / self.si * self.value if self.si else None
        if self.high_si is not None:
            out["high"] = self.high_si / self.si * self.value if self.si else None
        for key in ("note", "basis", "year"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True, slots=True, eq=False)
class Accelerator:
    """An accelerator: dense peak rate per precision (FLOP/s or OP/s) and its spec sheet."""

    name: str
    display: str
    vendor: str
    device_class: str
    year: int | None
    peaks: Mapping[str, Quantity]
    spec: Mapping[str, Quantity]
    sparsity_2_4: bool = False
    aliases: tuple[str, ...] = ()
    note: str = ""

    def peak(self, precision: str) -> float | None:
        q = self.peaks.get(precision)
        return q.si if q else None

    def get(self, key: str) -> float | None:
        """SI value of a spec field (e.g. ``memory_capacity`` in bytes), or None when unpublished."""
        q = self.spec.get(key)
        return q.si if q else None

    @property
    def memory_capacity(self) -> float:
        return self.spec["memory_capacity"].si

    @property
    def memory_bandwidth(self) -> float:
        return self.spec["memory_bandwidth"].si


@dataclass(frozen=True, slots=True)
class Transformer:
    """A decoder (causal) or encoder transformer described by its architecture hyperparameters."""

    name: str
    layers: int
    hidden: int
    heads: int
    vocab: int
    kv_heads: int = 0
    ffn: str = "gelu"
    ffn_hidden: int = 0
    seq_len: int = 2048
    experts: int = 1
    top_k: int = 1
    tied_embeddings: bool = False
    causal: bool = True
    patch: int = 0
    image: int = 0
    channels: int = 3
    display: str = ""
    source: str = ""
    date: str = ""
    note: str = ""
    aliases: tuple[str, ...] = ()
    attention: str = "flash"
    head_dim: int = 0  # width of a head (default hidden / heads); with MLA, the no-RoPE Q/K and the V width
    q_lora_rank: int = 0  # MLA: width of the compressed query (0: a full-rank query projection)
    kv_lora_rank: int = 0  # MLA: width of the cached key-value latent (0: no latent attention)
    qk_rope_head_dim: int = 0  # MLA: decoupled RoPE query/key width per head; its key is cached once a token
    shared_experts: int = 0  # MoE: experts every token runs besides its top_k routed ones
    moe_ffn_hidden: int = 0  # MoE: inner width of each expert (default ffn_hidden)
    dense_layers: int = 0  # MoE: leading layers with a dense ffn_hidden MLP instead (DeepSeek first_k_dense_replace)
    parallel_block: bool = False  # attention and MLP read the same input and add into one residual (GPT-J, Falcon)
    family: str = field(default="transformer", init=False)

    def __post_init__(self) -> None:
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if not self.moe_ffn_hidden:
            object.__setattr__(self, "moe_ffn_hidden", self.ffn_hidden)


@dataclass(frozen=True, slots=True)
class CNN:
    """A convolutional network as a sequential list of layer specs (see `dse.models.cnn`)."""

    name: str
    input: tuple[int, int, int]
    layers: tuple[tuple[tuple[str, object], ...], ...]
    display: str = ""
    source: str = ""
    date: str = ""
    note: str = ""
    aliases: tuple[str, ...] = ()
    seq_len: int = 1
    family: str = field(default="cnn", init=False)


Workload = Transformer | CNN


class _SourcedFields:
    """Mixin for definitions whose numbers live in `fields`: SI value of a field, or None if unpublished."""

    __slots__ = ()

    def get(self, key: str) -> float | None:
        q = self.fields.get(key)
        return q.si if q else None


@dataclass(frozen=True, slots=True)
class Region(_SourcedFields):
    """A place to run: grid carbon intensity, facility PUE and WUE, and its own electricity price."""

    name: str
    display: str
    country: str
    fields: Mapping[str, Quantity]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Fabric(_SourcedFields):
    """An interconnect: scale-up (NVLink), scale-out (InfiniBand, RoCE) or host (PCIe)."""

    name: str
    display: str
    kind: str
    fields: Mapping[str, Quantity]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Node(_SourcedFields):
    """A server platform built from accelerators, with its scale-up and scale-out fabrics."""

    name: str
    display: str
    accelerator: str
    accelerators: int
    scale_up: str
    scale_out: str
    fields: Mapping[str, Quantity]
    nics: int = 0
    cpu: str = ""
    aliases: tuple[str, ...] = ()
    source: str = ""  # where the platform's composition (accelerators, fabrics) is published
    date: str = ""


@dataclass(frozen=True, slots=True)
class AccuracyRange:
    """A published range of accuracy change for a compression method: a citation, not a prediction."""

    method: str
    family: str
    metric: str
    low: float
    high: float
    unit: str
    models: str
    source: str
    date: str
    note: str = ""

    def describe(self) -> str:
        return (f"{self.method} on {self.family}s, literature range (not a prediction for this model): "
                f"{self.metric} {self.low:+g} to {self.high:+g} {self.unit} for {self.models} "
                f"[{self.source}, {self.date}]")
