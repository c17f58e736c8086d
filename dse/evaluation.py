"""The evaluation API (DESIGN.md 4.4): `evaluate` one design point, or `evaluate_many` a pandas frame
of them column-wise (rows grouped by their categorical choices, numeric columns as numpy arrays),
through the same validation (`dse.config`) and the same per-mode models (`dse.modes`), so a sweep
and a single question give the same numbers."""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from dse import config as cfg
from dse import economics
from dse.allocator import keep_freed_memory_once
from dse.catalog import Transformer
from dse.catalog.loader import read_file
from dse.errors import CatalogFileError, UserInputError
from dse.modes import MODELS, Setup, common, service_levels, setup, with_data_pipeline


@dataclass
class Result:
    """What `dse eval` prints: the resolved config, the metrics and the notes (assumptions, fallbacks)."""

    config: dict
    metrics: dict
    notes: list[str] = field(default_factory=list)


COUNTS = frozenset(("max_batch", "gpus", "cpu_workers_needed", "replicas", "gradient_accumulation_steps",
                    "replicas_needed", "gpus_needed", "spare_replicas", "fleet_gpus"))
SLO_OPTIONS = frozenset(("qps", "ttft_slo", "itl_slo"))
_NUMPY, _FLOATS = (np.generic, np.ndarray), (float, np.floating)  # tuples: isinstance is faster than on unions


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
    s = _setup(w, dev, dict(mode=mode, precision=precision, weight_precision=weight_precision, recompute=recompute),
               given.get("sparsity"), "precision" in given)
    purchase = cfg.check_choice("purchase", given["purchase"]) if "purchase" in given else cfg.DEFAULTS["purchase"]
    nums = {k: cfg.check_number(k, v) for k, v in given.items() if k in cfg.NUMERIC}
    n = cfg.numbers(nums, s)  # refuses options the mode does not use (e.g. --tokens in serve) first
    cfg.engine_options(n, nums, {k: cfg.check_choice(k, given[k]) for k in cfg.ENGINE_CHOICES if k in given}, s)
    cfg.check_horizon(given, purchase)
    site = _site_cached(dev, given.get("region"), purchase) if _horizon(given) else None
    m, checks = MODELS[s.mode](s, n)
    if n["pipeline"]:
        m = with_data_pipeline(m, n, s)
    _not_applicable(m, n, s.mode)
    metrics = common(m, checks, n, [], s.ex.compute)
    if notes is not None and s.mode == "train" and n["gpus"] > 1:
        notes.append("communication per framework defaults (Megatron-Core): gradient reduction overlaps the last "
                     "backward, ZeRO-3 gathers are prefetched, tensor/expert-parallel traffic and pipeline sends are "
                     "exposed; sequence parallelism with tensor parallelism")
    if notes is not None and not metrics["feasible"]:
        notes.append("does not fit in memory: time metrics are computed as if it did")
    context = n["input_len"] + n["output_len"] if s.mode == "serve" else n["seq_len"]
    if notes is not None and isinstance(s.workload, Transformer) and context > s.workload.seq_len:
        notes.append(f"{cfg.plain(context)} tokens exceed {s.workload.name}'s context length of {s.workload.seq_len}")
    if s.mode == "serve" and SLO_OPTIONS.intersection(nums):
        fits = metrics["feasible"]
        service_levels(metrics, n, notes if notes is not None else [])
        _uncounted(metrics, fits)
    if site is not None:
        metrics.update(economics.apply(metrics, n, s.mode, site))
        if notes is not None:
            notes.extend(site.notes)
    # numpy scalars and 0-d results become Python values; counts become integers; a metric the catalog
    # cannot feed (NaN: a price or footprint it lacks, the notes say which) is left out
    metrics = {k: int(v) if k in COUNTS else v.item() if isinstance(v, _NUMPY) else v
               for k, v in metrics.items() if not (isinstance(v, _FLOATS) and math.isnan(v))}
    return s, n, given, metrics


