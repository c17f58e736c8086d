"""The one module that talks to Optuna: samplers, storage, resume to a target total, trials asked in
batches (a whole generation for population samplers) and evaluated through the space, each trial's
constraint values and its record (design point, metrics and constraint names as one JSON text,
`RECORD`) written together (one append on a journal file, see `_record`), and the run that asked it
(host and process id, `OWNER`) and a population sampler's generation written with the trial's
creation, so that a killed run's trials are recognised: on a journal file with NSGA-II/III dse
writes as often per trial as bare Optuna does (one write more elsewhere, two with other samplers).

Many runs or workers share one study through its storage (`run_workers` starts local ones, `dse
worker` one per host): each draws from its own seed, and a trial its run left RUNNING when killed is
marked failed and asked again with the same design point (`RETRY`). On a database storage each
run also records heartbeats of its running trials (Optuna's `heartbeat_interval`) on a database
server, so that the trials of a run killed on another host are recognised after `GRACE_S` rather
than `STALE_S`."""
from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from dse import front as fr
from dse.errors import EmptySpaceError, StorageError, StudyFileError, UserInputError
from dse.space import Param, Space, with_metrics
from dse.studyfile import SAMPLERS, StudySpec, check_not_empty, check_sampler, load

# The default sampler, chosen by measurement: bench/studies.py prints the hypervolume ratio against
# trials for every sampler on every shipped study (table in bench/README.md).
# NSGA-II (with `_Distinct`): at 98% or more of the exact hypervolume on every shipped study whose exact
# front lies within its reference point, at the study's own trial count (under 10% of its space), seeds
# 0-2, and a few times faster per trial than TPE (bench/README.md, 2026-11-30)
AUTO = "nsga2"
POPULATION_SAMPLERS = ("nsga2", "nsga3", "random")
RECORD = "dse"  # the user attribute holding a trial's design point, metrics and constraint names
_CONSTRAINTS_KEY = "constraints"  # Optuna's system attribute for a trial's list of constraint values
STALE_S = 600  # a trial from another host RUNNING this long was left by a killed run: it is marked failed
OWNER = "dse:run"  # the system attribute holding the host and process id of the run that asked a trial
HOST = socket.gethostname()
WAIT_S = 0.2  # how often a run whose remaining trials other runs are running checks on them
HEARTBEAT_S = 5  # a database storage: how often a run records that its RUNNING trials are alive
GRACE_S = 30  # a database storage: a RUNNING trial whose last heartbeat is this old was left by a killed run
ENV_STORAGE = "DSE_STORAGE"  # the environment variable naming the storage when --storage does not
with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    # a trial failed because its run died is asked again (a WAITING trial with its design point), at most 3 times
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=3)
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class RunSummary:
    """What a run did: the study and sampler, complete trials in the storage after it, trials it
    completed itself (`new`) and its wall time."""

    study: str
    sampler: str
    complete: int
    new: int
    seconds: float


def storage_url(url: str | None, spec: StudySpec) -> str:
    """Where the study's trials are kept: `url` if given, else the environment's `DSE_STORAGE`, else
    the study file's `storage` (a relative path relative to that file), else a journal file beside
    the study file."""
    url = url or os.environ.get(ENV_STORAGE) or None
    if url is None and spec.storage is None:
        return str(spec.path.with_suffix(".journal"))
    if url is None:
        url = spec.storage
        if not Path(url).is_absolute() and "://" not in url:
            return str(spec.path.parent / url)
    return url


def open_storage(url: str | None, spec: StudySpec, create: bool = True) -> optuna.storages.BaseStorage:
    """The study's storage: a journal file beside the study file by default, a journal file at a
    path, or any Optuna database URL (sqlite:///..., postgresql://...). With `create=False` a
    journal or SQLite file that does not exist yet is a StorageError (nothing is created)."""
    url = storage_url(url, spec)
    if "://" not in url:
        path = Path(url).expanduser()
        if not create and not path.is_file():
            raise _not_run(url, spec)
        try:
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise StorageError("--storage", url, f"a writable journal file path or an Optuna storage URL "
                               f"({exc.strerror or exc})") from None
        # absolute: Optuna's lock is a symlink to this path, and a relative one would dangle, so the lock a
        # killed run leaves behind could never be recognised and released
        return JournalStorage(JournalFileBackend(str(path.resolve())))
    if not create and url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise _not_run(url, spec)
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):  # the driver dse installs (SQLAlchemy's default changed with its version)
        url = f"postgresql+psycopg://{rest}"
    try:
        return _rdb(url)
    except ImportError:
        raise StorageError("--storage", url, f"an Optuna storage URL whose database driver is installed "
                           f"({_driver_hint(url)})") from None
    except Exception as exc:  # noqa: BLE001 (any driver or connection failure is the user's storage)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError("--storage", url, f"a reachable, writable Optuna storage ({reason})") from None


