"""`dse run`, `dse worker`, `dse dashboard`, `dse front` and `dse sweep`: their options, and the tables and
JSON they print."""
from __future__ import annotations

import argparse
import json
import os

import pandas as pd

from dse import front as fr
from dse import report
from dse.errors import UserInputError
from dse.objectives import Objectives
from dse.procurement.inputs import BY_KEY as UNCERTAIN
from dse.study import ENV_STORAGE, HOST, SAMPLERS, Study, load_study
from dse.studyfile import StudySpec
from dse.sweep import save, saved_front, sweep


def add_parsers(sub) -> None:
    """Add `run`, `worker`, `dashboard`, `front` and `sweep` to the `dse` command's subparsers."""
    r = sub.add_parser("run", help="run an optimization study to its target number of trials",
                       description="Run a study (DESIGN.md 4.2); running again resumes it.")
    r.add_argument("study", metavar="STUDY.toml")
    r.add_argument("--trials", type=str, help="target total of trials in the storage (default: the study's)")
    r.add_argument("--sampler", help=f"{' | '.join(SAMPLERS)} (default: the study's, else auto)")
    r.add_argument("--seed", type=str, help="sampler seed (default: the study's)")
    r.add_argument("--storage", help=STORAGE_HELP)
    r.add_argument("--workers", type=str, help="local worker processes sharing the storage and the target")
    r.add_argument("--json", action="store_true", help="print the front as one JSON object")
    w = sub.add_parser("worker", help="one of many workers filling one study (on any host) to its target",
                       description="Run trials of a study in a storage shared with other workers (DESIGN.md 4.2): "
                                   "all stop together when the storage holds the target.")
    w.add_argument("study", metavar="STUDY.toml")
    w.add_argument("--storage", help=f"the shared storage, e.g. postgresql://user@host/db (or ${ENV_STORAGE})")
    w.add_argument("--trials", type=str, help="target total of trials in the storage (default: the study's)")
    w.add_argument("--sampler", help=f"{' | '.join(SAMPLERS)} (default: the study's, else auto)")
    w.add_argument("--seed", type=str, help="base seed; each worker draws its own from it, its host and process")
    d = sub.add_parser("dashboard", help="optuna-dashboard on a study's storage",
                       description="Serve optuna-dashboard on the study's storage until interrupted (Ctrl-C).")
    d.add_argument("study", metavar="STUDY.toml")
    d.add_argument("--storage", help=STORAGE_HELP)
    d.add_argument("--port", type=str, default="8080", help="port to listen on (default 8080)")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    f = sub.add_parser("front", help="the Pareto front of a study: table, JSON, CSV or plot")
    f.add_argument("study", metavar="STUDY.toml")
    f.add_argument("--storage", help=STORAGE_HELP)
    f.add_argument("--json", action="store_true", help="print one JSON object (study, objectives, evaluated, front)")
    f.add_argument("--csv", metavar="F", help="write the front to a CSV file")
    f.add_argument("--plot", metavar="F", help="write a plot: F.png (matplotlib) or F.html (plotly)")
    _report_parser(sub)
    s = sub.add_parser("sweep", help="evaluate a study's whole space: the exact Pareto front")
    s.add_argument("study", metavar="STUDY.toml")
    s.add_argument("--json", action="store_true", help="print one JSON object, with space_size, feasible, seconds")
    s.add_argument("--dask", metavar="ADDRESS", help="evaluate the chunks on a Dask cluster: its scheduler's "
                   "address (tcp://host:8786), or local:N for N local worker processes")


STORAGE_HELP = (f"Optuna storage URL or journal file (default: ${ENV_STORAGE}, else the study's, else a journal "
                "beside the study)")


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="a procurement report: recommendations, runners-up, sensitivity, assumptions",
                       description="Run the study to its target if needed, then recommend (DESIGN.md 4.2).")
    p.add_argument("study", metavar="STUDY.toml")
    p.add_argument("--storage", help="Optuna storage URL or journal file (default: a journal beside the study)")
    p.add_argument("--trials", type=str, help="target total of trials in the storage (default: the study's)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--md", metavar="F", help="write the report as Markdown (charts as PNG files beside it)")
    p.add_argument("--html", metavar="F", help="write the report as one HTML page, charts embedded")
    p.add_argument("--vary", metavar="NAMES", help="comma-separated uncertain inputs to vary (default: all of "
                   f"{', '.join(UNCERTAIN)})")
    p.add_argument("--robust", action="store_true", help="add the robust front (dominance with every input at its "
                   "worse end)")


