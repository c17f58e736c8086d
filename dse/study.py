"""The one module that talks to Optuna: samplers, storage, resume to a target total, trials asked in
batches (a whole generation for population samplers) and evaluated through the space, each trial's
constraint values set in one write (see `_set_constraints`) and its design point, metrics and
constraint names kept in one user attribute (`RECORD`): dse adds two storage writes per trial to
what bare Optuna does."""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from dse import front as fr
from dse.errors import StorageError, UserInputError
from dse.space import Param, Space, with_metrics
from dse.studyfile import SAMPLERS, StudySpec, check_sampler, load

# The default sampler, chosen by measurement: bench/studies.py prints the hypervolume ratio against
# trials for every sampler on every shipped study (table in bench/README.md).
# NSGA-II: the only sampler at 98% or more of the exact hypervolume on every shipped study with a
# space beyond a few dozen points, at the study's own trial count (under 5% of its space), and a
# few times faster per trial than TPE (bench/README.md, 2026-11-30)
AUTO = "nsga2"
POPULATION_SAMPLERS = ("nsga2", "nsga3", "random")
RECORD = "dse"  # the user attribute holding a trial's design point, metrics and constraint names
_CONSTRAINTS_KEY = "constraints"  # Optuna's system attribute for a trial's list of constraint values
STALE_S = 600  # a trial RUNNING this long was left by a killed run: it is marked failed
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class RunSummary:
    study: str
    sampler: str
    complete: int
    new: int
    seconds: float


def open_storage(url: str | None, spec: StudySpec) -> optuna.storages.BaseStorage:
    """The study's storage: a journal file beside the study file by default, a journal file at a
    path, or any Optuna database URL (sqlite:///..., postgresql://...)."""
    if url is None and spec.storage is None:
        url = str(spec.path.with_suffix(".journal"))
    elif url is None:  # a storage named in the study file: a relative path is relative to that file
        url = spec.storage
        if not Path(url).is_absolute() and "://" not in url:
            url = str(spec.path.parent / url)
    if "://" not in url:
        path = Path(url).expanduser()
        try:
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise StorageError("--storage", url, f"a writable journal file path or an Optuna storage URL "
                               f"({exc.strerror})") from None
        # absolute: Optuna's lock is a symlink to this path, and a relative one would dangle, so the lock a
        # killed run leaves behind could never be recognised and released
        return JournalStorage(JournalFileBackend(str(path.resolve())))
    try:
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        return RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 (any driver or connection failure is the user's storage)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError("--storage", url, f"a reachable, writable Optuna storage ({reason})") from None


def make_sampler(name: str, seed: int | None, population: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    name = AUTO if name == "auto" else name
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "nsga3":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population)
    if name == "gp":
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise UserInputError("--sampler", name, "a sampler whose packages are installed: gp needs torch and "
                                 "scipy (pip install torch scipy)") from None
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)
    return optuna.samplers.RandomSampler(seed=seed)