def _not_applicable(m: dict, n: dict, mode: str) -> None:
    """Metrics without meaning at a point become NaN (left out by `evaluate`, empty in a frame):
    `itl_s` when a request generates one token (no decode step follows its prefill)."""
    if mode == "serve" and "itl_s" in m:
        itl = np.where(n["output_len"] > 1, m["itl_s"], np.nan)
        m["itl_s"] = itl if np.ndim(itl) else float(itl)


def _uncounted(m: dict, fits) -> None:
    """A replica that does not fit in memory cannot be counted: `replicas_needed` and `gpus_needed`
    are left out for such a point (NaN on such rows of a column)."""
    for key in ("replicas_needed", "gpus_needed"):
        if key in m and np.ndim(fits):
            m[key] = np.where(fits, m[key], np.nan)
        elif key in m and not fits:
            del m[key]


def _horizon(given: dict) -> bool:
    """Whether a point (or a group of rows) asks for the economics: a token budget or a duration."""
    return given.get("tokens") is not None or given.get("duration_days") is not None


def evaluate_point(**kwargs) -> Result:
    """Evaluate one design point with its resolved config and notes (what `dse eval` prints)."""
    notes: list[str] = []
    s, n, given, metrics = _point(kwargs, notes)
    w = s.workload
    shown = {k: cfg.plain(v) for k, v in n.items() if (k in given or k == "gpus" or (
        k == "seq_len" and s.mode != "serve" and isinstance(w, Transformer))) and k in cfg.NUMERIC}
    chosen = {k: given[k] for k in ("weight_precision", "sparsity", "recompute", "region", "purchase",
                                    *cfg.ENGINE_CHOICES) if k in given}
    config = {"workload": w.name, "hardware": s.device.name, "mode": s.mode, "precision": s.precision, **chosen,
              **shown}
    return Result(config=config, metrics=metrics, notes=[*s.notes, *notes])


def evaluate(**kwargs) -> dict:
    """Metrics of one design point (DESIGN.md 4.4): ``dse.evaluate(workload=..., hardware=..., ...)``.

    The models are pure functions of the options, so a repeated point (samplers over discrete spaces
    revisit many) is answered from a cache of recent results; each call gets its own copy."""
    with python_spelling():
        try:  # a file is part of the key by its content, not its path; the type too: True == 1 but batch=True
            files = tuple(read_file(str(kwargs[k]), cfg.option(k)) for k in ("workload_file", "hardware_file")
                          if kwargs.get(k) is not None)  # is refused
            metrics = _cached_metrics(tuple(sorted((k, type(v).__name__, v) for k, v in kwargs.items())), files)
        except (TypeError, CatalogFileError):  # unhashable or unreadable: evaluate, and let validation name it
            return _point(kwargs, None)[3]
    return {**metrics, "infeasible_reasons": list(metrics["infeasible_reasons"])}


@lru_cache(maxsize=1 << 16)
def _cached_metrics(options: tuple, files: tuple) -> dict:
    return _point({k: v for k, _, v in options}, None)[3]


_CLI_SPELLING = re.compile(r"--([a-z][a-z0-9-]*)")


@contextmanager
def python_spelling():
    """Re-raise a UserInputError in the keywords a Python caller writes (``batch``, not ``--batch``)."""
    try:
        yield
    except UserInputError as exc:
        def spell(text: str) -> str:
            return _CLI_SPELLING.sub(lambda m: m[1].replace("-", "_") if m[1].replace("-", "_") in cfg.ALL_KEYS
                                     else m[0], text)
        renamed = copy.copy(exc)
        renamed.field, renamed.allowed, renamed.hint = spell(exc.field), spell(exc.allowed), spell(exc.hint)
        renamed.args = (renamed._message(),)
        raise renamed from None


_setup_cached = lru_cache(maxsize=4096)(setup)


def _setup(w, dev, cats: dict, sparsity, precision_given: bool) -> Setup:
    """The (cached) Setup of a point's categorical choices; a default precision the device cannot
    use is refused with a hint that it was the default."""
    cfg.sparsity(sparsity)  # validated before it keys the cache (a list is refused, not a TypeError)
    try:
        return _setup_cached(w, dev, cats["mode"], cats["precision"], cats["weight_precision"], sparsity,
                             cats["recompute"])
    except UserInputError as exc:
        if exc.field != "--precision" or precision_given:
            raise
        raise UserInputError(exc.field, exc.value, exc.allowed, hint=f"{cfg.DEFAULTS['precision']} is the "
                             "default when --precision is not given") from None
