"""A design point's inputs: the option table shared by `dse eval`, `dse.evaluate` and `evaluate_many`,
with validation that names the field, the value and what is allowed, and the defaults and derived
degrees (`numbers`) that the models read. Checks work on one value or on a numpy column."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dse.catalog import PRECISIONS, Accelerator, Transformer, Workload, load_hardware_file, load_workload_file, registry
from dse.errors import UnknownNameError, UserInputError
from dse.models.transformer import DECODE_ATTENTION
from dse.units import parse_quantity

if TYPE_CHECKING:
    from dse.modes import Setup

MODES = ("infer", "train", "serve")
RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True, slots=True)
class Field:
    """One numeric option: integer, real, rate (bytes/s) or size (bytes), with its allowed range."""

    kind: str  # "int", "real", "rate" (bytes/s), "size" (bytes)
    low: float
    high: float
    inclusive: bool = True
    help: str = ""
    below_high: bool = False  # the high end itself is excluded, as in [0, 1)

    def allowed(self) -> str:
        what = {"int": "an integer", "real": "a number", "rate": "a rate (B/s)", "size": "a size (B)"}[self.kind]
        top = "<" if self.below_high else "<="
        return f"{what} {'>=' if self.inclusive else '>'} {self.low:g} and {top} {self.high:g}"

    def ok(self, v):
        """Whether `v` (a float or a numpy column) is allowed, element by element."""
        good = np.isfinite(v) & ((v >= self.low) if self.inclusive else (v > self.low)) & (
            (v < self.high) if self.below_high else (v <= self.high))
        return good & (v == np.floor(v)) if self.kind == "int" else good


# Ranges are generous but finite, so that no product of options overflows a float.
BIG = 1e9
NUMERIC: dict[str, Field] = {
    "batch": Field("int", 1, BIG, help="samples or requests processed together (train: global batch)"),
    "seq_len": Field("int", 1, BIG, help="tokens per sequence (default: the workload's)"),
    "gpus": Field("int", 1, BIG, help="accelerators in the deployment"),
    "gpus_per_node": Field("int", 1, 1024, help="accelerators per node (default 8)"),
    "tp": Field("int", 1, BIG, help="tensor-parallel degree"),
    "pp": Field("int", 1, BIG, help="pipeline-parallel degree"),
    "dp": Field("int", 1, BIG, help="data-parallel degree"),
    "cp": Field("int", 1, BIG, help="context-parallel degree"),
    "ep": Field("int", 1, BIG, help="expert-parallel degree"),
    "micro_batch": Field("int", 1, BIG, help="samples per micro-batch per data-parallel rank"),
    "global_batch": Field("int", 1, BIG, help="samples per optimizer step"),
    "vp": Field("int", 1, 1024, help="virtual pipeline stages per GPU"),
    "zero": Field("int", 0, 3, help="ZeRO stage 0-3"),
    "tp_overlap": Field("int", 0, 1, help="1: tensor-parallel all-gathers and reduce-scatters overlap the GEMMs "
                        "they feed (Megatron-Core --tp-comm-overlap; NeMo's performance recipes); default 0, "
                        "Megatron's default"),
    "input_len": Field("int", 1, BIG, help="prompt tokens per request (default 512)"),
    "output_len": Field("int", 1, BIG, help="generated tokens per request (default 128)"),
    "prefill_batch": Field("int", 1, BIG, help="prompts prefilled per pass (default: the whole batch at once)"),
    "qps": Field("real", 0, BIG, inclusive=False, help="request arrival rate, requests/s"),
    "max_batched_tokens": Field("int", 1, BIG, help="tokens per engine step under continuous batching (default: "
                                "the engine's, see dse.models.serving.engine_defaults)"),
    "prefix_cache_hit": Field("real", 0, 1, below_high=True, help="fraction of prompt tokens found in the prefix "
                              "cache (default 0)"),
    "ttft_slo": Field("real", 0, BIG, inclusive=False, help="p99 time-to-first-token target, s"),
    "itl_slo": Field("real", 0, BIG, inclusive=False, help="inter-token latency target, s"),
    "cpu_workers": Field("int", 1, BIG, help="CPU data-loader workers"),
    "worker_bw": Field("rate", 1e3, 1e15, help="decode/augment rate per worker, e.g. 250MB/s"),
    "storage_bw": Field("rate", 1e3, 1e15, help="storage read bandwidth, e.g. 3GB/s"),
    "sample_bytes": Field("size", 1, 1e12, help="bytes per sample as read, e.g. 110kB"),
    "tokens": Field("real", 0, 1e18, inclusive=False, help="training token budget, e.g. 15e12"),
    "duration_days": Field("real", 0, 1e5, inclusive=False, help="horizon in days: a serving fleet's or a fixed "
                           "training run's"),
    "pue": Field("real", 1, 10, help="facility power usage effectiveness (default: the region's)"),
    "grid_g_per_kwh": Field("real", 0, 1e4, help="grid carbon intensity, g CO2e/kWh (default: the region's)"),
    "electricity_price": Field("real", 0, 100, help="electricity price, USD/kWh (default: the region's; buy only)"),
    "fleet_utilization": Field("real", 0, 1, inclusive=False, help="share of owned hardware's life spent on paid "
                               "work (buy only; default 1)"),
    "life_years": Field("real", 0, 50, inclusive=False, help="hardware service life for depreciation and embodied "
                        "carbon (default: the catalog's)"),
    "repair_hours": Field("real", 0, 1e5, inclusive=False, help="hours a failed serving replica stays out, for N+k "
                          "spares (default: the catalog's restart time)"),
    "gpu_hour_price": Field("real", 0, 1e4, inclusive=False, help="rental price, USD per GPU-hour (rent only; default: "
                            "the catalog's for the accelerator and --purchase class)"),
    "gpu_price": Field("real", 0, 1e8, inclusive=False, help="purchase price per accelerator with its share of host, "
                       "network and storage, USD (buy only; default: from the catalog)"),
    "gpu_failure_rate": Field("real", 0, 1, help="failures per GPU-hour (default: the catalog's, from Llama 3 "
                              "training)"),
    "node_failure_rate": Field("real", 0, 1, help="host and network failures per node-hour (default: the catalog's)"),
}
ECONOMICS = ("duration_days", "pue", "grid_g_per_kwh", "electricity_price", "fleet_utilization", "life_years",
             "repair_hours", "gpu_hour_price", "gpu_price", "gpu_failure_rate", "node_failure_rate", "region",
             "purchase")
BUY_ONLY = ("electricity_price", "fleet_utilization", "gpu_price")
RENT_ONLY = ("gpu_hour_price",)
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": MODES, "precision": PRECISIONS, "weight_precision": PRECISIONS, "recompute": RECOMPUTE,
    "purchase": ("rent", "rent-reserved", "rent-gpu-cloud", "buy"),
    "scheduler": ("continuous", "static"),
    "decode_attention": DECODE_ATTENTION,
    "cuda_graphs": ("on", "off"),
}
ENGINE_CHOICES = ("scheduler", "decode_attention", "cuda_graphs")  # serve mode's engine choices
# Which options each mode uses; any other option given is refused rather than ignored.
_PIPELINE = {"cpu_workers", "worker_bw", "storage_bw", "sample_bytes"}
_ECONOMICS = {k for k in ECONOMICS if k in NUMERIC and k != "repair_hours"}
MODE_OPTIONS = {
    "infer": {"batch", "seq_len", "gpus", "tp", "dp", *_PIPELINE, *_ECONOMICS},
    "serve": {"batch", "input_len", "output_len", "prefill_batch", "gpus", "gpus_per_node", "tp", "qps", "ttft_slo",
              "itl_slo", "repair_hours", "max_batched_tokens", "prefix_cache_hit", *_ECONOMICS},
    "train": {"batch", "global_batch", "micro_batch", "seq_len", "gpus", "gpus_per_node", "tp", "pp", "dp", "cp",
              "ep", "vp", "zero", "tp_overlap", "tokens", *_PIPELINE, *_ECONOMICS},
}


def check_mode_options(mode: str, given, transformer: bool) -> None:
    """Refuse options the mode (or a CNN) does not use, e.g. --zero in serve mode."""
    if not transformer:
        refuse_given(given, "seq_len", "not used by a CNN (its input shape is part of the workload)")
    for key in given:
        if key in NUMERIC and key not in MODE_OPTIONS[mode]:
            users = [m for m, keys in MODE_OPTIONS.items() if key in keys]
            refuse_given(given, key, f"not used in {mode} mode (it applies to {' and '.join(users)}); leave it "
                         "out or NaN on those rows")


def refuse_given(given: dict, key: str, allowed: str) -> None:
    """Refuse an option that was given (for a column, naming its first row) where it does not apply."""
    if given.get(key) is not None:
        value, row = _first(given[key])
        raise UserInputError(option(key), value, allowed, hint=row)


def _first(value) -> tuple[object, str]:
    """A value as the user wrote it, and for a frame column its first row and where it is."""
    row = ""
    if np.ndim(value):
        value, row = value[0].item(), "(row 0)"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value, row


NAMES = ("workload", "workload_file", "hardware", "hardware_file", "sparsity", "region")
ALL_KEYS = (*NAMES, *CHOICES, *NUMERIC)
DEFAULTS = {"mode": "infer", "precision": "fp16", "recompute": "none", "purchase": "rent", "scheduler": "continuous",
            "decode_attention": "grouped",
            "batch": 1, "zero": 0, "tp_overlap": 0,
            "input_len": 512, "output_len": 128, "gpus_per_node": 8, "tp": 1, "pp": 1, "cp": 1, "ep": 1,
            "vp": 1}
NUMERIC_DEFAULTS = {k: float(DEFAULTS[k]) if k in DEFAULTS else None for k in NUMERIC}


def option(field: str) -> str:
    """How the CLI spells a keyword (``input_len`` -> ``--input-len``)."""
    return "--" + field.replace("_", "-")


def check_number(field: str, value: object) -> float:
    """Validate one numeric option; returns it as a float (bytes or bytes/s for rates and sizes)."""
    spec = NUMERIC[field]
    shown = value.item() if isinstance(value, np.generic) else value  # messages echo what was given
    if spec.kind in ("rate", "size") and isinstance(value, str):
        value = parse_quantity(value, "B/s" if spec.kind == "rate" else "B", option(field),
                               "bytes/s" if spec.kind == "rate" else "bytes")
    elif isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise UserInputError(option(field), shown, spec.allowed()) from None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UserInputError(option(field), shown, spec.allowed())
    v = float(value)
    if not spec.ok(v):
        raise UserInputError(option(field), shown, spec.allowed())
    return v


def check_choice(field: str, value: object) -> str:
    text = str(value).lower()
    if text not in CHOICES[field]:
        raise UnknownNameError(option(field), value, CHOICES[field])
    return text


def sparsity(value: object) -> tuple[bool, float]:
    """``2:4`` (structured) or a fraction of zero weights in [0, 1)."""
    if value is None:
        return False, 0.0
    if str(value).strip() == "2:4":
        return True, 0.0
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = -1.0
    if not 0.0 <= f < 1.0:
        raise UserInputError("--sparsity", value, "\"2:4\" or a fraction of zero weights in [0, 1)")
    return False, f


def resolve_workload(name: object, path: object) -> Workload:
    if (name is None) == (path is None):
        raise UserInputError("--workload", name, "exactly one of --workload NAME or --workload-file F.toml")
    return load_workload_file(str(path)) if path is not None else registry("workloads").get(str(name), "--workload")


def resolve_hardware(name: object, path: object) -> Accelerator:
    if (name is None) == (path is None):
        raise UserInputError("--hardware", name, "exactly one of --hardware NAME or --hardware-file F.toml")
    return load_hardware_file(str(path)) if path is not None else registry("hardware").get(str(name), "--hardware")


def check_keys(given: dict) -> None:
    """Refuse unknown options, with a suggestion."""
    for key in given:
        if key not in ALL_KEYS:
            raise UnknownNameError("option", key, ALL_KEYS, where="dse eval --help")


def check_horizon(given: dict, purchase: str) -> None:
    """Refuse economics options without a horizon, a horizon given twice, and options that apply to
    owned hardware only when renting. `given` holds the options present (values or columns)."""
    present = {k for k, v in given.items() if v is not None}
    if {"tokens", "duration_days"} <= present:
        raise UserInputError("--duration-days", _first(given["duration_days"])[0], "left out when --tokens is given "
                             "(the token budget sets the training run's horizon)")
    if not {"tokens", "duration_days"} & present:
        for key in (k for k in ECONOMICS if k in present):
            raise UserInputError(option(key), _first(given[key])[0], "used only with a horizon: add --duration-days "
                                 "(or --tokens in train mode)")
    if purchase != "buy":
        for key in (k for k in BUY_ONLY if k in present):
            raise UserInputError(option(key), _first(given[key])[0], "used only with --purchase buy (a rental "
                                 "price includes power and the provider's utilisation)")
    if purchase == "buy":
        for key in (k for k in RENT_ONLY if k in present):
            raise UserInputError(option(key), _first(given[key])[0], "used only when renting (--purchase rent, "
                                 "rent-reserved or rent-gpu-cloud)")
    region = given.get("region")
    if region is not None and not (isinstance(region, str) and region.strip()):
        raise UserInputError("--region", region, "a region name (see `dse catalog regions`)")


def require(ok, field: str, value, allowed: str, *args) -> None:
    """Raise a UserInputError for the first design point where `ok` is false (row-aware for columns).
    `allowed` may hold ``{}`` fields, filled with `args` (numbers or columns) at that point, only then."""
    if ok is True or ok is np.True_ or (np.ndim(ok) and ok.all()):
        return
    row = int(np.argmin(ok)) if np.ndim(ok) else None
    at = [plain(a[row] if row is not None and np.ndim(a) else a) for a in (value, *args)]
    text = allowed.format(*at[1:]) if args else allowed
    raise UserInputError(option(field), at[0], text, hint="" if row is None else f"(row {row})")


def anywhere(condition) -> bool:
    return bool(condition.any()) if np.ndim(condition) else bool(condition)


def plain(v):
    """A number as the user would write it: 4 rather than 4.0 or np.float64(4.0)."""
    if isinstance(v, float | np.floating):
        return int(v) if float(v).is_integer() else float(v)
    return v.item() if isinstance(v, np.generic) else v


def engine_options(n: dict, given: dict, chosen: dict, s: Setup) -> None:
    """The serving engine's options (DESIGN.md 4.1): the `chosen` ENGINE_CHOICES, `--scheduler`,
    `--decode-attention` and `--cuda-graphs` (serve mode only), and what each scheduler uses:
    `--max-batched-tokens` and `--prefix-cache-hit` for continuous batching, `--prefill-batch` for
    static batches. Sets n[key] for each choice; `--cuda-graphs` defaults to on under continuous
    batching (vLLM V1 and TensorRT-LLM decode under CUDA graphs) and off for static batches (the
    TensorRT-LLM v0.6.1 session runs they are calibrated on); under continuous batching an absent
    --batch is None (the engine takes what the KV cache holds, `dse.modes.serve`)."""
    for key in ENGINE_CHOICES:
        if chosen.get(key) is not None and s.mode != "serve":
            raise UserInputError(option(key), chosen[key], f"left out in {s.mode} mode (it applies to serve)")
        n[key] = chosen.get(key) or DEFAULTS.get(key)
    n["cuda_graphs"] = n["cuda_graphs"] or ("off" if n["scheduler"] == "static" else "on")
    if s.mode != "serve":
        return
    if n["decode_attention"] == "per-head" and isinstance(s.workload, Transformer) and s.workload.kv_lora_rank:
        raise UserInputError(option("decode_attention"), "per-head", f"grouped for {s.workload.name}: its "
                             "multi-head latent attention caches one latent that every head reads; an engine "
                             "decoding it head by head caches decompressed K and V instead, a different model")
    if n["scheduler"] == "static":
        for key in ("max_batched_tokens", "prefix_cache_hit"):
            refuse_given(n, key, "used only with --scheduler continuous (a static batch prefills whole prompts "
                          "and decodes to the end)")
        return
    refuse_given(n, "prefill_batch", "used only with --scheduler static: continuous batching prefills prompts in "
                  "chunks of --max-batched-tokens")
    if "batch" not in given:
        n["batch"] = None
    budget, context = n["max_batched_tokens"], float(s.workload.seq_len)
    if budget is not None:
        require(budget <= context, "max_batched_tokens", budget, f"at most {s.workload.name}'s context of "
                f"{context:.0f} tokens")
        require(n["batch"] <= budget if n["batch"] is not None else True, "batch", n["batch"],
                "at most --max-batched-tokens ({}): every sequence in flight takes a token of each step", budget)


def numbers(given: dict, s: Setup) -> dict:
    """Validated numeric inputs with defaults and derived degrees; floats or numpy columns."""
    w, mode = s.workload, s.mode
    n = dict(NUMERIC_DEFAULTS)
    n.update(given)
    if n["seq_len"] is None:
        n["seq_len"] = float(w.seq_len)
    if n["global_batch"] is not None:
        require(n["global_batch"] == n["batch"] if "batch" in given else True,
                 "global_batch", n["global_batch"], "equal to --batch (in train mode they name the same thing)")
        n["batch"] = n["global_batch"]
    heads = w.heads if isinstance(w, Transformer) else 1
    tp, per_node = n["tp"], n["gpus_per_node"]
    if mode == "serve":
        require(n["prefill_batch"] is None or n["prefill_batch"] <= n["batch"], "prefill_batch",
                 n["prefill_batch"], "at most --batch ({})", n["batch"])
        require(heads % tp == 0, "tp", tp, f"a divisor of {w.name}'s {heads} attention heads")
        require(tp <= per_node, "tp", tp, "at most --gpus-per-node ({}): serve TP stays in a node", per_node)
        n["gpus"] = tp if n["gpus"] is None else n["gpus"]
        require(n["gpus"] % tp == 0, "gpus", n["gpus"], "a multiple of --tp ({}) in serve mode", tp)
    elif mode == "train":
        train_layout(n, given, w, s)
    else:
        for key in ("tp", "dp"):
            require(n[key] is None or n[key] == 1, key, n[key],
                     "1 in infer mode (one device); use --mode serve for tensor-parallel inference")
        n["gpus"] = 1.0 if n["gpus"] is None else n["gpus"]
        require(n["gpus"] == 1, "gpus", n["gpus"], "1 in infer mode (one device)")
    check_mode_options(mode, given, isinstance(w, Transformer))
    require(n["tokens"] is None or isinstance(w, Transformer), "tokens", n["tokens"],
             f"only for token-based (transformer) workloads, not the CNN {w.name!r}")
    n["pipeline"] = n["cpu_workers"] is not None or n["storage_bw"] is not None
    if n["pipeline"]:
        require(n["sample_bytes"] is not None, "sample_bytes", None,
                 "a value whenever --cpu-workers or --storage-bw is given")
        require(n["cpu_workers"] is None or n["worker_bw"] is not None, "worker_bw", None,
                 "a value whenever --cpu-workers is given")
    else:
        for key in ("worker_bw", "sample_bytes"):
            require(n[key] is None, key, n[key], "used only with --cpu-workers or --storage-bw (the input pipeline)")
    link_bw, latency, base = s.link
    multi = anywhere(n["tp"] > 1) or (n["dp"] is not None and anywhere(n["dp"] > 1)) or anywhere(n["gpus"] > 1)
    field = "tp" if mode == "serve" else next((k for k in ("dp", "tp", "pp", "cp") if k in given and anywhere(
        n[k] > 1)), "gpus") if mode == "train" else "dp"
    require(link_bw is not None or not multi, field, n[field], f"1: no catalog node or link (links.toml) says how "
            f"{s.device.name} GPUs connect (link bandwidth and latency), so parallelism across them is not modelled")
    n["link_bw"], n["link_latency"], n["link_base"] = np.inf if link_bw is None else link_bw, latency, base
    return n


def _server_links(n: dict, given: dict, s: Setup) -> None:
    """Refuse a node of more GPUs than one server's links join (links.toml `gpus`; one bridge where
    nothing joins the bridges): every group's in-node part, and every pipeline send inside the node, runs
    over those links, and past them nothing is there to price. ICI ("torus") spans hosts: its `gpus` is
    chips per host, not a bound on a group."""
    from dse.modes.setup import link_entry, tp_link  # modes import this module

    entry, (_, _, largest) = link_entry(s.device), tp_link(s.device, None)
    if entry is None or entry.topology == "torus":
        return
    field = "gpus_per_node" if "gpus_per_node" in given else "gpus"
    why = (f"; a server holds {entry.gpus}, but the catalog gives {s.device.name} no PCIe host link "
           f"(accelerators.toml host_link_bandwidth) to join its {entry.bridge}-card NVLink bridges"
           if largest < entry.gpus else "")
    require(np.minimum(n["gpus"], n["gpus_per_node"]) <= largest, field, n[field],
            f"at most {largest} in one node: the largest group of {s.device.name} that one server's links "
            f"join (links.toml){why}")


def train_layout(n: dict, given: dict, w: Workload, s: Setup) -> None:
    """Validate a training layout and fill in the derived degrees: gpus = tp x pp x dp x cp (Megatron-LM
    rank order tp, cp, ep within dp, pp; Narayanan et al. 2021), micro-batches of whole samples, and the
    node size and scale-out link of the catalog node. Works on numbers or columns."""
    from dse.modes.setup import scale_out_link  # modes import this module

    tp, pp, cp, ep, vp = (n[k] for k in ("tp", "pp", "cp", "ep", "vp"))
    transformer = isinstance(w, Transformer)
    if transformer:
        kv = f" and {w.kv_heads} KV heads" if w.kv_heads != w.heads else ""
        require((w.heads % tp == 0) & (w.kv_heads % tp == 0), "tp", tp,
                f"a divisor of {w.name}'s {w.heads} attention heads{kv} (each rank holds whole heads)")
        require(pp <= w.layers, "pp", pp, f"at most {w.name}'s {w.layers} layers (each stage holds at least one)")
        require(pp * vp <= w.layers, "vp", vp, f"at most {w.name}'s {w.layers} layers divided by --pp ({{}}): each "
                "virtual stage holds a layer", pp)
        require(n["seq_len"] % cp == 0, "cp", cp, "a divisor of --seq-len ({}): each rank holds an equal share of "
                "the sequence", n["seq_len"])
        require((ep == 1) | (w.experts > 1), "ep", ep, f"1: {w.name} is dense (no experts to distribute)")
        require(w.experts % ep == 0, "ep", ep, f"a divisor of {w.name}'s {w.experts} experts")
    else:
        for key in ("tp", "pp", "cp", "ep"):
            require(n[key] == 1, key, n[key], f"1 for the CNN {w.name!r}: it trains data-parallel")
    require((vp == 1) | (pp > 1), "vp", vp, "1 without pipeline parallelism (--pp > 1): virtual stages "
            "interleave a pipeline")
    model = tp * pp * cp
    if n["dp"] is None:
        gpus = model if n["gpus"] is None else n["gpus"]
        require(gpus % model == 0, "gpus", gpus, "a multiple of --tp x --pp x --cp ({}) so that the data-parallel "
                "degree is whole", model)
        n["dp"] = gpus / model
    n["gpus"] = model * n["dp"] if n["gpus"] is None else n["gpus"]
    require(n["gpus"] == model * n["dp"], "gpus", n["gpus"], "equal to --tp x --pp x --dp x --cp ({})",
            model * n["dp"])
    require((n["dp"] * cp) % ep == 0, "ep", ep, "a divisor of --dp x --cp ({}): expert parallelism splits the "
            "data-parallel ranks", n["dp"] * cp)
    if n["micro_batch"] is None:
        require(n["batch"] % n["dp"] == 0, "batch", n["batch"], "a multiple of the data-parallel degree ({}) so "
                "every rank gets whole samples", n["dp"])
        n["micro_batch"] = n["batch"] / n["dp"]
    require(n["batch"] % (n["dp"] * n["micro_batch"]) == 0, "batch", n["batch"],
            "a multiple of --dp x --micro-batch ({}): whole gradient-accumulation steps", n["dp"] * n["micro_batch"])
    out_bw, out_latency, per_node = scale_out_link(s.device)
    if "gpus_per_node" not in given:
        n["gpus_per_node"] = float(per_node)
    _server_links(n, given, s)
    require((n["gpus"] <= n["gpus_per_node"]) | (out_bw is not None), "gpus", n["gpus"],
            f"at most --gpus-per-node ({{}}): no catalog node gives {s.device.name} a scale-out fabric and NICs",
            n["gpus_per_node"])
    n["out_bw"], n["out_latency"] = out_bw or np.inf, out_latency
