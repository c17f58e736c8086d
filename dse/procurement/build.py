"""A procurement report (DESIGN.md 4.2, `dse report`): the study run to its target, the recommended
designs of its front with their runners-up, the sensitivity of each to the uncertain inputs with the
flip points, their metric intervals over the inputs' ranges, parameter importance, the assumptions
with their sources, and on request the robust front (dominance under the pessimistic case)."""
from __future__ import annotations

from functools import lru_cache

import pandas as pd

from dse import front as fr
from dse.evaluation import evaluate_many
from dse.procurement import inputs as inp
from dse.procurement.roles import ROLES, pick, role_objectives, runners_up
from dse.procurement.sensitivity import Candidates, corners, sensitivity
from dse.study import Study


def build(study: Study, trials: int | None = None, vary: list[str] | None = None, robust: bool = False,
          progress: bool = False) -> dict:
    """The report as one JSON-ready object; the study is first run to its target (`trials`, default the
    study file's) when the storage holds fewer complete trials. `vary` names the uncertain inputs
    (default: all of `inputs.INPUTS`)."""
    spec = study.spec
    roles = role_objectives(spec.objectives, str(spec.path))
    chosen_inputs = inp.check_keys(vary)
    study.run(trials=trials, progress=progress)
    params = study.params()
    all_trials = study.trials()
    front = fr.pareto(all_trials, spec.objectives)
    report = {"study": spec.name, "question": spec.description or spec.name,
              "objectives": [{"metric": o.metric, "direction": o.direction} for o in spec.objectives.objectives],
              "constraints": [c.text for c in spec.objectives.constraints], "evaluated": len(all_trials),
              "recommendations": dict.fromkeys(ROLES), "runners_up": [], "sensitivity": [], "uncertainty": {},
              "importance": study.importance(), "assumptions": _scenario(spec), "notes": []}
    if front.empty:
        report["notes"].append(study.nothing_feasible() or "no feasible design among the trials")
        return report
    picks = pick(front, spec.objectives, roles)
    labels = {role: front.index[i] for role, i in picks.items()}
    report["recommendations"] = {role: _record(front.loc[[lab]], params) for role, lab in labels.items()}
    report["runners_up"] = [_record(front.iloc[[i]], params) for i in runners_up(front, spec.objectives, picks)]
    cands = _candidates(study, all_trials, front)
    skipped: list[str] = []
    used: dict[str, inp.Range] = {}
    for role in ROLES:
        rec = labels[role]
        objective = roles.get(role)
        metric = (objective or roles["cheapest"]).metric
        pool = front.index if role == "knee" else cands.options.index
        rngs = inp.ranges(_point(cands, rec), chosen_inputs, skipped)
        for rng in rngs:
            used[rng.name] = rng
            entry = sensitivity(cands, rec, objective, metric, rng, pool)
            if entry["flips_at"] is None and _same(entry["metric_low"], entry["metric_high"]):
                continue  # no effect on this recommendation (prices do not move a time)
            entry["recommendation"] = role
            if entry["flips_to"] is not None:
                entry["flips_to"] = _record(cands.metrics.loc[[entry["flips_to"]]], params)
            report["sensitivity"].append(entry)
        report["uncertainty"][role] = _interval(cands, rec, rngs, spec.objectives.metrics)
    report["assumptions"] += [{"input": r.name, "label": r.input.label, "unit": r.input.unit, "value": r.value,
                               "low": r.low, "high": r.high, "source": r.source} for r in used.values()]
    report["assumptions"] += [{"input": "not varied", "note": s} for s in dict.fromkeys(skipped)]
    report["assumptions"] += [{"input": "not varied", "note": s} for s in inp.NOT_VARIED]
    if robust:
        report["robust_front"] = _robust_front(cands, spec.objectives, chosen_inputs, params)
    return report


def _same(a: float | None, b: float | None) -> bool:
    return a is None or b is None or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _record(rows: pd.DataFrame, params: list[str]) -> dict:
    return fr.records(rows, params)[0]


def _scenario(spec) -> list[dict]:
    """The options every design point shares (the study's scenario) as assumptions."""
    return [{"input": k, "value": fr.plain(v), "note": "study scenario"} for k, v in spec.space.fixed.items()]


def _candidates(study: Study, trials: pd.DataFrame, front: pd.DataFrame) -> Candidates:
    """The study's feasible trials (front first, so its labels are kept), once per design point."""
    spec = study.spec
    names = spec.space.names
    feasible = trials[trials["feasible"].astype(bool) & spec.objectives.feasible(trials)]
    both = pd.concat([front, feasible.drop(index=front.index, errors="ignore")])
    both = both[~both[names].astype(str).duplicated()]
    return Candidates(options=spec.space.options(both[names]), metrics=both, objectives=spec.objectives)


def _point(cands: Candidates, label) -> dict:
    return {k: v for k, v in cands.options.loc[label].items() if not (isinstance(v, float) and v != v)}


def _interval(cands: Candidates, label, rngs: list[inp.Range], metrics: list[str]) -> dict:
    """Each objective metric of a design with every input that concerns it at its better end and at its
    worse end: {metric: [low, high]}."""
    if not rngs:
        return {}
    good, bad = corners(cands, label, rngs)
    out = {}
    for m in dict.fromkeys([*metrics, "tco_usd", "carbon_kg"]):
        if m in good and pd.notna(good[m]) and pd.notna(bad[m]):
            a, b = float(good[m]), float(bad[m])
            out[m] = [min(a, b), max(a, b)]
    return out


@lru_cache(maxsize=4096)
def _cached_ranges(key: tuple, inputs: tuple) -> tuple:
    skipped: list[str] = []
    return tuple(inp.ranges(dict(key), inputs, skipped))


def _robust_front(cands: Candidates, objectives, inputs: tuple, params: list[str]) -> list[dict]:
    """The front of the feasible designs judged with every input that concerns each at its worse end."""
    opts = cands.options
    worst = []
    for label in opts.index:
        point = _point(cands, label)
        key = tuple(sorted((k, point[k]) for k in ("region", "hardware", "purchase") if k in point))
        worst.append({r.input.option: (r.high if r.input.worse == "high" else r.low)
                      for r in _cached_ranges(key, inputs)})
    worse = pd.DataFrame(worst, index=opts.index)
    frame = opts.assign(**{c: worse[c].combine_first(opts[c]) if c in opts else worse[c] for c in worse})
    metrics = evaluate_many(frame)
    rows = pd.concat([cands.metrics[[c for c in cands.metrics.columns if c in params]], metrics], axis=1)
    rows["feasible"] = cands.ok(rows)
    return fr.records(fr.pareto(rows, objectives), params)
