"""A study file (DESIGN.md 4.2) read and checked: workload, mode and scenario (the options every design
point shares), the space and the objectives (a file beside it or inline), extra constraints and the
search settings. Paths resolve against the study file; every mistake names the file and the field."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from dse import config as cfg
from dse.catalog import Transformer, registry
from dse.catalog.loader import parse_toml, read_file
from dse.errors import CatalogFileError, EmptySpaceError, StudyFileError, UnknownNameError
from dse.objectives import Objectives, parse_objectives
from dse.space import Space, check_option, parse_space

SAMPLERS = ("auto", "tpe", "nsga2", "nsga3", "gp", "random")
KEYS = ("name", "description", "workload", "mode", "scenario", "space", "objectives", "constraints", "sampler",
        "trials", "seed", "storage", "population")
PROBE = 4096  # points drawn to check the space and learn which metrics the models give


@dataclass(frozen=True)
class StudySpec:
    """Everything a study file says, checked."""

    path: Path
    name: str
    description: str
    space: Space
    objectives: Objectives
    sampler: str
    trials: int
    seed: int | None
    storage: str | None
    population: int


def read_toml(path: Path, field: str) -> dict:
    """A TOML file as a dict; a missing, unreadable or malformed file names the file and the line."""
    try:
        return parse_toml(read_file(path, field), path, field)
    except CatalogFileError as exc:
        raise StudyFileError(exc.field, exc.value, exc.allowed) from None


@cache
def load(path: str | Path) -> StudySpec:
    """Read and check a study file (cached per path: sweeps load it once per worker)."""
    path = Path(path)
    raw = read_toml(path, "study")
    where = str(path)
    for key in raw:
        if key not in KEYS:
            raise UnknownNameError(f"{where}: key", key, KEYS)
    mode = raw.get("mode")
    if mode not in cfg.MODES:
        raise UnknownNameError(f"{where}: mode", mode, cfg.MODES)
    fixed = _scenario(raw, where)
    space_raw = _table_or_file(raw, "space", path)
    constants = _constants(fixed)
    space = parse_space(space_raw, _source(raw, "space", path), fixed, constants)
    for name in space.names:
        _check_mode_option(name, mode, f"{where}: space parameter")
    extra = raw.get("constraints", [])
    if not isinstance(extra, list):
        raise StudyFileError(f"{where}: constraints", extra, "a list of constraints such as [\"itl_s <= 0.05\"]")
    objectives = parse_objectives(_table_or_file(raw, "objectives", path), _source(raw, "objectives", path), extra)
    spec = StudySpec(path=path, name=_text(raw, "name", path.stem, where), space=space, objectives=objectives,
                     description=_text(raw, "description", "", where), sampler=_sampler(raw.get("sampler", "auto"),
                                                                                         f"{where}: sampler"),
                     trials=_count(raw, "trials", 200, where), seed=_seed(raw, where),
                     storage=_text(raw, "storage", None, where), population=_count(raw, "population", 24, where))
    objectives.check_metrics({**{name: 0 for name in space.names}, **probe(space, where)}, where)
    return spec


def _sampler(value: object, field: str) -> str:
    if value not in SAMPLERS:
        raise UnknownNameError(field, value, SAMPLERS)
    return str(value)


def check_sampler(value: object) -> str:
    """A `--sampler` value, checked against `SAMPLERS`."""
    return _sampler(value, "--sampler")


def _text(raw: dict, key: str, default, where: str):
    value = raw.get(key, default)
    if value is not None and not isinstance(value, str):
        raise StudyFileError(f"{where}: {key}", value, "a string")
    return value


def _count(raw: dict, key: str, default: int, where: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StudyFileError(f"{where}: {key}", value, "a whole number >= 1")
    return value


def _seed(raw: dict, where: str) -> int | None:
    value = raw.get("seed")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise StudyFileError(f"{where}: seed", value, "a whole number >= 0")
    return value


def _scenario(raw: dict, where: str) -> dict:
    """The options every design point shares: workload, mode and the [scenario] table."""
    scenario = raw.get("scenario", {})
    if not isinstance(scenario, dict):
        raise StudyFileError(f"{where}: scenario", scenario, "a table of dse options, e.g. input_len = 1024")
    fixed = {"mode": raw["mode"], **({"workload": raw["workload"]} if "workload" in raw else {}), **scenario}
    for key, value in fixed.items():
        if key not in cfg.ALL_KEYS:
            raise UnknownNameError(f"{where}: scenario option", key, cfg.ALL_KEYS, where="dse eval --help")
        check_option(key, value, f"{where}: scenario.{key}")
        _check_mode_option(key, raw["mode"], f"{where}: scenario")
    return fixed


def _constants(fixed: dict) -> dict:
    """Names an expression may use besides parameters: the workload's shape and the option defaults."""
    constants = {k: v for k, v in cfg.DEFAULTS.items() if not isinstance(v, str)}
    if "workload" in fixed:
        w = registry("workloads").get(str(fixed["workload"]), "workload")
        if isinstance(w, Transformer):
            constants.update(layers=w.layers, hidden=w.hidden, heads=w.heads, kv_heads=w.kv_heads or w.heads,
                             experts=w.experts)
    return constants