def run_report(args: argparse.Namespace) -> int:
    """`dse report`: the procurement report as text, JSON, Markdown or HTML."""
    from dse.procurement import build, render, text

    study = load_study(args.study, args.storage)
    vary = [v.strip() for v in args.vary.split(",") if v.strip()] if args.vary is not None else None
    rep = build(study, trials=_whole("--trials", args.trials, 1), vary=vary, robust=args.robust,
                progress=not args.json)
    pictures = render.charts(rep, study) if args.md or args.html else {}
    if args.md:
        render.markdown(rep, pictures, args.md)
    if args.html:
        render.html_page(rep, pictures, args.html)
    if args.json:
        print(json.dumps(rep, indent=2, default=fr.plain))
        return 0
    objectives = [o["metric"] for o in rep["objectives"]]
    print(f"{rep['study']}: {rep['question']}")
    if rep["recommendations"]["cheapest"] is None:
        print("no feasible design: " + "; ".join(rep["notes"]))
        return 0
    for role, r in rep["recommendations"].items():
        print("  " + text.recommendation(role, r, objectives))
    flips = [text.flip(e, rep["recommendations"][e["recommendation"]]) for e in rep["sensitivity"]
             if e["flips_at"] is not None]
    print("What would change the answer:" if flips else "No recommendation flips inside the catalog ranges.")
    for f in flips:
        print("  " + f)
    for f in (args.md, args.html):
        if f:
            print(f"report written to {f}")
    return 0