def _rdb(url: str, attempts: int = 4) -> RDBStorage:
    """Optuna's database storage, with heartbeats on a database server (SQLite is one machine's file,
    where a dead run is known by its process id, and a heartbeat thread's writes would contend with
    the run's own for the file's lock). Workers started together on a new database race to create
    its tables and all but one may fail: those try again (after 0.5, 1, 2 s)."""
    sqlite = url.startswith("sqlite")
    kwargs = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if sqlite else \
        {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S, "heartbeat_stale_trial_callback": RETRY}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, **kwargs)
        except ImportError:
            raise
        except Exception:  # noqa: BLE001 (the last attempt's failure is the user's storage)
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


def _driver_hint(url: str) -> str:
    """What to install for a database URL whose driver is missing."""
    dialect, _, driver = url.split("://")[0].partition("+")
    if dialect == "postgresql":
        return "pip install psycopg2-binary" if driver == "psycopg2" else "pip install 'psycopg[binary]'"
    if dialect == "mysql":
        return "pip install pymysql" if driver == "pymysql" else \
            "pip install pymysql, and write the URL as mysql+pymysql://..."
    return f"install the Python driver SQLAlchemy uses for {url.split('://')[0]}://"


def _not_run(url: str, spec: StudySpec) -> StorageError:
    return StorageError("--storage", url, f"a storage that holds study {spec.name!r} (it has no trials of it: "
                        f"run `dse run {spec.path}` first)")


