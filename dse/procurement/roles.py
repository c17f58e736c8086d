"""What a procurement report recommends, from the study's own objectives: the cheapest design (its
cost objective, a `_usd` metric), the fastest (its speed objective: a time `_s` minimised or a rate
`_per_s` maximised), the greenest (its carbon objective, a `carbon` metric) and the knee of the
front (the best compromise, `dse.front.knee`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dse import front as fr
from dse.errors import StudyFileError
from dse.objectives import Objective, Objectives

ROLES = ("cheapest", "fastest", "greenest", "knee")
NEEDED = ("a cost (a *_usd metric, minimised), a speed (a time *_s minimised or a rate *_per_s maximised) and a "
          "carbon (carbon_* metric, minimised) objective")


def _is_cost(o: Objective) -> bool:
    return o.direction == "minimize" and o.metric.endswith("_usd")


def _is_speed(o: Objective) -> bool:
    rate = o.metric.endswith("_per_s")
    return (o.direction == "maximize" and rate) or (o.direction == "minimize" and o.metric.endswith("_s") and not rate)


def _is_carbon(o: Objective) -> bool:
    return o.direction == "minimize" and o.metric.startswith("carbon")


def role_objectives(objectives: Objectives, where: str) -> dict[str, Objective]:
    """The objective each single-objective role is judged by; a study lacking one of them is a
    StudyFileError naming its objectives."""
    out = {}
    for role, test in (("cheapest", _is_cost), ("fastest", _is_speed), ("greenest", _is_carbon)):
        found = [o for o in objectives.objectives if test(o)]
        if not found:
            have = ", ".join(f"{o.direction} {o.metric}" for o in objectives.objectives)
            raise StudyFileError(f"{where}: objectives", have, f"{NEEDED} to recommend on (no {role} "
                                 "design without one)")
        out[role] = found[0]
    return out


def best(frame: pd.DataFrame, objective: Objective, objectives: Objectives) -> int | None:
    """Position of the best row of `frame` by one objective; designs equal on it (to 12 significant
    digits: a time that no price moves ties across regions) are told apart by the study's other
    objectives in order. None when no row has a value."""
    if frame.empty:
        return None
    keys = []
    for o in [objective, *(o for o in objectives.objectives if o != objective)]:
        values = pd.to_numeric(frame[o.metric], errors="coerce").to_numpy(dtype=float)
        values = -values if o.direction == "maximize" else values
        keys.append(np.array([float(f"{v:.12g}") for v in values]))
    if np.isnan(keys[0]).all():
        return None
    return int(np.lexsort([np.nan_to_num(k, nan=np.inf) for k in reversed(keys)])[0])


def pick(front: pd.DataFrame, objectives: Objectives, roles: dict[str, Objective]) -> dict[str, int]:
    """Position in `front` of each role's recommendation."""
    out = {role: best(front, o, objectives) for role, o in roles.items()}
    out["knee"] = fr.knee(front, objectives)
    return out


def runners_up(front: pd.DataFrame, objectives: Objectives, chosen: dict[str, int], count: int = 5) -> list[int]:
    """Positions of the front points closest to the knee's compromise after the recommendations: the
    next best compromises (distance to the ideal with each objective scaled to [0, 1] over the front)."""
    values = objectives.values(front)
    values = np.where(objectives.maximise, -values, values)
    low, high = values.min(axis=0), values.max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    order = np.argsort(np.linalg.norm(scaled, axis=1), kind="stable")
    taken = set(chosen.values())
    return [int(i) for i in order if int(i) not in taken][:count]