def _whole(option: str, text: str | None, low: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise UserInputError(option, text, f"a whole number >= {low}")
    return value


def run_run(args: argparse.Namespace) -> int:
    """`dse run`: run the study to its target (in `--workers` processes), then print its knee (or the
    front as JSON)."""
    study = load_study(args.study, args.storage)
    options = {"trials": _whole("--trials", args.trials, 1), "sampler": args.sampler,
               "seed": _whole("--seed", args.seed, 0), "progress": not args.json}
    workers = _whole("--workers", args.workers, 1)
    summary = study.run(**options) if workers is None else study.run_workers(workers, **options)
    if args.json:
        return _show(study, True, extra={"sampler": summary.sampler, "new": summary.new,
                                         "seconds": round(summary.seconds, 3)})
    print(f"study {summary.study}: {summary.new} new trials ({summary.sampler}) in {summary.seconds:.1f} s, "
          f"{summary.complete} in all")
    why = study.nothing_feasible()
    if why:
        print(f"no feasible trial yet: {why}. Run more trials, or `dse sweep {args.study}` to check the whole "
              "space.")
    return _show(study, False, rows=False)


def run_front(args: argparse.Namespace) -> int:
    """`dse front`: the Pareto front of the trials a run stored, as a table, JSON, CSV or plot."""
    study = load_study(args.study, args.storage)
    return _show(study, args.json, csv=args.csv, plot=args.plot)


def run_worker(args: argparse.Namespace) -> int:
    """`dse worker`: run trials in the shared storage until it holds the target, print what this did."""
    if not (args.storage or os.environ.get(ENV_STORAGE)):
        raise UserInputError("--storage", None, f"the storage URL the workers share, e.g. "
                             f"postgresql://user@host/db (or set {ENV_STORAGE})")
    study = load_study(args.study, args.storage)
    summary = study.run(trials=_whole("--trials", args.trials, 1), sampler=args.sampler,
                        seed=_whole("--seed", args.seed, 0), worker=True)
    print(f"worker {HOST}:{os.getpid()}: study {summary.study}: {summary.new} new trials ({summary.sampler}) "
          f"in {summary.seconds:.1f} s, {summary.complete} in all")
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    """`dse dashboard`: optuna-dashboard on the study's storage, until interrupted."""
    from dse.dashboard import serve
    study = load_study(args.study, args.storage)
    serve(study, args.host, _whole("--port", args.port, 1))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """`dse sweep`: evaluate the whole space, print the exact front and save it beside the study."""
    study = load_study(args.study)
    result = sweep(study.spec, progress=not args.json, dask=args.dask)
    payload = fr.contract(study.spec.name, study.spec.objectives, result.evaluated, result.front, study.params())
    payload.update(space_size=result.space_size, feasible=result.feasible, seconds=round(result.seconds, 3),
                   refused=result.refused, hypervolume=fr.hypervolume(result.front, study.spec.objectives))
    save(study.spec, payload)
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print(f"study {study.spec.name}: {result.space_size:,} design points, {result.evaluated:,} evaluated "
          f"({result.space_size - result.evaluated:,} break a rule), {result.feasible:,} feasible, "
          f"{result.seconds:.1f} s")
    print(_table(result.front, study.spec.objectives, study.params(), fr.knee(result.front, study.spec.objectives)))
    return 0


def _show(study: Study, as_json: bool, csv: str | None = None, plot: str | None = None,
          extra: dict | None = None, rows: bool = True) -> int:
    """Print the study's front: JSON (the contract), or a summary line and a table; `rows=False`
    prints the summary and the knee only (what `dse run` shows; `dse front` shows the whole front)."""
    spec = study.spec
    trials = study.trials()
    front = fr.pareto(trials, spec.objectives)
    knee = fr.knee(front, spec.objectives)
    hv = fr.hypervolume(front, spec.objectives)
    ratio = _ratio(spec, hv)
    if csv:
        try:
            front.to_csv(csv, index=False)
        except OSError as exc:
            raise UserInputError("--csv", csv, f"a writable file ({exc.strerror or exc})") from None
    if plot:
        from dse.plot import plot as draw
        draw(trials, front, spec.objectives, knee, plot, f"{spec.name}: {len(trials)} trials", study.params())
    if as_json:
        payload = fr.contract(spec.name, spec.objectives, len(trials), front, study.params())
        payload.update(hypervolume=hv, hypervolume_ratio=ratio, knee=knee, **(extra or {}))
        print(json.dumps(payload, indent=2))
        return 0
    feasible = int(trials["feasible"].sum()) if len(trials) else 0
    line = f"{len(trials)} trials, {feasible} feasible, {len(front)} on the Pareto front"
    if hv is not None:
        line += f", hypervolume {hv:.4g}"
    if ratio is not None:
        line += f" ({ratio:.1%} of the exact front from `dse sweep`)"
    print(line)
    if len(front) and rows:
        print(_table(front, spec.objectives, study.params(), knee))
    elif len(front):
        print(_table(front.iloc[[knee]], spec.objectives, study.params(), 0))
        print(f"the whole front: dse front {spec.path}")
    if plot:
        print(f"plot written to {plot}")
    return 0


def _ratio(spec: StudySpec, hv: float | None) -> float | None:
    """The sampled front's hypervolume over the exact one a sweep of this same study saved, if any."""
    saved = saved_front(spec) if hv is not None else None
    exact = saved.get("hypervolume") if saved else None
    return hv / exact if exact else None


def _table(front: pd.DataFrame, objectives: Objectives, params: list[str], knee: int | None) -> str:
    shown = [p for p in params if p in front.columns and front[p].nunique(dropna=True) > 0]
    columns = [*shown, *(m for m in objectives.metrics if m not in shown)]
    rows = []
    for i, (_, row) in enumerate(front.iterrows()):
        mark = "*" if i == knee else ""
        rows.append([mark, *(report.readable(c, fr.plain(row[c])) for c in columns)])
    note = "\n* knee: the best compromise (closest to the ideal point with each objective scaled to [0, 1])"
    return report.table(rows, ["", *columns]) + (note if knee is not None else "")