_site_cached = lru_cache(maxsize=4096)(economics.site)

CATEGORICAL = ("workload", "workload_file", "hardware", "hardware_file", "mode", "precision",
               "weight_precision", "sparsity", "recompute", "region", "purchase", *cfg.ENGINE_CHOICES)


def _column(values: np.ndarray, key: str) -> np.ndarray:
    """A numeric column as floats (rates and sizes parsed once per distinct text)."""
    if values.dtype.kind in "iuf":
        arr = values.astype(float, copy=False)
        spec = cfg.NUMERIC[key]
        cfg.require(spec.ok(arr), key, arr, spec.allowed())
        return arr
    parsed = {}
    out = np.empty(len(values))
    for i, v in enumerate(values):
        try:
            out[i] = parsed[v] if v in parsed else parsed.setdefault(v, cfg.check_number(key, v))
        except UserInputError as exc:
            raise UserInputError(exc.field, exc.value, exc.allowed, hint=f"(row {i})") from None
    return out


# Rows per pass through the models, by mode: small enough that a pass's (operators x phases x rows)
# arrays stay in cache and are reused by the allocator rather than faulted in afresh (serve stacks two
# engine phases per row at full load, four at a rate), large enough that the per-pass Python work is
# spread over many rows; the fastest of 512-32,768 rows on 2-core EPYC and Xeon VMs (bench/README.md,
# "Speed").
CHUNK = {"infer": 1 << 13, "serve": 1 << 12, "train": 1 << 14}


def _groups(categorical: dict[str, np.ndarray], empty: list[np.ndarray], size: int):
    """Yield (categorical choices, row positions) for each distinct combination of the categorical
    columns' cells, in the order of their first row. Rows are also grouped by which numeric cells are
    `empty`, so that inside a group an option is given on every row or on none (an empty cell takes
    the default, as an absent keyword does). Columns that hold one value (or are absent) are not
    grouped on. Each column is factorized once; the groups are the distinct combinations of codes."""
    fixed = {k: cfg.DEFAULTS.get(k) for k in CATEGORICAL if k not in categorical}
    codes = np.zeros(size, dtype=np.int64)
    varying: dict[str, tuple[np.ndarray, object]] = {}
    for cells in empty:
        if cells.any() and not cells.all():
            codes = pd.factorize(codes * 2 + cells)[0]
    for key, cells in categorical.items():
        first = cells[0]
        if not pd.isna(first) and (cells[:64] == first).all() and (cells == first).all():  # one value throughout
            fixed[key] = _value(cells, 0)
            continue
        column, values = pd.factorize(cells)  # an empty cell has code -1
        if len(values) == 0:
            fixed[key] = None
        else:
            varying[key] = column, values
            codes = pd.factorize(codes * (len(values) + 1) + column + 1)[0]
    if codes.max(initial=0) == 0:
        yield fixed, np.arange(size)
        return
    small = codes.astype(np.int16) if codes.max() < 2**15 else codes  # few groups: numpy's radix sort
    order = np.argsort(small, kind="stable")  # each group's rows in the frame's order
    for rows in np.split(order, np.cumsum(np.bincount(codes))[:-1]):
        yield {**fixed, **{k: _value(values, column[rows[0]]) for k, (column, values) in varying.items()}}, rows


def _value(values, code: int):
    """A categorical cell from its factorized code: None when empty, Python scalars for numpy ones."""
    if code < 0:
        return None
    v = values[code]
    return v.item() if isinstance(v, np.generic) else v


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
    with python_spelling():
        given = _frame(points)
        if given.empty:
            return pd.DataFrame(index=given.index)
        keep_freed_memory_once()  # a pass's temporaries reuse freed memory, not fresh pages (dse.allocator)
        return _evaluate_frame(given)


