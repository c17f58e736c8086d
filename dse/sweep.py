"""Exhaustive evaluation of a study's space: chunks of the enumeration are completed, filtered by the
rules, evaluated column-wise through `evaluate_many`, and reduced to their non-dominated feasible
points, so memory is bounded by the chunk size and the front, never by the space. Chunks run in this
process, in local worker processes, or on a Dask distributed cluster (`dask`: a scheduler address or
`local:N`, a LocalCluster of N worker processes); each chunk's front comes back and the fronts are
merged in the enumeration's order, so every way gives the same front, point for point."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from dse import __version__
from dse import front as fr
from dse.errors import EmptySpaceError, UserInputError
from dse.space import with_metrics
from dse.studyfile import StudySpec, check_not_empty, load, read_toml

CHUNK = 1 << 16  # design points per chunk


@dataclass
class SweepResult:
    front: pd.DataFrame
    space_size: int
    evaluated: int
    feasible: int
    seconds: float
    refused: int
    survivors: list[int]  # points left after each rule in turn
    violated: dict[str, int]  # evaluated points violating each constraint


def _chunk(spec: StudySpec | str, start: int, stop: int) -> tuple:
    """One chunk of the study (its spec, or its file's path): its front, points evaluated, feasible,
    refused, survivors per rule, violations."""
    spec = load(spec) if isinstance(spec, str) else spec
    space, objectives = spec.space, spec.objectives
    points = space.complete(space.rows(np.arange(start, stop)))
    alive = np.ones(len(points), dtype=bool)
    survivors = []
    for mask in space.broken_rules(points).values():
        alive &= ~mask
        survivors.append(int(alive.sum()))
    points = points[alive].reset_index(drop=True)
    if points.empty:
        return points, 0, 0, 0, survivors, {}
    metrics = space.evaluate(points)
    refused = int(metrics["refused"].notna().sum()) if "refused" in metrics else 0
    rows = with_metrics(points, metrics.drop(columns=["refused"], errors="ignore"))
    violations = objectives.violations(rows)
    violated = {k: int((v > 0).sum()) for k, v in violations.items()}
    ok = np.logical_and.reduce([v <= 0 for v in violations.values()])
    return fr.pareto(rows[ok], objectives), len(rows), int(ok.sum()), refused, survivors, violated


def sweep(spec: StudySpec, chunk: int = CHUNK, workers: int | None = None, progress: bool = False,
          dask: str | None = None) -> SweepResult:
    """Evaluate every point of the study's space; the exact front of the feasible ones. `dask` sends
    the chunks to a Dask cluster (see the module's docstring), `workers` to local processes."""
    size = spec.space.size
    if size is None:
        real = [p.name for p in spec.space.params if p.grid() is None]
        raise EmptySpaceError(f"{spec.path}: param.{real[0]}", "a real range without points",
                              "an enumerable space for a sweep: give it `points = N` (grid points)")
    start_time = time.perf_counter()
    with _cluster(dask) as client:
        if client is not None:
            workers = sum(client.nthreads().values())
        workers = workers or os.cpu_count() or 1
        chunk = max(1, min(chunk, -(-size // (4 * workers))))  # enough chunks to keep every worker busy
        bounds = [(a, min(a + chunk, size)) for a in range(0, size, chunk)]
        chunks = _map(spec, bounds, workers) if client is None else _map_dask(client, spec, bounds)
        result = _merge(spec, bounds, chunks, progress, start_time)
    result.seconds = time.perf_counter() - start_time
    return result


def _merge(spec: StudySpec, bounds: list[tuple[int, int]], chunks, progress: bool, start_time: float) -> SweepResult:
    """The chunks' results, in order, added up and their fronts reduced to one."""
    size = spec.space.size
    result = SweepResult(pd.DataFrame(), size, 0, 0, 0.0, 0, [0] * len(spec.space.rules), {})
    parts: list[pd.DataFrame] = []
    for i, (front, evaluated, feasible, refused, survivors, violated) in enumerate(chunks):
        result.evaluated += evaluated
        result.feasible += feasible
        result.refused += refused
        result.survivors = [a + b for a, b in zip(result.survivors, survivors, strict=True)]
        for k, v in violated.items():
            result.violated[k] = result.violated.get(k, 0) + v
        parts.append(front)
        if len(parts) > 8:  # keep memory bounded: reduce the running front now and then
            parts = [fr.pareto(pd.concat(parts, ignore_index=True), spec.objectives)]
        if progress and sys.stderr.isatty():
            sys.stderr.write(f"\r{bounds[i][1]:,}/{size:,} points, {result.feasible:,} feasible, "
                             f"{time.perf_counter() - start_time:.1f} s")
    if progress and sys.stderr.isatty():
        sys.stderr.write("\n")
    check_not_empty(spec, result.space_size, result.survivors, result.evaluated, result.refused, result.feasible,
                    result.violated)
    result.front = fr.pareto(pd.concat(parts, ignore_index=True), spec.objectives)
    return result


def _map(spec: StudySpec, bounds: list[tuple[int, int]], workers: int):
    """Chunks in order, across worker processes when there are several chunks and cores."""
    path = str(spec.path)
    if workers == 1 or len(bounds) == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return (_chunk(path, a, b) for a, b in bounds)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(bounds)), mp_context=multiprocessing.get_context("fork"))
    return _closing(pool, pool.map(_chunk, [path] * len(bounds), *zip(*bounds, strict=True)))


def _closing(pool: ProcessPoolExecutor, results):
    with pool:
        yield from results


@contextlib.contextmanager
def _cluster(address: str | None):
    """A Dask client for `address` (a scheduler's, or `local:N` for a LocalCluster of N processes
    started here and closed after), or None without an address."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserInputError("--dask", address, "a sweep with Dask installed (pip install 'dask[distributed]', "
                             "or dse[scale])") from None
    if address.startswith("local:"):
        n = address[len("local:"):]
        if not n.isdigit() or int(n) < 1:
            raise UserInputError("--dask", address, "local:N with N >= 1 worker processes, or a scheduler address")
        with LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserInputError("--dask", address, f"a reachable Dask scheduler address such as tcp://host:8786, "
                             f"or local:N ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    with client:
        yield client


def _map_dask(client, spec: StudySpec, bounds: list[tuple[int, int]]):
    """Chunks on the cluster's workers (the study, its space and objectives sent once to each), their
    results in order; each worker needs dse installed, the study's files do not."""
    shared = client.scatter(spec, broadcast=True)
    futures = client.map(_chunk, [shared] * len(bounds), *zip(*bounds, strict=True), pure=False)
    for future in futures:
        yield future.result()
        future.release()


def saved_path(spec: StudySpec) -> Path:
    """Where a sweep's front is kept, beside the study file, for `dse front` to compare with."""
    return spec.path.with_suffix(".sweep.json")


def fingerprint(spec: StudySpec) -> str:
    """A digest of the study file, the space and objectives files it names, the catalog and dse's
    version: a saved sweep counts for `dse front` only while none of them has changed."""
    raw = read_toml(spec.path, "study")
    files = [spec.path] + [spec.path.parent / raw[k] for k in ("space", "objectives") if isinstance(raw.get(k), str)]
    catalog = sorted(resources.files("dse.catalog").joinpath("data").iterdir(), key=lambda f: f.name)
    digest = hashlib.sha256(__version__.encode())  # the models' version and the catalog they read
    for f in [*files, *catalog]:
        digest.update(f.read_bytes())
    return digest.hexdigest()


def saved_front(spec: StudySpec) -> dict | None:
    """The sweep saved for this very study (same files), or None."""
    try:
        payload = json.loads(saved_path(spec).read_text())
    except (OSError, ValueError):
        return None
    return payload if payload.get("fingerprint") == fingerprint(spec) else None


def save(spec: StudySpec, payload: dict) -> None:
    try:
        saved_path(spec).write_text(json.dumps({**payload, "fingerprint": fingerprint(spec)}, indent=1))
    except OSError:
        pass  # a read-only study folder: the sweep still printed its result
