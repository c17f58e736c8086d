"""Pareto fronts of evaluated design points: exact non-dominated filtering and hypervolume (moocore),
the knee point, and the contract's JSON form (DESIGN.md 4.2)."""
from __future__ import annotations

import math

import moocore
import numpy as np
import pandas as pd

from dse.objectives import Objectives, describe


def pareto(points: pd.DataFrame, objectives: Objectives) -> pd.DataFrame:
    """The non-dominated rows among the feasible ones (duplicates in objective space kept once), in
    the order of the first objective. `points` holds metric columns and a `feasible` column."""
    if points.empty:
        return points
    feasible = points[points["feasible"].astype(bool) & objectives.feasible(points)]
    if feasible.empty:
        return feasible
    values = objectives.values(feasible)
    keep = moocore.is_nondominated(values, maximise=objectives.maximise)
    front = feasible[keep]
    return front.iloc[np.argsort(values[keep][:, 0], kind="stable")]


def hypervolume(front: pd.DataFrame, objectives: Objectives) -> float | None:
    """Hypervolume of a front against the objectives' reference point (None without one)."""
    ref = objectives.reference
    if ref is None:
        return None
    if front.empty:
        return 0.0
    return float(moocore.hypervolume(objectives.values(front), ref=ref, maximise=objectives.maximise))


def knee(front: pd.DataFrame, objectives: Objectives) -> int | None:
    """Position (in `front`) of the knee: the point closest to the ideal once each objective is scaled
    to [0, 1] over the front, the best compromise when no objective is preferred. Points beyond the
    objectives' reference point (which the hypervolume ignores too) neither count nor stretch the scale."""
    if front.empty:
        return None
    values = objectives.values(front)
    values = np.where(objectives.maximise, -values, values)
    if objectives.reference is not None:
        ref = np.where(objectives.maximise, -np.asarray(objectives.reference), objectives.reference)
        inside = (values <= ref).all(axis=1)
        if inside.any():
            values = np.where(inside[:, None], values, np.inf)
            low, high = values[inside].min(axis=0), values[inside].max(axis=0)
            scaled = (values - low) / np.where(high > low, high - low, 1.0)
            return int(np.argmin(np.linalg.norm(scaled, axis=1)))
    low, high = values.min(axis=0), values.max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def records(front: pd.DataFrame, params: list[str]) -> list[dict]:
    """``[{"params": {...}, "metrics": {...}}, ...]`` with JSON-safe values (NaN and missing as absent)."""
    out = []
    for row in front.to_dict("records"):
        clean = {k: plain(v) for k, v in row.items() if not _missing(v)}
        out.append({"params": {k: v for k, v in clean.items() if k in params},
                    "metrics": {k: v for k, v in clean.items() if k not in params and k != "trial"}})
    return out


def contract(study: str, objectives: Objectives, evaluated: int, front: pd.DataFrame, params: list[str]) -> dict:
    """The object `dse front --json` and `dse sweep --json` print."""
    return {"study": study, "objectives": describe(objectives), "evaluated": int(evaluated),
            "front": records(front, params)}


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def plain(v):
    """A value as JSON and tables show it: numpy scalars unwrapped, whole floats as integers."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v