def make_sampler(name: str, seed: int | None, population: int, space: Space) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a `--sampler` name stands for (`auto` is `AUTO`), seeded; `population` is the
    generation size of NSGA-II/III, which search `space` without duplicates (`_Distinct`). gp needs
    torch and scipy: without them a UserInputError."""
    name = AUTO if name == "auto" else name
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name in ("nsga2", "nsga3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return (_NSGAII if name == "nsga2" else _NSGAIII)(space, seed=seed, population_size=population)
    if name == "gp":
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise UserInputError("--sampler", name, "a sampler whose packages are installed: gp needs torch and "
                                 "scipy (pip install torch scipy)") from None
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)
    return optuna.samplers.RandomSampler(seed=seed)


RETRIES = 32  # a duplicate child is mutated again this many times, then drawn at random as many times


class _Distinct:
    """What dse changes in Optuna's NSGA-II and NSGA-III (Deb, Pratap, Agarwal & Meyarivan, "A fast and
    elitist multiobjective genetic algorithm: NSGA-II", IEEE TEC 6(2), 2002; Deb & Jain, IEEE TEC 18(4),
    2014) for its finite, mostly discrete spaces. Selection (constrained non-dominated sorting, crowding
    distance or reference points, binary tournaments) stay Optuna's, and so do its crossovers, as the
    paper has them for real-coded axes: simulated binary crossover (SBX, Deb & Agrawal, Complex Systems
    9, 1995; distribution index 20) on the numeric axes in the encoded space (log ranges in log, powers
    of two by their exponent), rounded to the domain, so that a child lands between or near its parents
    on a fine integer axis (Optuna's default, uniform crossover, only swaps the parents' values: a
    replica count neither parent has is then reached by mutation alone); uniform on the categorical
    ones. Then:

    * the first generation is a Latin hypercube over the encoded space (McKay, Beckman & Conover,
      Technometrics 21(2), 1979): each axis cut into `population` equal strata, one point in each (a
      point already held swaps an axis's value with a later point of the plan, which keeps that);
    * mutation, of each parameter with probability 1/n (Deb et al. 2002), moves a numeric axis
      (integers, powers of two by their exponent, log ranges in log) by polynomial mutation (Deb &
      Agrawal 1995, distribution index 20, as in the NSGA-II reference code and Optuna's
      `PolynomialMutation`) and at least one step, so the neighbouring values are the likeliest; a
      categorical axis takes another choice at random;
    * no duplicates: a child equal to a point the study already holds (evaluated, running, or proposed
      by this sampler) is mutated again, at most `RETRIES` times, then drawn at random as often; only
      if all of those are held too is a duplicate spent on a trial. Plain NSGA-II spent about half
      its trials re-evaluating points in the 23,040-point cluster study (bench/README.md).

    The relative search space is the study's whole space, fixed (its domains never change between
    trials), so the first generation is sampled jointly too."""

    def __init__(self, space: Space, **kwargs) -> None:
        # crossover only (mutation is `_mutate`): SBX on the numeric axes, uniform on the categorical ones
        super().__init__(mutation_prob=0.0, crossover=optuna.samplers.nsgaii.SBXCrossover(eta=20.0), **kwargs)
        self._space = dict(_distribution(p) for p in space.params)
        self._poly = optuna.samplers.nsgaii.PolynomialMutation(eta=20.0)
        self._seen: set[tuple] = set()
        self._finished = 0  # the leading trials of the study, all finished, whose points are in `_seen`
        self._plan: list[dict] = []  # the first generation's points not yet proposed

    def generation(self, study) -> dict:
        """The system attribute `get_trial_generation` writes on a new trial's first suggestion, computed
        as Optuna does (the latest generation among the complete trials, the next once it holds
        `population` of them), so that dse writes it with the trial's creation, not in a write of its own."""
        key = self._get_generation_key()
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        generations = [t.system_attrs.get(key, -1) for t in complete]
        latest = max([0, *generations])
        return {key: latest + int(generations.count(latest) >= self.population_size)}

    def infer_relative_search_space(self, study, trial) -> dict:
        return {k: d for k, d in self._space.items() if not d.single()}

    def sample_relative(self, study, trial, search_space: dict) -> dict:
        if not search_space:
            return {}
        rng = self._rng.rng
        names = sorted(search_space)
        held = self._held(study, names)
        parents = self.get_parent_population(study, self.get_trial_generation(study, trial))
        if parents:
            child = self._mutate(self._child_generation_strategy(study, search_space, parents), search_space, False)
        else:
            if not self._plan:
                self._plan = _hypercube(search_space, self.population_size, rng)
            child = self._plan.pop()
            for _ in range(RETRIES if self._plan else 0):  # a point held: swap an axis with a later one of the plan
                if _key(child) not in held:
                    break
                later, name = self._plan[rng.randint(len(self._plan))], names[rng.randint(len(names))]
                child[name], later[name] = later[name], child[name]
        for attempt in range(2 * RETRIES):
            if _key(child) not in held:
                break
            child = (self._mutate(child, search_space, True) if attempt < RETRIES else
                     {k: _decode(d, rng.rand(), rng) for k, d in search_space.items()})
        held.add(_key(child))
        return child

    def _held(self, study, names: list[str]) -> set[tuple]:
        """The points the study holds: `_seen` brought up to date with the trials finished since the
        last call, plus those running now (their points are added, but they are looked at again)."""
        trials = study._get_trials(deepcopy=False, use_cache=True)
        for i, t in enumerate(trials[self._finished:], self._finished):
            if all(n in t.params for n in names):
                self._seen.add(tuple(t.params[n] for n in names))
            if t.state.is_finished() and i == self._finished:
                self._finished += 1
        return self._seen

    def _mutate(self, child: dict, search_space: dict, force: bool) -> dict:
        """Each parameter mutated with probability 1/n; with `force`, at least one is."""
        rng = self._rng.rng
        names = list(search_space)
        picked = rng.rand(len(names)) < 1.0 / len(names)
        if force and not picked.any():
            picked[rng.randint(len(names))] = True
        out = dict(child)
        for name in np.asarray(names)[picked]:
            out[name] = self._step(search_space[name], child[name], rng)
        return out

    def _step(self, d, value, rng: np.random.RandomState):
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            others = [c for c in d.choices if c != value]
            return others[rng.randint(len(others))] if others else value
        x = _encode(d, value)
        moved = _decode(d, float(np.clip(self._poly.mutation(x, rng, None, np.array([0.0, 1.0])), 0.0, 1.0)), rng)
        if moved != value or isinstance(d, optuna.distributions.FloatDistribution):
            return moved
        step = -1 if rng.rand() < 0.5 else 1  # the polynomial move stayed inside the value's cell
        grid = _grid(d)
        i = int(np.searchsorted(grid, value)) + step
        return int(grid[i if 0 <= i < len(grid) else i - 2 * step])


def _key(point: dict) -> tuple:
    return tuple(point[k] for k in sorted(point))


def _grid(d: optuna.distributions.IntDistribution) -> np.ndarray:
    return np.arange(d.low, d.high + 1, d.step)