_POINTS = "a pandas DataFrame, a list of dicts (one per design point) or a dict of equal-length columns"
_SCALARS = ("string", "floating", "integer", "mixed-integer-float", "boolean", "empty")  # infer_dtype's kinds
_NOT_SCALAR = (list, tuple, dict, set, frozenset, np.ndarray, pd.Series, pd.DataFrame)


def _frame(points) -> pd.DataFrame:
    """The design points as a DataFrame with one scalar per cell, or a UserInputError naming the row."""
    if isinstance(points, list | tuple):
        for i, p in enumerate(points):
            if not isinstance(p, Mapping):
                raise UserInputError("points", p, "a dict of options for each design point", hint=f"(row {i})")
        points = pd.DataFrame(list(points))
    elif isinstance(points, Mapping):
        try:
            points = pd.DataFrame(points)
        except (ValueError, TypeError):  # scalars only, or columns of different lengths
            raise UserInputError("points", points, _POINTS) from None
    elif not isinstance(points, pd.DataFrame):
        raise UserInputError("points", points, _POINTS)
    for key in points.columns:
        if not isinstance(key, str):
            raise UserInputError("points column", key, "an option name (a string)")
    cfg.check_keys({c: None for c in points.columns})
    for key, dtype in points.dtypes.items():
        if dtype == np.dtype(object) and pd.api.types.infer_dtype(points[key]) not in _SCALARS:
            bad = np.flatnonzero(points[key].map(lambda v: isinstance(v, _NOT_SCALAR)).to_numpy(dtype=bool))
            if len(bad):
                raise UserInputError(cfg.option(key), points[key].iloc[bad[0]], "one value per cell (a number or "
                                     "a name), not a collection", hint=f"(row {bad[0]})")
    return points


def _evaluate_frame(frame: pd.DataFrame) -> pd.DataFrame:
    size = len(frame)
    given = dict(frame.items())  # each column once
    numeric = {k: _numeric(given[k]) for k in cfg.NUMERIC if k in given}
    categorical = {k: given[k].to_numpy() for k in CATEGORICAL if k in given}
    blocks: list[tuple[np.ndarray, dict]] = []
    for c, rows in _groups(categorical, [empty for _, empty in numeric.values()], size):
        with _at_rows(rows):
            w = cfg.resolve_workload(c["workload"], c["workload_file"])
            dev = cfg.resolve_hardware(c["hardware"], c["hardware_file"])
            cats = {k: cfg.check_choice(k, c[k]) if c[k] is not None else cfg.DEFAULTS.get(k) for k in cfg.CHOICES}
            s = _setup(w, dev, cats, c["sparsity"], c["precision"] is not None)
            nums = {k: _column(values if len(rows) == size else values[rows], k)
                    for k, (values, empty) in numeric.items() if not empty[rows[0]]}
            present = {**{k: v for k, v in c.items() if v is not None and k in categorical}, **nums}
        site, chunk = None, CHUNK[s.mode]
        for start in range(0, len(rows), chunk):
            part = {k: v[start:start + chunk] for k, v in nums.items()}
            with _at_rows(rows, start):
                n = cfg.numbers(part, s)
                cfg.engine_options(n, part, {k: cats[k] for k in cfg.ENGINE_CHOICES if k in present}, s)
                cfg.check_horizon(present, cats["purchase"])
                if _horizon(present):
                    site = _site_cached(dev, c["region"], cats["purchase"])
            block = rows[start:start + chunk]
            blocks.append((block, _block(s, n, block, bool(SLO_OPTIONS.intersection(nums)), site)))
    columns = _assemble(blocks, size)
    for key in COUNTS.intersection(columns):  # nullable: absent on rows of another mode
        columns[key] = _counts(columns[key])
    return pd.DataFrame(columns, index=frame.index, copy=False)


def _counts(column: np.ndarray) -> pd.arrays.IntegerArray:
    """A count column as nullable integers (as `evaluate` gives them: int()), empty where NaN."""
    empty = np.isnan(column)
    return pd.arrays.IntegerArray(np.where(empty, 0.0, column).astype(np.int64), empty)


