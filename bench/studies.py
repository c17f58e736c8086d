"""Study benchmarks: front quality per sampler against the exact sweep, trial rate against bare Optuna,
and the sweep time of the biggest shipped study.

    python bench/studies.py                      # everything (several minutes on 2 cores)
    python bench/studies.py --samplers tpe nsga2 --studies llama3-8b-serving
    python bench/studies.py --rate-only --rate-samplers tpe nsga2 nsga3 --rate-repeat 3

Front quality: for each shipped study and sampler, the hypervolume of the sampled front over the
exact front's (from `dse sweep`), at a quarter, half and all of the study's own trial count, with
the share of the space evaluated. Trial rate: `dse` study trials per second on the embedded default
(journal file) against bare Optuna with the same sampler, storage and suggestions and a trivial
objective, in one run."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna

from dse import front as fr
from dse.study import Study, make_sampler, suggest
from dse.studyfile import load
from dse.sweep import sweep

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def quality(name: str, samplers: list[str], gp_trials: int) -> None:
    spec = load(STUDIES / f"{name}.toml")
    exact = sweep(spec)
    hv_exact = fr.hypervolume(exact.front, spec.objectives)
    print(f"\n{name}: {exact.space_size:,} points, exact front {len(exact.front)}, sweep {exact.seconds:.1f} s")
    print(f"  {'sampler':8} " + "  ".join(f"{'n=' + str(n):>14}" for n in _checkpoints(spec.trials)) + "   seconds")
    for sampler in samplers:
        target = min(spec.trials, gp_trials) if sampler == "gp" else spec.trials
        with tempfile.TemporaryDirectory() as tmp:
            study = Study(spec, storage=str(Path(tmp) / "bench.journal"))
            cells, start = [], time.perf_counter()
            for n in _checkpoints(spec.trials):
                if n > target:
                    cells.append(f"{'-':>14}")
                    continue
                study.run(trials=n, sampler=sampler)
                hv = fr.hypervolume(study.front(), spec.objectives)
                cells.append(f"{hv / hv_exact:>7.1%} ({n / exact.space_size:>5.1%})")
            print(f"  {sampler:8} " + "  ".join(cells) + f"   {time.perf_counter() - start:7.1f}")


def seeds(name: str, count: int, samplers: list[str]) -> None:
    """The acceptance check: each sampler (`auto` first: the default) at the study's own trial count,
    over `count` seeds (the study's own first), as a share of the exact front's hypervolume."""
    spec = load(STUDIES / f"{name}.toml")
    exact = sweep(spec)
    hv_exact = fr.hypervolume(exact.front, spec.objectives)
    if hv_exact <= 0:
        print(f"| {name} | - | {exact.space_size:,} ({exact.evaluated:,} valid); {len(exact.front)} | - | no ratio: "
              "the exact front lies beyond the objectives' reference point (hypervolume 0) | - | - |", flush=True)
        return
    for sampler in samplers:
        ratios, start = [], time.perf_counter()
        for seed in range(spec.seed, spec.seed + count):
            with tempfile.TemporaryDirectory() as tmp:
                study = Study(spec, storage=str(Path(tmp) / "bench.journal"))
                study.run(trials=spec.trials, seed=seed, sampler=sampler)
                ratios.append(fr.hypervolume(study.front(), spec.objectives) / hv_exact)
        cells = " / ".join(f"{r:.1%}" for r in ratios)
        print(f"| {name} | {sampler} | {exact.space_size:,} ({exact.evaluated:,} valid); {len(exact.front)} | "
              f"{spec.trials:,} ({spec.trials / exact.space_size:.2%}) | {cells} | {min(ratios):.1%} | "
              f"{(time.perf_counter() - start) / count:.0f} s |", flush=True)


def _checkpoints(trials: int) -> list[int]:
    return [max(1, trials // 4), max(1, trials // 2), trials]


def rate(name: str, sampler: str, trials: int, repeat: int = 1) -> tuple[float, float]:
    """Trials/s of a dse study and of bare Optuna (same sampler, journal storage, suggestions), each
    the best of `repeat` runs into a fresh journal, after one short warm-up run of each (imports,
    catalog loading; another seed, so the timed runs evaluate points it has not seen). Both are bound
    by the journal's synced appends (one per storage write), whose latency on a shared disk varies
    by 2-3x from run to run: hence alternated runs and the best of each."""
    spec = load(STUDIES / f"{name}.toml")
    directions = [o.direction for o in spec.objectives.objectives]
    k = len(directions)

    def dse_run(path: Path, n: int, seed: int) -> float:
        start = time.perf_counter()
        Study(spec, storage=str(path)).run(trials=n, sampler=sampler, seed=seed)
        return n / (time.perf_counter() - start)

    def bare_run(path: Path, n: int, seed: int) -> float:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        bare = optuna.create_study(storage=storage, directions=directions,
                                   sampler=make_sampler(sampler, seed, spec.population, spec.space))
        start = time.perf_counter()
        bare.optimize(lambda t: [float(len(suggest(spec.space, t)))] * k, n_trials=n)
        return n / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        dse_run(Path(tmp) / "warm-dse.journal", 10, 1)
        bare_run(Path(tmp) / "warm-bare.journal", 10, 1)
        dse_rate = bare_rate = 0.0
        for i in range(repeat):  # alternated, so that a slow spell of the shared disk hits both alike
            dse_rate = max(dse_rate, dse_run(Path(tmp) / f"dse{i}.journal", trials, 0))
            bare_rate = max(bare_rate, bare_run(Path(tmp) / f"bare{i}.journal", trials, 0))
    print(f"  {name} {sampler:6} {trials} trials: dse {dse_rate:7.1f}/s, bare Optuna {bare_rate:7.1f}/s, "
          f"ratio {dse_rate / bare_rate:.0%}", flush=True)
    return dse_rate, bare_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="*", default=[p.stem for p in sorted(STUDIES.glob("*.toml"))])
    parser.add_argument("--samplers", nargs="*", default=["tpe", "nsga2", "nsga3", "random", "gp"])
    parser.add_argument("--gp-trials", type=int, default=100, help="GP is slow: its trials are capped")
    parser.add_argument("--rate-trials", type=int, default=300)
    parser.add_argument("--rate-samplers", nargs="*", default=["tpe", "nsga2", "nsga3"])
    parser.add_argument("--rate-repeat", type=int, default=3, help="best of this many timed runs each")
    parser.add_argument("--skip-quality", "--rate-only", action="store_true", help="only the trial rate")
    parser.add_argument("--skip-rate", action="store_true", help="only the front quality")
    parser.add_argument("--seeds", type=int, default=0,
                        help="only the acceptance table: samplers at their studies' own trial counts, over N seeds")
    parser.add_argument("--seed-samplers", nargs="*", default=["auto"], help="the samplers of --seeds")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.seeds:
        print("| study | sampler | space (valid); exact front | trials (share) | hypervolume ratio per seed | min "
              "| seconds a run |")
        print("|---|---|---|---|---|---|---|")
        for name in args.studies:
            seeds(name, args.seeds, args.seed_samplers)
        return
    if not args.skip_quality:
        print("front quality: hypervolume of the sampled front / exact front (share of the space evaluated)")
        for name in args.studies:
            quality(name, args.samplers, args.gp_trials)
    if not args.skip_rate:
        print("\ntrial rate on the embedded default (journal file):")
        for sampler in args.rate_samplers:
            rate("llama3-8b-serving", sampler, args.rate_trials, args.rate_repeat)


if __name__ == "__main__":
    main()
