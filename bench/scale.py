"""Scale-out benchmarks: study trials per second with 1, 2 and 4 local workers (`Study.run_workers`,
as `dse run --workers N`) on each storage, and sweep points per second on a Dask LocalCluster of 1,
2 and 4 worker processes (`dse sweep --dask local:N`).

    python bench/scale.py                                  # both tables (~10 minutes on 2 cores)
    python bench/scale.py --trials 300 --postgres postgresql://postgres@127.0.0.1:5432/postgres

A worker's rate is counted from the first trial's start to the last trial's end in the storage,
so the seconds each worker process takes to start (importing dse, ~2-4 s) are left out; `wall`
includes them. Each storage is new: a journal file, an SQLite file, a fresh PostgreSQL database."""
from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from dse.study import Study
from dse.studyfile import load
from dse.sweep import sweep

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def trial_rates(study_name: str, trials: int, postgres: str | None, workers: list[int], storages: list[str]) -> None:
    spec = load(STUDIES / f"{study_name}.toml")
    print(f"\n{study_name} ({spec.sampler} -> default sampler), {trials} trials per run")
    print(f"| storage | {' | '.join(f'{n} worker' + ('s' if n > 1 else '') for n in workers)} |")
    print(f"|---|{'---:|' * len(workers)}")
    kinds = [k for k in storages if k != "postgresql" or postgres]
    for kind in kinds:
        cells = []
        for n in workers:
            with tempfile.TemporaryDirectory() as tmp, _storage(kind, tmp, postgres) as url:
                start = time.perf_counter()
                study = Study(spec, storage=url)
                study.run_workers(n, trials=trials)
                wall = time.perf_counter() - start
                stored = optuna.load_study(study_name=spec.name, storage=study.existing_storage())
                done = stored.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
                cells.append(f"{len(done) / span:.1f} (wall {wall:.0f} s)")
        print(f"| {kind} | {' | '.join(cells)} |", flush=True)


class _storage:
    """A new storage URL of the kind, removed after (a PostgreSQL database is dropped)."""

    def __init__(self, kind: str, tmp: str, admin: str | None) -> None:
        self.kind, self.tmp, self.admin, self.db = kind, tmp, admin, None

    def __enter__(self) -> str:
        if self.kind == "journal":
            return str(Path(self.tmp) / "bench.journal")
        if self.kind == "sqlite":
            return f"sqlite:///{Path(self.tmp) / 'bench.db'}"
        self.db = f"dse_bench_{uuid.uuid4().hex[:8]}"
        self._sql(f'CREATE DATABASE "{self.db}"')
        return self.admin.rsplit("/", 1)[0] + "/" + self.db

    def __exit__(self, *exc) -> None:
        if self.db:
            self._sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def _sql(self, statement: str) -> None:
        import psycopg
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(statement)


def sweep_rates(study_name: str, workers: list[int]) -> None:
    spec = load(STUDIES / f"{study_name}.toml")
    single = sweep(spec, workers=1)
    print(f"\n{study_name}: {single.space_size:,} points, {single.evaluated:,} evaluated after the rules")
    print("| Dask workers | seconds | points/s (space) | evaluated/s | front equal to one process |")
    print("|---:|---:|---:|---:|---|")
    print(f"| none (1 process) | {single.seconds:.1f} | {single.space_size / single.seconds:,.0f} | "
          f"{single.evaluated / single.seconds:,.0f} | - |")
    from distributed import LocalCluster
    for n in workers:
        start = time.perf_counter()
        with LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as cluster:
            result = sweep(spec, dask=cluster.scheduler_address)  # its seconds: the sweep, not the cluster's start
        wall = time.perf_counter() - start
        same = result.front.reset_index(drop=True).equals(single.front.reset_index(drop=True))
        print(f"| {n} | {result.seconds:.1f} (with cluster start {wall:.1f}) | "
              f"{result.space_size / result.seconds:,.0f} | {result.evaluated / result.seconds:,.0f} | {same} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--study", default="llama3-8b-serving")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="an admin URL of a PostgreSQL server ('' to leave it out)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--storages", nargs="+", default=["journal", "sqlite", "postgresql"])
    parser.add_argument("--skip-trials", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    if not args.skip_trials:
        trial_rates(args.study, args.trials, args.postgres or None, args.workers, args.storages)
    if not args.skip_sweep:
        sweep_rates(args.study, args.workers)


if __name__ == "__main__":
    main()