def _numeric(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A numeric option's cells (floats when the column is numbers) and which of them are empty."""
    if column.dtype.kind in "iuf":
        values = column.to_numpy(dtype=float, na_value=np.nan)
        return values, np.isnan(values)
    return column.to_numpy(dtype=object), column.isna().to_numpy()


def _assemble(blocks: list[tuple[np.ndarray, dict]], size: int) -> dict[str, np.ndarray]:
    """Whole metric columns from the blocks' (row positions, metrics), in the order metrics first
    appear; a metric a block lacks (a row of another mode) is empty there (NaN), and the column's
    type is what concatenating the blocks' frames gives: numbers stay floats, anything mixed with
    truth values or text becomes objects. A block's metric is a column or one value for its rows."""
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for rows, metrics in blocks:
        for key, values in metrics.items():
            parts.setdefault(key, []).append((rows, values))
    columns = {}
    for key, pieces in parts.items():
        kinds = {values.dtype for _, values in pieces}
        whole = sum(len(rows) for rows, _ in pieces) == size
        if len(kinds) == 1 and (whole or kinds <= {np.dtype(float), np.dtype(object)}):
            dtype = kinds.pop()
        else:
            dtype = np.dtype(float) if all(k.kind in "iuf" for k in kinds) else np.dtype(object)
        column = np.empty(size, dtype) if whole else np.full(size, np.nan, dtype)
        for rows, values in pieces:
            if rows[-1] - rows[0] == len(rows) - 1:  # consecutive rows (positions ascend): a slice is faster
                column[rows[0]:rows[-1] + 1] = values
            else:
                column[rows] = values
        columns[key] = column
    return columns


def _block(s: Setup, n: dict, rows: np.ndarray, slo: bool, site: economics.Site | None) -> dict[str, np.ndarray]:
    """Metrics of a block of design points that share their categorical choices: each a column, or
    one value (a 0-d array) where it is the same on every row."""
    m, checks = MODELS[s.mode](s, n)
    if n["pipeline"]:
        m = with_data_pipeline(m, n, s)
    _not_applicable(m, n, s.mode)
    metrics = common(m, checks, n, [], s.ex.compute)
    if slo and n["scheduler"] == "continuous":  # columns throughout
        fits = metrics["feasible"]
        service_levels(metrics, n, [])
        _uncounted(metrics, fits)
    metrics.pop("infeasible_reasons")
    block = {k: _cells(v) for k, v in metrics.items()}
    if slo and n["scheduler"] == "static":
        frame = pd.DataFrame({k: np.broadcast_to(v, (len(rows),)) for k, v in block.items()})
        _service_level_rows(frame, n, len(rows))
        block = {k: frame[k].to_numpy() for k in frame.columns}
    if site is not None:
        added = economics.apply({k: np.broadcast_to(v, (len(rows),)) for k, v in block.items()}, n, s.mode, site)
        block = {**{k: v for k, v in block.items() if k not in added},
                 **{k: np.asarray(v, dtype=float) for k, v in added.items()}}
    return block


def _cells(value) -> np.ndarray:
    """A metric as an array (text as Python strings, as pandas keeps them)."""
    if isinstance(value, str):
        return np.array(value, dtype=object)
    cells = np.asarray(value)
    return cells.astype(object) if cells.dtype.kind == "U" else cells


def _service_level_rows(block: pd.DataFrame, n: dict, size: int) -> None:
    """SLO checks and queueing search, row by row, for frames that give a rate or an SLO."""
    queued = n["qps"] is not None
    for j, idx in enumerate(block.index):
        row = {k: (float(np.broadcast_to(v, (size,))[j]) if v is not None and np.ndim(v) else v)
               for k, v in n.items()}
        m = {k: block.at[idx, k] for k in ("request_latency_s", "replicas", "ttft_s", "itl_s")}
        m.update(feasible=bool(block.at[idx, "feasible"]), infeasible_reasons=[])
        service_levels(m, row, [])
        _uncounted(m, bool(block.at[idx, "feasible"]))
        block.loc[idx, "feasible"] = m["feasible"]
        for k in ("queue_utilization", "ttft_p50_s", "ttft_p99_s", "request_latency_p99_s", "replicas_needed",
                  "gpus_needed") if queued else ():
            block.loc[idx, k] = m.get(k, np.nan)