def _check_mode_option(name: str, mode: str, where: str) -> None:
    """Refuse an option the study's mode does not use (e.g. zero in serve mode)."""
    if name in cfg.NUMERIC and name not in cfg.MODE_OPTIONS[mode]:
        users = [m for m, keys in cfg.MODE_OPTIONS.items() if name in keys]
        raise StudyFileError(where, name, f"an option {mode} mode uses ({name} applies to {' and '.join(users)})")


def _source(raw: dict, key: str, path: Path) -> str:
    return str(path.parent / raw[key]) if isinstance(raw.get(key), str) else f"{path} [{key}]"


def _table_or_file(raw: dict, key: str, path: Path) -> dict:
    value = raw.get(key)
    if isinstance(value, str):
        target = Path(value).expanduser()
        return read_toml(target if target.is_absolute() else path.parent / target, f"{path}: {key}")
    if not isinstance(value, dict):
        raise StudyFileError(f"{path}: {key}", value, f"a file name (e.g. \"../{key}/x.toml\") or an inline table")
    return value


def probe(space: Space, where: str = "space") -> dict[str, object]:
    """Metrics the models give on the space (some appear only at some points, e.g. tail latencies
    where the load is sustained), one example value each, to check metric names against. A space
    whose rules leave nothing, or whose points the models all refuse, is an EmptySpaceError naming
    `where` (the study file)."""
    points = space.sample(PROBE)
    broken = space.broken_rules(points)
    alive = np.ones(len(points), dtype=bool)
    for name, mask in broken.items():
        alive &= ~mask
        if not alive.any():
            raise EmptySpaceError(f"{where}: rule", name, f"a rule that leaves some design points: with the "
                                  f"rules before it, it removes all {len(points)} points checked")
    available: dict[str, object] = {}
    first_refusal = ""
    for i in np.flatnonzero(alive)[:64]:
        metrics = space.evaluate(points.iloc[[i]])
        if "refused" in metrics and metrics["refused"].notna().all():
            first_refusal = first_refusal or str(metrics["refused"].iloc[0])
        else:
            available.update({k: v for k, v in metrics.iloc[0].items() if not _missing(v) or k not in available})
    if not available:
        raise EmptySpaceError(f"{where}: space", "every point checked", f"points the models accept: add a rule "
                              f"excluding what they refuse, e.g. {first_refusal}")
    return available


def check_not_empty(spec: StudySpec, total: int, survivors: list[int], evaluated: int, refused: int, feasible: int,
                    violated: dict[str, int], what: str = "design points") -> None:
    """An EmptySpaceError when no feasible point came out of `total` (design points of a sweep, trials
    of a study) naming the cause: the rule that left none (`survivors`: points left after each rule
    in turn), the models refusing every point evaluated, or the constraint no evaluated point meets
    (`violated`: evaluated points violating each constraint)."""
    for rule, left in zip(spec.space.rules, survivors, strict=True):
        if left == 0:
            raise EmptySpaceError(f"{spec.path}: rule", rule.name, f"a rule that leaves some of the "
                                  f"{total:,} {what} (with the rules before it, it removes all)")
    if evaluated and evaluated == refused:
        raise EmptySpaceError(f"{spec.path}: space", f"every {what.rstrip('s')}", "points the models "
                              "accept: add rules that exclude what they refuse (see `dse eval` on one of them)")
    if evaluated and not feasible:
        worst = [k for k, v in violated.items() if v == evaluated] or [max(violated, key=violated.get)]
        raise EmptySpaceError(f"{spec.path}: constraint", worst[0], f"a constraint some of the {evaluated:,} "
                              f"evaluated {what.split()[-1]} meet (it is violated by {violated[worst[0]]:,})")


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)
