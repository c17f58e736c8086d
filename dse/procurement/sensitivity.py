"""Sensitivity of each recommendation to the uncertain inputs, and uncertainty of its metrics.

Around a recommendation, each input that concerns it (its region's electricity price and PUE, its
accelerator's price, ...) is set to its catalog low and high on every candidate design it concerns,
through `evaluate_many` (all values of a scan in one frame). The recommendation's metric at both ends
gives the tornado bar; where another design becomes the recommendation inside the range, the flip
point is found by bisection on the models (a bracket cut into 16 per evaluation).

Candidates are the study's feasible trials. The price, PUE, intensity, utilisation and life inputs
enter the metrics as a + b * g(x) with g monotone (linearly, or as 1/x), so the difference between
two designs is monotone in the input: a design that beats the recommendation anywhere in the range
beats it at one end (failure rates enter through goodput, monotone but not of that form: for them
this is a close approximation). Designs that beat it at neither end are dropped before the scan (unless a
constraint rules the recommendation out at one end: then every design feasible at an end stays)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse import front as fr
from dse.evaluation import evaluate_many
from dse.objectives import Objective, Objectives
from dse.procurement.inputs import Range
from dse.procurement.roles import best

GRID = 9  # scan values across a range before narrowing down a flip
REFINE = (16, 3)  # a flip's bracket is cut into 16 (one evaluation of all cuts) three times: 1/4,096 of a step


@dataclass
class Candidates:
    """The designs a recommendation competes with: option frame (what `evaluate_many` takes) and their
    metrics at the catalog's values, on the same index."""

    options: pd.DataFrame
    metrics: pd.DataFrame
    objectives: Objectives

    def at(self, rng: Range, values: np.ndarray, labels: pd.Index) -> list[pd.DataFrame]:
        """Metrics of the designs `labels` with the input set to each of `values` where it concerns
        them (one `evaluate_many` call for all values), the others as they are."""
        concerned = labels[rng.rows(self.options.loc[labels]).to_numpy()]
        base = self.decisive(self.metrics.loc[labels])
        if not len(concerned):
            return [base for _ in values]
        stacked = pd.concat([self.options.loc[concerned].assign(**{rng.input.option: v}) for v in values],
                            ignore_index=True)
        fresh = self.decisive(evaluate_many(stacked))
        out = []
        for k in range(len(values)):
            part = fresh.iloc[k * len(concerned):(k + 1) * len(concerned)].set_axis(concerned)
            out.append(pd.concat([base.drop(index=concerned), part]).loc[labels])
        return out

    def decisive(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """The metrics that decide a recommendation (feasibility, objectives, constrained metrics) as floats."""
        o = self.objectives
        columns = list(dict.fromkeys(["feasible", *o.metrics, *(c.metric for c in o.constraints)]))
        return metrics.reindex(columns=columns).apply(pd.to_numeric, errors="coerce").astype(float)

    def ok(self, metrics: pd.DataFrame) -> np.ndarray:
        """Which rows are feasible: the models' verdict and the study's constraints."""
        return (metrics["feasible"].to_numpy(dtype=float) == 1.0) & self.objectives.feasible(metrics)


def winner(cands: Candidates, metrics: pd.DataFrame, objective: Objective | None):
    """The label of the recommended design among `metrics` (by `objective`, or the knee of their front
    when None); None when no design is feasible."""
    feasible = metrics[cands.ok(metrics)]
    if objective is None:
        front = fr.pareto(feasible.assign(feasible=True), cands.objectives)
        k = fr.knee(front, cands.objectives)
        return None if k is None else front.index[k]
    k = best(feasible, objective, cands.objectives)
    return None if k is None else feasible.index[k]


@dataclass
class Flip:
    """Where the recommendation changes: the input value and the design recommended past it (None: no
    feasible design)."""

    at: float
    to: object


def sensitivity(cands: Candidates, rec, objective: Objective | None, metric: str, rng: Range,
                pool: pd.Index) -> dict:
    """The tornado entry of one input for the recommendation `rec` (a label of `cands`): its `metric`
    at the input's low and high, and the flip nearest the catalog value, if any. `pool` holds the
    labels of the designs that may take over (all feasible ones, or the front for the knee)."""
    ends = cands.at(rng, np.array([rng.low, rng.high]), pool.union([rec]))
    entry = {"input": rng.name, "label": rng.input.label, "unit": rng.input.unit, "value": rng.value,
             "low": rng.low, "high": rng.high, "metric": metric, "metric_low": _number(ends[0].at[rec, metric]),
             "metric_high": _number(ends[1].at[rec, metric]), "source": rng.source}
    if objective is not None:
        pool = _contenders(cands, rec, objective, ends, pool)
    flip = _nearest_flip(cands, rec, objective, rng, pool.union([rec]))
    entry["flips_at"] = None if flip is None else flip.at
    entry["flips_to"] = None if flip is None else flip.to
    return entry


def _number(v) -> float | None:
    v = pd.to_numeric(v, errors="coerce")
    return None if pd.isna(v) else float(v)


def _contenders(cands: Candidates, rec, objective: Objective, ends: list[pd.DataFrame], pool: pd.Index) -> pd.Index:
    """The designs of `pool` that are feasible and at least as good as `rec` at one end of the range."""
    sign = -1.0 if objective.direction == "maximize" else 1.0
    frames = [m.loc[pool.union([rec])] for m in ends]
    ok = [cands.ok(m) for m in frames]
    # a constraint `rec` breaks at one end (a budget) makes it lose inside the range to any design that
    # is feasible there, and a design feasible anywhere is feasible at one end (its metrics are monotone)
    out = not all(o[m.index.get_loc(rec)] for o, m in zip(ok, frames, strict=True))
    keep = pd.Series(False, index=pool)
    for m, o in zip(frames, ok, strict=True):
        value = sign * m[objective.metric].to_numpy()
        better = o if out else o & (value <= value[m.index.get_loc(rec)])
        keep |= pd.Series(better, index=m.index).reindex(pool, fill_value=False)
    return pool[keep.to_numpy()]


def _nearest_flip(cands: Candidates, rec, objective: Objective | None, rng: Range, labels: pd.Index) -> Flip | None:
    """Scan the range, then bisect the first change of winner on each side of the catalog value; the
    flip nearer that value (relative to the range)."""
    grid = np.unique(np.concatenate([np.linspace(rng.low, rng.high, GRID), [rng.value]]))
    winners = [winner(cands, m, objective) for m in cands.at(rng, grid, labels)]
    start = int(np.searchsorted(grid, rng.value))
    flips = []
    for step in (1, -1):
        i = start
        while 0 <= i + step < len(grid) and winners[i + step] == rec:
            i += step
        if 0 <= i + step < len(grid):
            flips.append(_narrow(cands, rec, objective, rng, labels, grid[i], grid[i + step], winners[i + step]))
    if not flips:
        return None
    return min(flips, key=lambda f: abs(f.at - rng.value))


def _narrow(cands, rec, objective, rng, labels, inside: float, outside: float, beyond) -> Flip:
    """Narrow [inside, outside], where `rec` wins at `inside` and not at `outside`, to the first change
    of winner: a bisection that halves the bracket four times per `evaluate_many` call."""
    cuts, rounds = REFINE
    for _ in range(rounds):
        xs = inside + (outside - inside) * np.arange(1, cuts) / cuts
        winners = [winner(cands, m, objective) for m in cands.at(rng, xs, labels)]
        lost = next((j for j, w in enumerate(winners) if w != rec), None)
        if lost is None:
            inside = xs[-1]
        else:
            inside, outside, beyond = (xs[lost - 1] if lost else inside), xs[lost], winners[lost]
    return Flip(at=float(outside), to=beyond)


def corners(cands: Candidates, label, rngs: list[Range]) -> tuple[pd.Series, pd.Series]:
    """Metrics of one design with every input that concerns it at its optimistic end, and at its
    pessimistic end (the end that makes cost and carbon worse), in one `evaluate_many` call."""
    row = cands.options.loc[[label]]
    good = {r.input.option: (r.low if r.input.worse == "high" else r.high) for r in rngs}
    bad = {r.input.option: (r.high if r.input.worse == "high" else r.low) for r in rngs}
    both = evaluate_many(pd.concat([row.assign(**good), row.assign(**bad)], ignore_index=True))
    return both.iloc[0], both.iloc[1]