def _encode(d, value) -> float:
    """A numeric value's place in [0, 1]: for an integer the middle of its cell (each value of a linear
    range an equal cell, of a log range a cell from log v to log(v + 1))."""
    if isinstance(d, optuna.distributions.FloatDistribution):
        lo, hi, v = (np.log(d.low), np.log(d.high), np.log(value)) if d.log else (d.low, d.high, value)
        return float((v - lo) / (hi - lo))
    if d.log:
        lo, hi = np.log(d.low), np.log(d.high + 1)
        return float((np.log(value) + np.log(value + 1) - 2 * lo) / (2 * (hi - lo)))
    return float(((value - d.low) // d.step + 0.5) / len(_grid(d)))


def _decode(d, x: float, rng: np.random.RandomState):
    """The value whose cell holds x in [0, 1] (`_encode`); a choice's cells are equal."""
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return d.choices[min(int(x * len(d.choices)), len(d.choices) - 1)]
    if isinstance(d, optuna.distributions.FloatDistribution):
        return float(np.exp(np.log(d.low) + x * np.log(d.high / d.low))) if d.log else d.low + x * (d.high - d.low)
    if d.log:
        return int(np.clip(np.floor(np.exp(np.log(d.low) + x * np.log((d.high + 1) / d.low))), d.low, d.high))
    grid = _grid(d)
    return int(grid[min(int(x * len(grid)), len(grid) - 1)])


def _hypercube(search_space: dict, n: int, rng: np.random.RandomState) -> list[dict]:
    """n points of a Latin hypercube (McKay et al. 1979) over the encoded space: on each axis one
    point in each of n equal strata, the strata matched across axes by random permutations."""
    cells = {k: (rng.permutation(n) + rng.rand(n)) / n for k in search_space}
    return [{k: _decode(d, float(cells[k][i]), rng) for k, d in search_space.items()} for i in range(n)]


class _NSGAII(_Distinct, optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II with `_Distinct`'s first generation, mutation and duplicates."""


class _NSGAIII(_Distinct, optuna.samplers.NSGAIIISampler):
    """Optuna's NSGA-III with `_Distinct`'s first generation, mutation and duplicates."""


class Study:
    """A study file bound to a storage: `run` it to a target total, read its `trials` and `front`."""

    def __init__(self, spec: StudySpec, storage: str | None = None) -> None:
        self.spec = spec
        self._url = storage
        self._storage: optuna.storages.BaseStorage | None = None
        space = spec.space
        self._constraint_keys = ([f"rule: {r.name}" for r in space.rules] +
                                 list(self.spec.objectives.violations(pd.DataFrame(index=[0]))))

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        """The Optuna storage holding the study's trials, created (an empty journal) if it does not exist."""
        return self._open(create=True)

    @property
    def url(self) -> str:
        """Where the trials are kept (`storage_url`): print it through `errors.redact`."""
        return storage_url(self._url, self.spec)

    def existing_storage(self) -> optuna.storages.BaseStorage:
        """The storage, which must hold the study already: a StorageError otherwise (nothing is created)."""
        self._optuna(None, create=False)
        return self._storage

    def _open(self, create: bool) -> optuna.storages.BaseStorage:
        if self._storage is None:
            self._storage = open_storage(self._url, self.spec, create)
        return self._storage

    def _optuna(self, sampler: optuna.samplers.BaseSampler | None, create: bool = True) -> optuna.Study:
        """The Optuna study, created on first use when `create`; else a StorageError when the storage
        does not hold it yet. Its objectives must be the study file's."""
        storage = self._open(create)
        if not create:
            try:
                storage.get_study_id_from_name(self.spec.name)
            except KeyError:
                raise _not_run(storage_url(self._url, self.spec), self.spec) from None
        directions = [o.direction for o in self.spec.objectives.objectives]
        study = optuna.create_study(study_name=self.spec.name, storage=storage, directions=directions,
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
            progress: bool = False, worker: bool = False) -> RunSummary:
        """Run until the storage holds `trials` (default: the study file's) complete trials; a run that
        finds some already there (an earlier or killed run) adds only what is missing. `new` in the
        summary counts the trials this run itself completed.

        Runs sharing one storage share the target. Before each batch a run marks failed the trials
        that dead runs left RUNNING (`_fail_stale`), counts the complete trials and the running ones
        of live runs, and asks at most what is missing (waiting while others' running trials fill
        the target). Once its trials exist it gives up (marks failed, unevaluated) those that rank
        beyond the target, by trial number, among the complete and live running trials: every run
        sees the same order, so concurrent runs stop together at exactly the target. The exception is
        a run on another host whose trial runs longer than `STALE_S` (or a host whose clock is that
        far off) on a journal storage: it is taken for dead, so its trial can end up one beyond the
        target. The seed of the sampler is `seed` plus the complete trials found, or, for a `worker`
        (one of several runs started together), one drawn from those and the host and process id."""
        target = self.spec.trials if trials is None else trials
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise UserInputError("--trials", target, "a whole number >= 1 (the study's target total of trials)")
        name = check_sampler(sampler or self.spec.sampler)
        name = AUTO if name == "auto" else name
        seed = self.spec.seed if seed is None else seed
        start = time.perf_counter()
        study = self._optuna(None)
        running = _fail_stale(study)
        done = _complete(study)
        study.sampler = make_sampler(name, _seed(seed, done, worker), self.spec.population, self.spec.space)
        batch = self.spec.population if name in POPULATION_SAMPLERS else 1
        bar = _Progress(target, progress, self.spec.objectives)
        told = 0
        with _Heartbeat(self.storage) as heart:
            while done < target:
                room = target - done - len(running)
                if room <= 0:  # the rest is being run by other live runs: wait for them (or their death)
                    time.sleep(WAIT_S)
                else:
                    told_now, feasible_values = self._batch(study, min(batch, room), target, heart)
                    told += told_now
                    bar.update(_complete(study), time.perf_counter() - start, feasible_values)
                running = _fail_stale(study)
                done = _complete(study)
        bar.close()
        return RunSummary(self.spec.name, name, done, told, time.perf_counter() - start)

    def run_workers(self, workers: int, trials: int | None = None, sampler: str | None = None,
                    seed: int | None = None, progress: bool = False) -> RunSummary:
        """`run` in `workers` local processes (`dse worker`) sharing the storage and its target; the
        summary counts what they completed together. The storage URL reaches them through the
        environment (`DSE_STORAGE`), never a command line that `ps` shows."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UserInputError("--workers", workers, "a whole number >= 1 (local worker processes)")
        target = self.spec.trials if trials is None else trials
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise UserInputError("--trials", target, "a whole number >= 1 (the study's target total of trials)")
        name = check_sampler(sampler or self.spec.sampler)
        start = time.perf_counter()
        study = self._optuna(None)
        before = _complete(study)
        command = [sys.executable, "-m", "dse.cli", "worker", str(self.spec.path), "--trials", str(target),
                   "--sampler", name] + ([] if seed is None else ["--seed", str(seed)])
        env = {**os.environ, ENV_STORAGE: self.url}
        procs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(workers)]
        bar = _Progress(target, progress, self.spec.objectives)
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            bar.update(_complete(study), time.perf_counter() - start, np.empty((0, len(bar.names))))
        bar.close()
        failed = [p.stderr.read().decode().strip() for p in procs if p.wait() != 0]
        if failed:
            raise StorageError("--workers", workers, f"workers that finish (one said: {failed[0].splitlines()[-1]})")
        done = _complete(study)
        return RunSummary(self.spec.name, AUTO if name == "auto" else name, done, done - before,
                          time.perf_counter() - start)

    def _batch(self, study: optuna.Study, n: int, target: int, heart: _Heartbeat) -> tuple[int, np.ndarray]:
        """Ask `n` trials (those waiting to be asked again first), keep those within the target (see
        `run`), evaluate and tell them: how many were told, and the objective values of the feasible
        ones. On any error the trials not yet told are marked failed, so none stays RUNNING."""
        asked = []
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        born = study.sampler.generation(study) if isinstance(study.sampler, _Distinct) else {}
        try:
            for _ in range(n):
                asked.append(_ask(study, waiting, born))
            heart.hold([t._trial_id for t in asked])
            kept = _within_target(study, asked, target)
            for trial in asked:
                if trial not in kept:
                    study.tell(trial, state=TrialState.FAIL)
            told, feasible_values = self._evaluate(study, kept, target)
        except BaseException:
            for trial in asked:
                try:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                except Exception:  # noqa: BLE001, S110 (the storage itself may be what failed: raise that)
                    pass
            raise
        finally:
            heart.release([t._trial_id for t in asked])
        return told, feasible_values

    def _evaluate(self, study: optuna.Study, trials: list[optuna.Trial], target: int) -> tuple[int, np.ndarray]:
        """Suggest each trial's design point, evaluate the rule-abiding ones together, tell the results:
        how many were told, and the objective values of the feasible ones. The target is checked again
        before telling (`_within_target`): on a database server a trial created just before one of
        this run's may commit only after this run's first check, and by now it is visible to all."""
        if not trials:
            return 0, np.empty((0, len(self.spec.objectives.objectives)))
        space, objectives = self.spec.space, self.spec.objectives
        points = space.complete(pd.DataFrame([suggest(space, t, str(self.spec.path)) for t in trials]))
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
        kept = _within_target(study, trials, target)
        for i, trial in enumerate(trials):
            if trial not in kept:
                study.tell(trial, state=TrialState.FAIL)
                continue
            _record(trial, table[i], json.dumps({"point": _plain(point_records[i]),
                                                 "metrics": _plain(metric_records[i]),
                                                 "constraints": self._constraint_keys}))
            study.tell(trial, list(values[i]))
        told = np.array([trial in kept for trial in trials])
        return int(told.sum()), values[told & (table <= 0).all(axis=1)]

    def trials(self) -> pd.DataFrame:
        """Every complete trial: number, design point, metrics and `feasible`, judged by the study file
        as it is now: no rule of its space broken and every constraint met (a rule or constraint
        edited since the trial ran counts). A StorageError when the storage does not hold the study."""
        return self._read()[0]

    def _read(self) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The complete trials (as `trials`), and per rule and per constraint which trials break it."""
        study = self._optuna(None, create=False)
        records = [(t.number, json.loads(t.user_attrs.get(RECORD, "{}")))
                   for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not records:
            return pd.DataFrame(), {}, {}
        space = self.spec.space
        points = pd.DataFrame([r.get("point", {}) for _, r in records])
        metrics = pd.DataFrame([r.get("metrics", {}) for _, r in records])
        missing = [p.name for p in space.params if p.name not in points]
        if missing:
            raise _space_changed(self.spec, f"param.{missing[0]}", "a parameter the stored trials lack")
        broken = space.broken_rules(space.complete(points[[p.name for p in space.params]]))
        rows = pd.concat([pd.DataFrame({"trial": [n for n, _ in records]}), with_metrics(points, metrics)], axis=1)
        violations = self.spec.objectives.violations(rows)
        feasible = np.ones(len(rows), dtype=bool)
        for mask in [*broken.values(), *(v > 0 for v in violations.values())]:
            feasible &= ~mask
        return rows.assign(feasible=feasible), broken, {k: v > 0 for k, v in violations.items()}

    def nothing_feasible(self) -> str | None:
        """Why none of the stored trials is feasible (the rule or constraint that rules them all out, as
        `dse sweep` says it of a whole space), or None when some trial is. A few unlucky trials are not
        proof that the space is empty: `dse sweep` decides that."""
        try:
            self._check_feasible()
        except EmptySpaceError as exc:
            return str(exc)
        return None

    def _check_feasible(self) -> None:
        """An EmptySpaceError when the storage holds trials and none is feasible (`check_not_empty`)."""
        trials, broken, violated = self._read()
        if not len(trials) or trials["feasible"].any():
            return
        alive = np.ones(len(trials), dtype=bool)
        survivors = []
        for mask in broken.values():
            alive &= ~mask
            survivors.append(int(alive.sum()))
        refused = int(trials.loc[alive, "refused"].notna().sum()) if "refused" in trials else 0
        check_not_empty(self.spec, len(trials), survivors, int(alive.sum()), refused, 0,
                        {k: int(v[alive].sum()) for k, v in violated.items()}, what="trials")

    def front(self) -> pd.DataFrame:
        """The Pareto front of the feasible complete trials: design points and metrics, one row each."""
        return fr.pareto(self.trials(), self.spec.objectives)

    def params(self) -> list[str]:
        """The names of the design-point columns: parameters, then derived values."""
        return self.spec.space.names

    def importance(self) -> dict[str, dict[str, float]]:
        """How much each parameter matters among the feasible trials: Optuna's PED-ANOVA evaluator
        (Watanabe et al., "PED-ANOVA: Efficiently Quantifying Hyperparameter Importance in Arbitrary
        Subspaces", IJCAI 2023: what it takes to reach the best 10%), per objective and, under "front",
        for reaching the Pareto front; largest first. Powers of two appear by their exponent
        (`log2_tp`). Empty when under 10 feasible trials or no parameter varies."""
        trials, _, _ = self._read()
        if not len(trials):
            return {}
        feasible = set(trials.loc[trials["feasible"], "trial"])
        kept = [t for t in self._optuna(None, create=False).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.number in feasible]
        if len(kept) < 10 or not any(len({str(t.params.get(k)) for t in kept}) > 1 for k in kept[0].params):
            return {}
        objectives = self.spec.objectives.objectives
        probe = optuna.create_study(directions=[o.direction for o in objectives])
        probe.add_trials(kept)
        targets = {o.metric: (lambda t, i=i, s=-1.0 if o.direction == "maximize" else 1.0: s * t.values[i])
                   for i, o in enumerate(objectives)}
        with warnings.catch_warnings():
            # experimental, and a reminder that lower targets are better (ours are, signs applied)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            out = {name: optuna.importance.get_param_importances(probe, evaluator=evaluator, target=target)
                   for name, target in targets.items()}
            out["front"] = optuna.importance.get_param_importances(probe, evaluator=evaluator)
        return {k: {p: float(v) for p, v in d.items()} for k, d in out.items()}


def load_study(path: str | Path, storage: str | None = None) -> Study:
    """A study file bound to its storage (DESIGN.md 4.4): the journal beside it unless `storage` says."""
    return Study(load(Path(path)), storage)


def suggest(space: Space, trial: optuna.Trial, where: str = "space") -> dict:
    """Ask the trial for every parameter over its fixed domain; powers of two are sampled as exponents.
    A domain that differs from the one stored trials were asked over is a StudyFileError (at `where`)."""
    out = {}
    for p in space.params:
        try:
            out[p.name] = _suggest(p, trial)
        except ValueError:  # Optuna: "CategoricalDistribution does not support dynamic value space", ...
            raise _space_changed(where, f"param.{p.name}", list(p.choices) if p.kind == "choice" else
                                 [p.low, p.high]) from None
    return out


def _space_changed(where: StudySpec | str, field: str, value: object) -> StudyFileError:
    where = str(where.path) if isinstance(where, StudySpec) else where
    return StudyFileError(f"{where}: {field}", value, "the space the trials already in the storage were asked "
                          "over (it changed since they ran): use another --storage or study name")


def _distribution(p: Param) -> tuple[str, optuna.distributions.BaseDistribution]:
    """The Optuna name and distribution of a parameter's fixed domain: a power of two by its exponent."""
    if p.kind == "choice":
        return p.name, optuna.distributions.CategoricalDistribution(list(p.choices))
    if p.kind == "pow2":
        return f"log2_{p.name}", optuna.distributions.IntDistribution(int(p.low), int(p.high))
    if p.kind == "int":
        return p.name, optuna.distributions.IntDistribution(int(p.low), int(p.high), step=p.step, log=p.log)
    return p.name, optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)


def _suggest(p: Param, trial: optuna.Trial):
    name, d = _distribution(p)
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    if isinstance(d, optuna.distributions.FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, log=d.log)
    value = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return 2 ** value if p.kind == "pow2" else value


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


def _record(trial: optuna.Trial, constraints: np.ndarray, record: str) -> None:
    """A trial's constraint values and its record (`RECORD`: design point, metrics, constraint names as
    one JSON text; Optuna deep-copies a trial's attributes when it is told, and a text costs nothing to
    copy where a nested dict of ~50 metrics costs ~1 ms a trial). The constraint values go in one list
    under Optuna's "constraints" system attribute, which `FrozenTrial.constraints` reads back as
    {"0": ..., "1": ...}: samplers see one value per rule and outcome constraint, in the order of the
    names in the record (NSGA-II/III and TPE the feasibility and the sum of positive violations, GP
    one model per constraint), as with one `set_constraint` per key, which would cost a write each.
    On a journal file both go in one append (one lock and one fsync; the two log lines Optuna's own
    `set_trial_system_attr` and `set_trial_user_attr` would write), elsewhere in two writes."""
    storage, values = trial.storage, [float(v) for v in constraints]
    if not isinstance(storage, JournalStorage):
        storage.set_trial_system_attr(trial._trial_id, _CONSTRAINTS_KEY, values)
        storage.set_trial_user_attr(trial._trial_id, RECORD, record)
        return
    with storage._thread_lock:
        worker = storage._replay_result.worker_id
        storage._backend.append_logs([
            {"op_code": JournalOperation.SET_TRIAL_SYSTEM_ATTR, "worker_id": worker, "trial_id": trial._trial_id,
             "system_attr": {_CONSTRAINTS_KEY: values}},
            {"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "worker_id": worker, "trial_id": trial._trial_id,
             "user_attr": {RECORD: record}}])
        storage._sync_with_backend()


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _seed(seed: int | None, done: int, worker: bool) -> int | None:
    """The sampler's seed: `seed` plus the complete trials (a resumed run does not repeat the first
    one's trials), or for a worker a 32-bit number drawn from those, the host and the process id, so
    that workers started together do not ask the same design points."""
    if seed is None or not worker:
        return None if seed is None else seed + done
    text = f"{seed}:{done}:{HOST}:{os.getpid()}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def _ask(study: optuna.Study, waiting: list[FrozenTrial], born: dict | None = None) -> optuna.Trial:
    """`study.ask()`. A trial `waiting` to be asked again (`RETRY`) goes first: taken (RUNNING) in
    one storage write, its run (host and process id, for `_fail_stale`) recorded in a second.
    Otherwise the trial is created with its run in the same write: with a second write, a run killed
    between the two would leave a RUNNING trial of no known run, waited for `STALE_S` by later runs.
    `born`, the generation of a population sampler (`_Distinct.generation`), goes in that write too."""
    study._thread_local.cached_all_trials = None  # as `Study.ask` does: the sampler sees every trial
    while waiting:
        trial_id = waiting.pop(0)._trial_id
        try:
            if study._storage.set_trial_state_values(trial_id, TrialState.RUNNING):  # False: another run took it
                study._storage.set_trial_system_attr(trial_id, OWNER, [HOST, os.getpid()])
                return optuna.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    attrs = {OWNER: [HOST, os.getpid()], **(born or {})}
    template = optuna.trial.create_trial(state=TrialState.RUNNING, system_attrs=attrs)
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id, template_trial=template))


