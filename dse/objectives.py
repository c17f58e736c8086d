"""What counts as good: metrics with directions (and hypervolume reference values) and outcome
constraints such as ``itl_s <= 0.05`` or ``feasible``, parsed with a tiny grammar (metric, operator,
number), never evaluated as code. Works on a pandas frame of metrics, one row per design point."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse.errors import StudyFileError, UnknownNameError

DIRECTIONS = ("minimize", "maximize")
_OPS = {"<=": np.less_equal, "<": np.less, ">=": np.greater_equal, ">": np.greater, "==": np.equal,
        "!=": np.not_equal}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:(<=|>=|==|!=|<|>)\s*(\S+))?\s*$")
CONSTRAINT_FORM = ("`metric <= number` (operators <= < >= > == !=, e.g. \"itl_s <= 0.05\") or a true/false "
                   "metric such as \"feasible\"")
NAN_VIOLATION = 1e6  # a metric the models could not give (NaN) violates its constraint by this much


@dataclass(frozen=True, slots=True)
class Objective:
    """One metric to minimize or maximize; `reference` is its hypervolume reference value."""

    metric: str
    direction: str
    reference: float | None = None


@dataclass(frozen=True, slots=True)
class Constraint:
    """``metric op bound``, or a true/false metric that must be true when `op` is None."""

    metric: str
    op: str | None
    bound: float
    text: str

    def violation(self, values: np.ndarray) -> np.ndarray:
        """0 where satisfied; where not, a positive violation relative to the bound (NaN: `NAN_VIOLATION`)."""
        if self.op is None:
            ok = np.nan_to_num(values, nan=0.0) != 0
            return np.where(ok, 0.0, np.where(np.isnan(values), NAN_VIOLATION, 1.0))
        ok = _OPS[self.op](values, self.bound)
        scale = abs(self.bound) or 1.0
        gap = np.maximum(np.abs(values - self.bound) / scale, 1e-9)
        return np.where(ok, 0.0, np.where(np.isnan(values), NAN_VIOLATION, gap))


FEASIBLE = Constraint("feasible", None, 0.0, "feasible")


def parse_constraint(text: object, field: str) -> Constraint:
    """Parse ``"itl_s <= 0.05"`` or ``"feasible"``; anything else is a StudyFileError naming `field`."""
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if not match:
        raise StudyFileError(field, text, CONSTRAINT_FORM)
    metric, op, number = match.groups()
    if op is None:
        return Constraint(metric, None, 0.0, metric)
    try:
        bound = float(number)
    except ValueError:
        bound = math.nan
    if not math.isfinite(bound):
        raise StudyFileError(field, text, f"a finite number after {op!r}: {CONSTRAINT_FORM}")
    return Constraint(metric, op, bound, f"{metric} {op} {number}")


@dataclass(frozen=True)
class Objectives:
    """The objectives of a study and its outcome constraints (model feasibility always included)."""

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def maximise(self) -> np.ndarray:
        return np.array([o.direction == "maximize" for o in self.objectives])

    @property
    def reference(self) -> np.ndarray | None:
        """The hypervolume reference point, when every objective gives its value."""
        refs = [o.reference for o in self.objectives]
        return None if None in refs else np.array(refs, dtype=float)

    def check_metrics(self, available: dict[str, object], where: str) -> None:
        """Refuse metrics the models do not give for this study (with suggestions), and objectives
        that are not numbers. `available` is one evaluated design point's metrics."""
        for o in self.objectives:
            if o.metric not in available:
                raise UnknownNameError(f"{where}: objective metric", o.metric, available,
                                       where="dse eval ... --json")
            if isinstance(available[o.metric], str | list):
                raise StudyFileError(f"{where}: objective metric", o.metric, "a numeric metric (this one is "
                                     f"text, e.g. {available[o.metric]!r})")
        for c in self.constraints:
            if c.metric not in available:
                raise UnknownNameError(f"{where}: constraint metric", c.metric, available,
                                       where="dse eval ... --json")

    def values(self, metrics: pd.DataFrame) -> np.ndarray:
        """Objective values, one row per design point, in natural units and directions (NaN kept)."""
        return np.column_stack([_numbers(metrics, o.metric) for o in self.objectives])

    def violations(self, metrics: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per constraint (by its text), each point's violation; an objective the models could not
        give (NaN) counts as a violated constraint of its own."""
        out = {c.text: c.violation(_numbers(metrics, c.metric)) for c in self.constraints}
        for o in self.objectives:
            out[f"{o.metric} is a number"] = np.where(np.isnan(_numbers(metrics, o.metric)), NAN_VIOLATION, 0.0)
        return out

    def feasible(self, metrics: pd.DataFrame) -> np.ndarray:
        """Which points satisfy every constraint and have every objective defined."""
        ok = np.ones(len(metrics), dtype=bool)
        for v in self.violations(metrics).values():
            ok &= v <= 0
        return ok


def _numbers(metrics: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in metrics:
        return np.full(len(metrics), np.nan)
    if metrics[metric].dtype.kind in "biuf":  # already numbers (bool and NaN included): no conversion
        return metrics[metric].to_numpy(dtype=float)
    return pd.to_numeric(metrics[metric].astype(object).where(metrics[metric].notna(), np.nan),
                         errors="coerce").to_numpy(dtype=float)


def parse_objectives(raw: dict, where: str, extra_constraints: list | None = None) -> Objectives:
    """Build Objectives from a parsed objectives table: ``[[objective]]`` entries (metric, direction,
    reference) and ``constraints`` (a list of strings); `where` names the file for messages."""
    unknown = set(raw) - {"objective", "constraints", "description"}
    if unknown:
        key = sorted(unknown)[0]
        raise UnknownNameError(f"{where}: key", key, ["objective", "constraints", "description"])
    entries = raw.get("objective")
    if not isinstance(entries, list) or not entries:
        raise StudyFileError(f"{where}: objective", entries, "one or more [[objective]] tables with `metric` "
                             "and `direction`")
    objectives = []
    for i, e in enumerate(entries):
        field = f"{where}: objective[{i}]"
        if not isinstance(e, dict):
            raise StudyFileError(field, e, "a table with `metric`, `direction` and optionally `reference`")
        bad = set(e) - {"metric", "direction", "reference"}
        if bad:
            raise UnknownNameError(f"{field} key", sorted(bad)[0], ["metric", "direction", "reference"])
        if not isinstance(e.get("metric"), str):
            raise StudyFileError(f"{field}.metric", e.get("metric"), "a metric name such as \"ttft_s\"")
        direction = e.get("direction", "minimize")
        if direction not in DIRECTIONS:
            raise UnknownNameError(f"{field}.direction", direction, DIRECTIONS)
        ref = e.get("reference")
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int | float) or not math.isfinite(ref)):
            raise StudyFileError(f"{field}.reference", ref, "a finite number (the hypervolume reference value)")
        objectives.append(Objective(e["metric"], direction, None if ref is None else float(ref)))
    if len({o.metric for o in objectives}) < len(objectives):
        raise StudyFileError(f"{where}: objective", [o.metric for o in objectives], "each metric at most once")
    texts = raw.get("constraints", [])
    if not isinstance(texts, list):
        raise StudyFileError(f"{where}: constraints", texts, f"a list of constraints, each {CONSTRAINT_FORM}")
    constraints = [FEASIBLE]
    for i, text in enumerate([*texts, *(extra_constraints or [])]):
        c = parse_constraint(text, f"{where}: constraints[{i}]")
        if c.text not in {k.text for k in constraints}:
            constraints.append(c)
    return Objectives(tuple(objectives), tuple(constraints))


def describe(objectives: Objectives) -> list[dict]:
    """The contract's ``objectives`` list: ``[{"metric": ..., "direction": ...}, ...]``."""
    return [{"metric": o.metric, "direction": o.direction} for o in objectives.objectives]

