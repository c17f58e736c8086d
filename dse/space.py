"""Where to search: parameter domains (choices, integer ranges, powers of two, real ranges), derived
values (``gpus = "tp * replicas"``) and validity rules (``require = "heads % tp == 0"``), written in a
tiny arithmetic language that is parsed, checked and evaluated column-wise, never run as code.
Domains are fixed: a dependent quantity is derived, and a combination that makes no sense is removed
by a rule, so that samplers see the same search space on every trial. The whole space can be
enumerated, a chunk of flat indices at a time, as a frame of design points."""
from __future__ import annotations

import ast
import difflib
import math
import operator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dse import config as cfg
from dse.catalog import registry
from dse.errors import StudyFileError, UnknownNameError, UserInputError
from dse.evaluation import CATEGORICAL, evaluate, evaluate_many

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: np.float_power}  # powers in floats: no unbounded integers, overflow gives inf
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
# Points per group of equal categorical choices below which `Space.evaluate` goes point by point
# (`evaluate`, cached for revisited points) rather than through evaluate_many. Chosen when a group cost
# ~7 ms; since the column-wise speed work (~0.4 ms a group, ~0.3 ms a distinct point) 300 trials of
# llama3-8b-serving take the same CPU time, 1.0-1.1 s, with this at 1, 2, 4 or 16 (2026-11-30).
POINTWISE_BELOW = 16
_GRAMMAR = ("numbers, names, + - * / // % **, comparisons (== != < <= > >=), `and`, `or`, `not`, "
            "parentheses and `name in [\"a\", \"b\"]`")


@dataclass(frozen=True)
class Expr:
    """An arithmetic or logical expression over names, evaluated on scalars or numpy columns."""

    text: str
    tree: ast.expr
    names: frozenset[str]

    @classmethod
    def parse(cls, text: object, where: str) -> Expr:
        if not isinstance(text, str):
            raise StudyFileError(where, text, f"an expression in quotes using {_GRAMMAR}")
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            raise StudyFileError(where, text, f"an expression using {_GRAMMAR}") from None
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif not isinstance(node, _ALLOWED):
                raise StudyFileError(where, text, f"an expression using only {_GRAMMAR} "
                                     f"({type(node).__name__} is not part of it)")
            elif isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
                raise StudyFileError(where, text, "numbers or quoted names as constants")
        return cls(text, tree, frozenset(names))

    def __call__(self, env: dict):
        return _eval(self.tree, env)


_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Name, ast.Constant, ast.List,
            ast.Tuple, ast.Load, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or, ast.In, ast.NotIn,
            *_BINARY, *_COMPARE)