def _fail_stale(study: optuna.Study, now: float | None = None) -> list[FrozenTrial]:
    """Mark failed the trials a dead run left RUNNING and queue each to be asked again (`RETRY`): on
    this host, those whose run's process is gone; on a storage with heartbeats, those whose last
    heartbeat is older than `GRACE_S`; else, from another host (or without a recorded run), those
    RUNNING longer than `STALE_S`. Returns the RUNNING trials left: those of live runs."""
    now = time.time() if now is None else now
    storage = study._storage
    stale = set(storage._get_stale_trial_ids(study._study_id)) if _beats(storage) else set()
    live = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t._trial_id not in stale and _alive(t, now):
            live.append(t)
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                RETRY(study, storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # its run finished it meanwhile, or another run failed it first
    return live


def _alive(trial: FrozenTrial, now: float) -> bool:
    owner = trial.system_attrs.get(OWNER)
    if owner and owner[0] == HOST and os.name == "posix":
        try:
            os.kill(int(owner[1]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's live process
        return not _zombie(int(owner[1]))
    return trial.datetime_start is None or now - trial.datetime_start.timestamp() <= STALE_S


def _zombie(pid: int) -> bool:
    """A process that has exited but whose parent has not collected it yet (Linux: state Z)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _beats(storage: optuna.storages.BaseStorage) -> bool:
    """Whether the storage records heartbeats (a database storage opened by `open_storage`)."""
    return getattr(storage, "get_heartbeat_interval", lambda: None)() is not None


class _Heartbeat:
    """On a storage with heartbeats, records that this run's RUNNING trials are alive, in a thread:
    as soon as they are asked, then every `HEARTBEAT_S` (Optuna's own heartbeat runs only inside
    `Study.optimize`, which a run asking whole batches does not use)."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage if _beats(storage) else None
        self.trials: set[int] = set()
        self._lock, self._wake, self._stop = threading.Lock(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _Heartbeat:
        if self.storage is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def hold(self, ids: list[int]) -> None:
        with self._lock:
            self.trials.update(ids)
        self._wake.set()

    def release(self, ids: list[int]) -> None:
        with self._lock:
            self.trials.difference_update(ids)

    def _beat(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ids = list(self.trials)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001, S110 (a storage hiccup: the run itself reports real failures)
                    pass
            self._wake.wait(HEARTBEAT_S)
            self._wake.clear()


def _within_target(study: optuna.Study, asked: list[optuna.Trial], target: int) -> list[optuna.Trial]:
    """The asked trials whose rank by trial id among the complete and live running trials (these
    included) is within the target; the trials before one were all created before it, so every run
    ranks it alike. By id, not number: a database server numbers two trials created at once alike
    (each counts the committed trials before it)."""
    ids = sorted([t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))] +
                 [t._trial_id for t in _fail_stale(study)])
    return [t for t in asked if bisect.bisect_right(ids, t._trial_id) <= target]


class _Progress:
    """Trials done of the target, elapsed time and the best feasible value of each objective this run
    has found, on stderr, when it is a terminal."""

    def __init__(self, target: int, enabled: bool, objectives) -> None:
        self.target, self.enabled = target, enabled and sys.stderr.isatty()
        self.names = objectives.metrics
        self.maximise = np.asarray(objectives.maximise, dtype=bool)
        self.best = np.where(self.maximise, -np.inf, np.inf)

    def update(self, done: int, seconds: float, feasible_values: np.ndarray) -> None:
        if len(feasible_values):
            self.best = np.where(self.maximise, np.maximum(self.best, feasible_values.max(axis=0)),
                                 np.minimum(self.best, feasible_values.min(axis=0)))
        if self.enabled:
            width = 30
            filled = width * done // self.target
            best = ", ".join(f"{n} {v:.3g}" for n, v in zip(self.names, self.best, strict=True) if np.isfinite(v))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.target} trials "
                             f"{seconds:6.1f} s" + (f"  best: {best}" if best else "") + "\033[K")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


__all__ = ["AUTO", "SAMPLERS", "RunSummary", "Study", "load_study", "open_storage"]