class Study:
    """A study file bound to a storage: `run` it to a target total, read its `front`."""

    def __init__(self, spec: StudySpec, storage: str | None = None) -> None:
        self.spec = spec
        self._url = storage
        self._storage: optuna.storages.BaseStorage | None = None
        space = spec.space
        self._constraint_keys = ([f"rule: {r.name}" for r in space.rules] +
                                 list(self.spec.objectives.violations(pd.DataFrame(index=[0]))))

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        if self._storage is None:
            self._storage = open_storage(self._url, self.spec)
        return self._storage

    def _optuna(self, sampler: optuna.samplers.BaseSampler | None) -> optuna.Study:
        directions = [o.direction for o in self.spec.objectives.objectives]
        study = optuna.create_study(study_name=self.spec.name, storage=self.storage, directions=directions,
                                    sampler=sampler, load_if_exists=True)
        stored = [d.name.lower() for d in study.directions]
        if stored != directions:
            raise StorageError("--storage", self._url or "the default journal", f"a storage whose study "
                               f"{self.spec.name!r} has the same objectives (it has {len(stored)} "
                               f"{'/'.join(stored)}); use another --storage or study name")
        if not study.metric_names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(self.spec.objectives.metrics)
        return study

    def run(self, trials: int | None = None, sampler: str | None = None, seed: int | None = None,
            progress: bool = False) -> RunSummary:
        """Run until the storage holds `trials` (default: the study file's) complete trials; a run that
        finds some already there (an earlier or killed run) adds only what is missing."""
        target = self.spec.trials if trials is None else trials
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise UserInputError("--trials", target, "a whole number >= 1 (the study's target total of trials)")
        name = check_sampler(sampler or self.spec.sampler)
        name = AUTO if name == "auto" else name
        seed = self.spec.seed if seed is None else seed
        start = time.perf_counter()
        study = self._optuna(None)
        _fail_stale(study)
        done = _complete(study)
        first = done
        study.sampler = make_sampler(name, None if seed is None else seed + done, self.spec.population,
                                     len(self.spec.objectives.objectives))
        batch = self.spec.population if name in POPULATION_SAMPLERS else 1
        bar = _Progress(target, progress)
        while done < target:
            asked = [study.ask() for _ in range(min(batch, target - done))]
            self._evaluate(study, asked)
            done = _complete(study)
            bar.update(done, time.perf_counter() - start)
        bar.close()
        return RunSummary(self.spec.name, name, done, done - first, time.perf_counter() - start)

    def _evaluate(self, study: optuna.Study, trials: list[optuna.Trial]) -> None:
        """Suggest each trial's design point, evaluate the rule-abiding ones together, tell the results."""
        space, objectives = self.spec.space, self.spec.objectives
        points = space.complete(pd.DataFrame([suggest(space, t) for t in trials]))
        broken = space.broken_rules(points)
        alive = ~np.logical_or.reduce(list(broken.values())) if broken else np.ones(len(points), dtype=bool)
        metrics = pd.DataFrame(index=points.index)
        if alive.any():
            metrics = space.evaluate(points[alive]).reindex(points.index)
        rows = with_metrics(points, metrics)
        values = objectives.values(rows)
        penalty = _penalty(self.spec)
        values = np.where(np.isnan(values), penalty, values)
        violations = {f"rule: {k}": v.astype(float) for k, v in broken.items()}
        violations.update(objectives.violations(rows))
        table = np.column_stack([violations[k] for k in self._constraint_keys])
        point_records = points.to_dict("records")
        metric_records = metrics.to_dict("records")
        for i, trial in enumerate(trials):
            _set_constraints(trial, table[i])
            trial.set_user_attr(RECORD, {"point": _plain(point_records[i]), "metrics": _plain(metric_records[i]),
                                         "constraints": self._constraint_keys})
            study.tell(trial, list(values[i]))

    def trials(self) -> pd.DataFrame:
        """Every complete trial: number, design point, metrics and `feasible` (all constraints met)."""
        study = self._optuna(None)
        rows = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            feasible = all(v <= 0 for v in t.constraints.values())
            record = t.user_attrs.get(RECORD) or t.user_attrs  # trials stored before one record per trial
            rows.append({"trial": t.number, **record.get("point", {}), **record.get("metrics", {}),
                         "feasible": feasible})
        return pd.DataFrame(rows)

    def front(self) -> pd.DataFrame:
        """The Pareto front of the feasible complete trials: design points and metrics, one row each."""
        return fr.pareto(self.trials(), self.spec.objectives)

    def params(self) -> list[str]:
        return self.spec.space.names


def load_study(path: str | Path, storage: str | None = None) -> Study:
    """A study file bound to its storage (DESIGN.md 4.4): the journal beside it unless `storage` says."""
    return Study(load(Path(path)), storage)


def suggest(space: Space, trial: optuna.Trial) -> dict:
    """Ask the trial for every parameter over its fixed domain; powers of two are sampled as exponents."""
    return {p.name: _suggest(p, trial) for p in space.params}


def _suggest(p: Param, trial: optuna.Trial):
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.kind == "pow2":
        return 2 ** trial.suggest_int(f"log2_{p.name}", int(p.low), int(p.high))
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=p.step, log=p.log)
    return trial.suggest_float(p.name, p.low, p.high, log=p.log)


def _penalty(spec: StudySpec) -> np.ndarray:
    """Objective values told for a point without metrics (a broken rule, a refusal, NaN): the
    reference point where given (worse than anything that counts), else a large finite number."""
    out = []
    for o in spec.objectives.objectives:
        worst = 1e12 if o.direction == "minimize" else -1e12
        out.append(worst if o.reference is None else o.reference)
    return np.array(out)


def _plain(record: dict) -> dict:
    """A record with JSON-friendly values: numpy scalars unwrapped, NaN and missing cells dropped."""
    out = {}
    for k, v in record.items():
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            continue
        out[k] = v
    return out


def _set_constraints(trial: optuna.Trial, values: np.ndarray) -> None:
    """All of a trial's constraint values in one storage write (one `trial.set_constraint` per key
    costs a synced journal append each): the list under Optuna's "constraints" system attribute,
    which `FrozenTrial.constraints` reads back as {"0": ..., "1": ...}. Samplers therefore see the
    same values, one per rule and outcome constraint, in the same order (NSGA-II/III and TPE the
    feasibility and the sum of positive violations, GP one model per constraint); their names are
    in the trial's record (`RECORD`, "constraints")."""
    trial.storage.set_trial_system_attr(trial._trial_id, _CONSTRAINTS_KEY, [float(v) for v in values])


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _fail_stale(study: optuna.Study) -> None:
    """Mark trials a killed run left RUNNING long ago as failed (never those of a live run)."""
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.datetime_start is not None and now - t.datetime_start.timestamp() > STALE_S:
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)


class _Progress:
    """Trials done of the target and elapsed time on stderr, when it is a terminal."""

    def __init__(self, target: int, enabled: bool) -> None:
        self.target, self.enabled = target, enabled and sys.stderr.isatty()

    def update(self, done: int, seconds: float) -> None:
        if self.enabled:
            width = 30
            filled = width * done // self.target
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.target} trials "
                             f"{seconds:6.1f} s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


__all__ = ["AUTO", "SAMPLERS", "RunSummary", "Study", "load_study", "open_storage"]