def _eval(node: ast.expr, env: dict):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.BinOp):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _BINARY[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        return np.logical_not(value) if isinstance(node.op, ast.Not) else (-value if isinstance(node.op, ast.USub)
                                                                            else value)
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = combine(out, v)
        return out
    assert isinstance(node, ast.Compare)
    left, result = _eval(node.left, env), True
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _eval(right_node, env)
        if isinstance(op, ast.In | ast.NotIn):
            hit = np.isin(left, right)
            step = hit if isinstance(op, ast.In) else np.logical_not(hit)
        else:
            step = _COMPARE[type(op)](left, right)
        result, left = np.logical_and(result, step), right
    return result


@dataclass(frozen=True)
class Param:
    """A parameter's fixed domain. `kind`: choice, int (with step, or log), pow2 (2^low_exp .. 2^high_exp),
    or float (log optional; `points` makes it enumerable)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()
    step: int = 1
    log: bool = False
    points: int | None = None

    def grid(self) -> np.ndarray | None:
        """Every value of the domain in order (None for a real range without `points`)."""
        if self.kind == "choice":
            return np.array(self.choices, dtype=object if isinstance(self.choices[0], str) else None)
        if self.kind == "int":
            return np.arange(int(self.low), int(self.high) + 1, self.step)
        if self.kind == "pow2":
            return 2 ** np.arange(int(self.low), int(self.high) + 1)
        if self.points is None:
            return None
        return (np.geomspace if self.log else np.linspace)(self.low, self.high, self.points)


@dataclass(frozen=True)
class Rule:
    name: str
    require: Expr


@dataclass(frozen=True)
class Space:
    """Parameters, derived values, rules and the fixed options (scenario) of every design point."""

    params: tuple[Param, ...]
    derived: tuple[tuple[str, Expr], ...] = ()
    rules: tuple[Rule, ...] = ()
    fixed: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Parameter and derived names, in order: the columns of a completed design point."""
        return [p.name for p in self.params] + [n for n, _ in self.derived]

    @property
    def size(self) -> int | None:
        """Number of points before rules; None when a real range makes it continuous."""
        grids = [p.grid() for p in self.params]
        return None if any(g is None for g in grids) else math.prod(len(g) for g in grids)

    def rows(self, flat: np.ndarray) -> pd.DataFrame:
        """Design points by their flat index in the enumeration (parameters only). Named choices vary
        slowest, so consecutive indices share the categorical combination that `evaluate_many` groups
        rows by, and a chunk of them costs a few groups rather than all of them."""
        grids = [p.grid() for p in self.params]
        order = sorted(range(len(grids)), key=lambda i: grids[i].dtype != object)
        digits = np.unravel_index(flat, [len(grids[i]) for i in order])
        columns = {self.params[i].name: grids[i][d] for i, d in zip(order, digits, strict=True)}
        return pd.DataFrame({p.name: columns[p.name] for p in self.params})

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        """Completed points: the whole space when it has at most `n` points, else `n` drawn at random."""
        size = self.size
        if size is not None and size <= n:
            return self.complete(self.rows(np.arange(size)))
        rng = np.random.default_rng(seed)
        if size is not None:
            return self.complete(self.rows(rng.integers(0, size, n)))
        cols = {}
        for p in self.params:
            grid = p.grid()
            if grid is not None:
                cols[p.name] = grid[rng.integers(0, len(grid), n)]
            elif p.log:
                cols[p.name] = np.exp(rng.uniform(np.log(p.low), np.log(p.high), n))
            else:
                cols[p.name] = rng.uniform(p.low, p.high, n)
        return self.complete(pd.DataFrame(cols))

    def complete(self, points: pd.DataFrame) -> pd.DataFrame:
        """Add the derived values to a frame of parameter values."""
        env = {**self.constants, **{k: v for k, v in self.fixed.items() if not isinstance(v, str)},
               **{c: points[c].to_numpy() for c in points.columns}}
        out = points.copy()
        for name, expr in self.derived:
            env[name] = _column(expr, env, float, len(points), f"derived.{name}")
            out[name] = env[name]
        return out

    def broken_rules(self, points: pd.DataFrame) -> dict[str, np.ndarray]:
        """For each rule, which of the (completed) points break it."""
        env = {**self.constants, **self.fixed, **{c: points[c].to_numpy() for c in points.columns}}
        return {r.name: ~_column(r.require, env, bool, len(points), f"rule {r.name!r}") for r in self.rules}

    def options(self, points: pd.DataFrame) -> pd.DataFrame:
        """The `evaluate_many` frame of (completed) points: their option columns plus the fixed options."""
        keys = [c for c in points.columns if c in cfg.ALL_KEYS]
        return points[keys].assign(**{k: v for k, v in self.fixed.items() if k not in keys})

    def evaluate(self, points: pd.DataFrame) -> pd.DataFrame:
        """Metrics of (completed, rule-abiding) points. A point the models refuse is an answer too:
        `feasible` False and its message in `refused`. `evaluate_many` pays a fixed cost per group of
        equal categorical choices, so a frame with few points per group (a sampler's generation over
        many accelerators, precisions and regions) goes point by point through `evaluate` (same
        metrics, and a cache for revisited points); a frame with more (a sweep's chunk) goes through
        `evaluate_many`. When a frame is refused, its groups are tried alone, and a refused group
        point by point."""
        if len(points) < POINTWISE_BELOW:  # fewer points than the crossover: no need to count groups
            keys = [c for c in points.columns if c in cfg.ALL_KEYS]
            fixed = {k: v for k, v in self.fixed.items() if k not in keys}
            return _evaluate_points([{**{k: r[k] for k in keys}, **fixed} for r in points.to_dict("records")],
                                    points.index)
        frame = self.options(points)
        labels = [c for c in CATEGORICAL if c in frame and frame[c].nunique(dropna=False) > 1]
        groups = len(frame[labels].drop_duplicates()) if labels else 1
        if len(frame) < POINTWISE_BELOW * groups:
            return _evaluate_points(frame.to_dict("records"), frame.index)
        try:
            return evaluate_many(frame)
        except UserInputError:
            pass
        if groups > 1:
            split = frame[labels].astype(object).where(frame[labels].notna(), None)
            rows = [r for _, r in split.groupby(labels, sort=False, dropna=False).groups.items()]
            return pd.concat([self.evaluate(points.loc[r]) for r in rows]).loc[points.index]
        return _evaluate_points(frame.to_dict("records"), frame.index)


def _column(expr: Expr, env: dict, kind: type, size: int, where: str) -> np.ndarray:
    """An expression's value on every point, as numbers (derived values) or truth values (rules): one
    per point or one for all; an expression that mixes names and numbers, or gives a list, is refused."""
    try:
        value = np.asarray(expr(env))
        if value.dtype == object or value.dtype.kind not in ("b" if kind is bool else "biuf"):
            raise TypeError(value.dtype)
        return np.broadcast_to(value.astype(kind), (size,))
    except (TypeError, ValueError, OverflowError):
        allowed = "true or false for each point" if kind is bool else "a number for each point"
        raise StudyFileError(where, expr.text, f"an expression giving {allowed} (names compared with names "
                             "or quoted text, numbers with numbers)") from None


def with_metrics(points: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Design points beside their metrics (a metric wins over a parameter of the same name, e.g. gpus)."""
    return pd.concat([points.drop(columns=list(metrics.columns), errors="ignore"), metrics], axis=1)


def _evaluate_points(records: list[dict], index: pd.Index) -> pd.DataFrame:
    """Metrics of design points (option records), one by one through `evaluate`; empty cells left out."""
    rows = []
    for record in records:
        options = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items() if not pd.isna(v)}
        try:
            metrics = evaluate(**options)
        except UserInputError as exc:
            rows.append({"feasible": False, "refused": str(exc)})
            continue
        metrics.pop("infeasible_reasons")
        rows.append(metrics)
    return pd.DataFrame(rows, index=index)


# ---- reading a space from a parsed TOML table -------------------------------------------------------

_KINDS = ("choices", "int", "pow2", "float")
_PARAM_KEYS = (*_KINDS, "step", "log", "points")


def parse_space(raw: object, where: str, fixed: dict, constants: dict) -> Space:
    """Build and check a Space from a parsed table with `param`, `derived` and `rule` entries.
    `fixed` holds the scenario's options (already checked); `constants` names usable in expressions."""
    if not isinstance(raw, dict):
        raise StudyFileError(f"{where}: space", raw, "a table with [param.NAME] entries")
    unknown = set(raw) - {"param", "derived", "rule", "description"}
    if unknown:
        raise UnknownNameError(f"{where}: key", sorted(unknown)[0], ["param", "derived", "rule", "description"])
    entries = raw.get("param")
    if not isinstance(entries, dict) or not entries:
        raise StudyFileError(f"{where}: param", entries, "one or more [param.NAME] tables, e.g. "
                             "[param.batch] pow2 = [1, 256]")
    params = tuple(_param(name, spec, f"{where}: param.{name}") for name, spec in entries.items())
    derived_raw = raw.get("derived", {})
    if not isinstance(derived_raw, dict):
        raise StudyFileError(f"{where}: derived", derived_raw, "a table of NAME = \"expression\"")
    derived = tuple((name, Expr.parse(text, f"{where}: derived.{name}")) for name, text in derived_raw.items())
    rules = tuple(_rule(i, r, f"{where}: rule[{i}]") for i, r in enumerate(raw.get("rule", [])))
    space = Space(params, derived, rules, fixed, constants)
    _check_names(space, where)
    return space


def _param(name: str, spec: object, where: str) -> Param:
    if not isinstance(spec, dict):
        raise StudyFileError(where, spec, "a table with one of choices = [...], int = [lo, hi], pow2 = [lo, hi] "
                             "or float = [lo, hi]")
    bad = set(spec) - set(_PARAM_KEYS)
    if bad:
        raise UnknownNameError(f"{where} key", sorted(bad)[0], _PARAM_KEYS)
    kinds = [k for k in _KINDS if k in spec]
    if len(kinds) != 1:
        raise StudyFileError(where, spec, "exactly one of choices, int, pow2 or float")
    kind, value = kinds[0], spec[kinds[0]]
    log, step, points = spec.get("log", False), spec.get("step", 1), spec.get("points")
    if not isinstance(log, bool):
        raise StudyFileError(f"{where}.log", log, "true or false")
    if kind == "choices":
        if not isinstance(value, list) or not value or len({type(v) for v in value}) != 1 or \
                not isinstance(value[0], str | int | float) or len(set(value)) != len(value):
            raise StudyFileError(f"{where}.choices", value, "a non-empty list of distinct names or numbers, all of "
                                 "one type")
        return Param(name, "choice", choices=tuple(value))
    ok = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or value[0] > value[1]:
        raise StudyFileError(f"{where}.{kind}", value, "[low, high] with low <= high")
    low, high = value
    if kind == "float":
        if points is not None and (not isinstance(points, int) or isinstance(points, bool) or points < 2):
            raise StudyFileError(f"{where}.points", points, "an integer >= 2 (grid points for a sweep)")
        if log and low <= 0:
            raise StudyFileError(f"{where}.float", value, "a range above 0 on a log scale")
        return Param(name, "float", float(low), float(high), log=log, points=points)
    if not isinstance(low, int) or not isinstance(high, int):
        raise StudyFileError(f"{where}.{kind}", value, "whole numbers [low, high]")
    if kind == "pow2":
        if low < 1 or low & (low - 1) or high & (high - 1):
            raise StudyFileError(f"{where}.pow2", value, "powers of two [low, high], e.g. [1, 64]")
        return Param(name, "pow2", low.bit_length() - 1, high.bit_length() - 1)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1 or (high - low) % step:
        raise StudyFileError(f"{where}.step", step, f"a positive integer dividing high - low ({high - low})")
    if log and (step != 1 or low < 1):
        raise StudyFileError(f"{where}.log", log, "only for ranges from 1 up with step 1")
    return Param(name, "int", low, high, step=step, log=log)


def _rule(i: int, raw: object, where: str) -> Rule:
    if not isinstance(raw, dict) or "require" not in raw or set(raw) - {"name", "require"}:
        raise StudyFileError(where, raw, "a table with `require = \"expression\"` and optionally `name`")
    expr = Expr.parse(raw["require"], f"{where}.require")
    return Rule(str(raw.get("name", expr.text)), expr)


def _check_names(space: Space, where: str) -> None:
    """Every name is a dse option (checked against its domain) or a helper used by an expression, and
    every name an expression uses exists."""
    used = {n for _, e in space.derived for n in e.names} | {n for r in space.rules for n in r.require.names}
    known = set(space.constants) | set(space.fixed)
    for p in space.params:
        _check_name(p.name, used, where, "param")
        if p.name in cfg.ALL_KEYS:
            grid = p.grid()
            values = list(p.choices) if p.kind == "choice" else [grid[0], grid[-1]] if grid is not None else \
                [p.low, p.high]
            for v in values:
                check_option(p.name, v.item() if isinstance(v, np.generic) else v, f"{where}: param.{p.name}")
        known.add(p.name)
    for name, expr in space.derived:
        _check_name(name, used, where, "derived")
        _check_expr_names(expr, known, f"{where}: derived.{name}")
        known.add(name)
    for r in space.rules:
        _check_expr_names(r.require, known, f"{where}: rule {r.name!r}")


def _check_name(name: str, used: set[str], where: str, table: str) -> None:
    if name not in cfg.ALL_KEYS and name not in used:
        raise UnknownNameError(f"{where}: {table} name", name, cfg.ALL_KEYS,
                               hint=_suggest(name, cfg.ALL_KEYS) or "A helper name must be used by a derived "
                               "value or a rule", where="dse eval --help")


def _check_expr_names(expr: Expr, known: set[str], where: str) -> None:
    for n in sorted(expr.names - known):
        raise UnknownNameError(f"{where}: name", n, known, hint=_suggest(n, known) or
                               f"names defined before it: {', '.join(sorted(known))}")


def _suggest(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


_CATALOGS = {"hardware": "hardware", "workload": "workloads", "region": "regions"}


def check_option(name: str, value: object, where: str) -> None:
    """Check one option value against the option table and the catalog, naming `where` on error."""
    try:
        cfg.check_keys({name: value})
        if name in _CATALOGS:
            registry(_CATALOGS[name]).get(str(value), where)
        elif name in cfg.CHOICES:
            cfg.check_choice(name, value)
        elif name in cfg.NUMERIC:
            cfg.check_number(name, value)
        elif name == "sparsity":
            cfg.sparsity(value)
    except UnknownNameError as exc:
        raise UnknownNameError(where, exc.value, exc.choices, hint=exc.hint, where=exc.where) from None
    except UserInputError as exc:
        raise StudyFileError(where, exc.value, exc.allowed, hint=exc.hint) from None
