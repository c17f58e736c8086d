"""Studies through Optuna: the front of a tiny space checked by hand, resume to an exact total,
seeded determinism, constraints, a real SIGKILL mid-study, the JSON contract and bad input."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from study_fixtures import BATCHES, HARDWARE, TINY, TPS, hand_front, tiny_point, write_tiny

import dse
from dse.cli import main
from dse.errors import DSEError, EmptySpaceError, StorageError, StudyFileError, UnknownNameError, UserInputError


def _designs(front) -> set[tuple]:
    return {(r.hardware, int(r.batch), int(r.tp)) for r in front.itertuples()}


def test_front_of_the_trials_is_the_hand_computed_one(tmp_path):
    study = dse.load_study(write_tiny(tmp_path))
    summary = study.run(trials=30)
    assert summary.complete == 30
    trials = study.trials()
    seen = [((r.hardware, int(r.batch), int(r.tp)), tiny_point(r.hardware, int(r.batch), int(r.tp)))
            for r in trials.itertuples() if r.hardware != "l4" or r.tp == 1]
    assert _designs(study.front()) == hand_front(seen)


def test_infeasible_points_never_on_the_front(tmp_path):
    study = dse.load_study(write_tiny(tmp_path))
    study.run(trials=40, sampler="nsga2")
    trials, front = study.trials(), study.front()
    assert (~trials["feasible"]).any(), "the tiny space has infeasible points (tokens_per_s > 6000)"
    assert front["feasible"].all() and (front["tokens_per_s"] <= 6000).all()
    broken = trials[(trials["hardware"] == "l4") & (trials["tp"] == 2)]
    assert not broken["feasible"].any()


def test_resume_reaches_exactly_the_target(tmp_path):
    path = write_tiny(tmp_path)
    first = dse.load_study(path).run(trials=10)
    again = dse.load_study(path).run(trials=25, sampler="nsga2")
    assert (first.new, again.new, again.complete) == (10, 15, 25)
    assert dse.load_study(path).run(trials=25).new == 0
    assert len(dse.load_study(path).trials()) == 25


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_same_seed_same_front(tmp_path, sampler):
    fronts = []
    for i in range(2):
        study = dse.load_study(write_tiny(tmp_path, name=f"s{i}.toml"))
        study.run(trials=16, sampler=sampler, seed=7)
        fronts.append(study.trials()[["hardware", "batch", "tp"]].to_dict("records"))
    assert fronts[0] == fronts[1]


@pytest.mark.parametrize("sampler", ["nsga2", "nsga3"])
def test_population_samplers_never_evaluate_a_point_twice(tmp_path, sampler):
    """32 trials in generations of 8 over 42 points: a child equal to a point already held is mutated
    again (or drawn at random) rather than spent on a trial, so 32 different points are evaluated
    (Optuna's own NSGA-II repeats some: the 8 parents of a generation breed 8 children)."""
    study = dse.load_study(write_tiny(tmp_path))
    study.run(trials=32, sampler=sampler)
    points = [(r.hardware, int(r.batch), int(r.tp)) for r in study.trials().itertuples()]
    assert len(set(points)) == 32 and set(points) <= set(itertools.product(HARDWARE, BATCHES, TPS))


def test_first_generation_is_a_latin_hypercube(tmp_path):
    """One generation of 21 over 3 accelerators x 7 batches x 2 TP degrees: each accelerator 7 times,
    each batch 3 times (one point in each of 21 strata per axis); TP 10 or 11 times."""
    study = dse.load_study(write_tiny(tmp_path, TINY.replace("population = 8", "population = 21")))
    study.run(trials=21, sampler="nsga2")
    trials = study.trials()
    assert set(trials["hardware"].value_counts()) == {7}
    assert set(trials["batch"].value_counts()) == {3}
    assert sorted(trials["tp"].value_counts()) == [10, 11]


def test_mutation_moves_an_integer_axis_to_a_neighbour_first():
    """Polynomial mutation (distribution index 20) in the encoded space: on a log range of 32..1024
    most moves stay within a factor 1.5, and none leaves the value where it was."""
    import numpy as np
    import optuna

    from dse.study import make_sampler
    from dse.studyfile import load
    sampler = make_sampler("nsga2", 0, 8, load(write_tiny(Path(tempfile.mkdtemp()))).space)
    d = optuna.distributions.IntDistribution(32, 1024, log=True)
    rng = np.random.RandomState(0)
    moved = np.array([sampler._step(d, 100, rng) for _ in range(2000)])
    assert (moved != 100).all() and ((moved >= 32) & (moved <= 1024)).all()
    assert 0.8 < np.mean((moved > 100 / 1.5) & (moved < 150)) < 1.0
    assert np.mean(np.abs(moved - 100) == 1) > 0.05  # the neighbours themselves are common
    small = optuna.distributions.IntDistribution(0, 3)
    assert {sampler._step(small, 0, rng) for _ in range(200)} <= {1, 2}


def test_storage_url_and_metrics_kept_with_each_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = dse.load_study(write_tiny(tmp_path), storage=url)
    study.run(trials=5)
    import optuna
    stored = optuna.load_study(study_name="tiny", storage=url)
    t = stored.get_trials()[0]
    record = json.loads(t.user_attrs["dse"])  # one user attribute per trial (JSON): point, metrics, constraints
    assert {"point", "metrics", "constraints"} <= set(record)
    assert "itl_s" in record["metrics"] and {"hardware", "batch", "tp"} <= set(record["point"])
    assert set(record["constraints"]) >= {"feasible", "tokens_per_s <= 6000", "rule: tp only where GPUs are linked"}
    assert len(t.constraints) == len(record["constraints"])


def test_samplers_see_every_constraint_value(tmp_path):
    """All of a trial's constraints go to the storage in one write; Optuna reads back one value per
    rule and outcome constraint, in the order of the names kept with the trial."""
    study = dse.load_study(write_tiny(tmp_path))
    study.run(trials=40, sampler="nsga2")
    import optuna
    stored = optuna.load_study(study_name="tiny", storage=study.storage)
    seen = 0
    for t in stored.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        record = json.loads(t.user_attrs["dse"])
        names, point, metrics = record["constraints"], record["point"], record["metrics"]
        values = dict(zip(names, t.constraints.values(), strict=True))
        broken = point["hardware"] == "l4" and point["tp"] == 2
        assert (values["rule: tp only where GPUs are linked"] > 0) == broken
        if not broken:
            seen += 1
            assert (values["tokens_per_s <= 6000"] > 0) == (metrics["tokens_per_s"] > 6000)
            assert (values["feasible"] > 0) == (not metrics["feasible"])
    assert seen > 0


def test_point_by_point_and_column_wise_evaluation_agree(tmp_path):
    """`Space.evaluate` goes point by point for few points per categorical group and column-wise
    (evaluate_many) for more; the metrics are the same either way."""
    import numpy as np
    import pandas as pd

    from dse import space as sp
    spec = dse.load_study(write_tiny(tmp_path)).spec
    points = spec.space.sample(100)
    points = points[~((points["hardware"] == "l4") & (points["tp"] == 2))]
    points = pd.concat([points, points], ignore_index=True)  # 70 points in 3 groups: column-wise
    assert len(points) >= sp.POINTWISE_BELOW * points["hardware"].nunique()
    many = spec.space.evaluate(points)
    one = pd.concat([spec.space.evaluate(points.iloc[[i]]) for i in range(len(points))])
    assert list(one.index) == list(many.index) and set(one.columns) == set(many.columns)
    for column in many.columns:
        a, b = many[column].to_numpy(), one[column].to_numpy()
        if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
            assert np.allclose(a.astype(float), b.astype(float), rtol=1e-12, equal_nan=True), column
        else:
            assert list(a) == list(b), column


def _dse(*args: str) -> subprocess.Popen:
    """`dse ARGS` in a subprocess, in the current folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.Popen([sys.executable, "-m", "dse.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def _states(path, study="tiny") -> dict[str, int]:
    import optuna
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    return {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}


def test_sigkill_mid_study_keeps_every_completed_trial(tmp_path, monkeypatch):
    """A run killed mid-batch leaves RUNNING trials; the next run marks them failed (their process is
    gone, however recent) and completes exactly the target. The study path is relative, as a user
    in the study's folder types it (a relative journal path once hung every later run)."""
    write_tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "tiny.journal"
    proc = _dse("run", "tiny.toml", "--trials", "100000", "--sampler", "nsga2", "--json")
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or journal.read_bytes().count(b'"state":1') < 40):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = dse.load_study("tiny.toml").trials()
    assert 0 < len(before) < 100000
    target = len(before) + 12
    summary = dse.load_study("tiny.toml").run(trials=target)
    after = dse.load_study("tiny.toml").trials()
    assert summary.complete == len(after) == target and summary.new == 12
    assert _states(journal)["RUNNING"] == 0
    kept = after.set_index("trial").loc[before["trial"]]
    assert kept["request_latency_s"].fillna(-1).tolist() == before["request_latency_s"].fillna(-1).tolist()


def test_concurrent_runs_stop_together_at_exactly_the_target(tmp_path, monkeypatch):
    """Runs sharing one storage share its target: together they complete exactly it (a run gives up
    the trials it asked beyond the target, see `Study.run`), and their `new` add up to it."""
    write_tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    runs = [_dse("run", "tiny.toml", "--trials", "150", "--sampler", sampler, "--json")
            for sampler in ("nsga2", "random", "nsga2")]
    outs = [proc.communicate(timeout=240) for proc in runs]
    assert [proc.returncode for proc in runs] == [0, 0, 0], [err.decode()[-2000:] for _, err in outs]
    states = _states(tmp_path / "tiny.journal")
    assert states["COMPLETE"] == 150 and states["RUNNING"] == 0
    assert sum(json.loads(out)["new"] for out, _ in outs) == 150


def test_fail_stale_marks_the_trials_of_dead_runs_only(tmp_path):
    import optuna

    from dse import study as st
    study = dse.load_study(write_tiny(tmp_path))
    stored = study._optuna(None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owners = {"dead here": [st.HOST, dead.pid], "live here": [st.HOST, os.getpid()],
              "other host": ["elsewhere.example", 1], "unknown": None}
    ids = {}
    for what, owner in owners.items():
        trial = stored.ask()
        if owner:
            stored._storage.set_trial_system_attr(trial._trial_id, st.OWNER, owner)
        ids[what] = trial.number
    running = {t.number for t in st._fail_stale(stored)}
    assert running == {ids["live here"], ids["other host"], ids["unknown"]}
    running = {t.number for t in st._fail_stale(stored, now=time.time() + st.STALE_S + 1)}
    assert running == {ids["live here"]}
    failed = {t.number for t in stored.get_trials(states=(optuna.trial.TrialState.FAIL,))}
    assert failed == {ids["dead here"], ids["other host"], ids["unknown"]}


def test_fully_infeasible_study_names_the_constraint(tmp_path, capsys):
    # a run that finds nothing feasible says which constraint rules its trials out (exit 0: a few trials
    # prove nothing about the space); the sweep, which sees every point, refuses the space
    path = write_tiny(tmp_path, TINY.replace('"tokens_per_s <= 6000"', '"tokens_per_s <= 1"'))
    study = dse.load_study(path)
    study.run(trials=10)
    assert "tiny.toml: constraint = 'tokens_per_s <= 1'" in study.nothing_feasible()
    assert main(["run", str(path), "--trials", "12"]) == 0
    out = capsys.readouterr().out
    assert "no feasible trial yet" in out and "tokens_per_s <= 1" in out
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tokens_per_s <= 1" in err and "Traceback" not in err and err.count("\n") == 1


def test_front_of_a_study_never_run_creates_nothing(tmp_path, capsys):
    path = write_tiny(tmp_path)
    journal = path.with_suffix(".journal")
    with pytest.raises(StorageError, match="run `dse run"):
        dse.load_study(path).front()
    assert main(["front", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(journal) in err and "dse run" in err and err.count("\n") == 1
    sqlite = tmp_path / "db.sqlite"
    with pytest.raises(StorageError, match="dse run"):
        dse.load_study(path, storage=f"sqlite:///{sqlite}").trials()
    assert not journal.exists() and not sqlite.exists()
    other = write_tiny(tmp_path, TINY.replace('name = "tiny"', 'name = "other"'), name="other.toml")
    dse.load_study(other, storage=str(journal)).run(trials=5)
    size = journal.stat().st_size
    with pytest.raises(StorageError, match="holds study 'tiny'"):
        dse.load_study(path, storage=str(journal)).trials()
    assert journal.stat().st_size == size


def test_rule_added_after_the_trials_ran_makes_them_infeasible(tmp_path):
    path = write_tiny(tmp_path)
    dse.load_study(path).run(trials=30)
    assert (dse.load_study(path).trials()["batch"] > 8).any()
    stricter = TINY.replace('[objectives]', '[[space.rule]]\nname = "small batches"\nrequire = "batch <= 8"\n\n'
                            '[objectives]')
    journal = str(path.with_suffix(".journal"))
    edited = dse.load_study(write_tiny(tmp_path, stricter, name="edited.toml"), storage=journal)
    trials = edited.trials()
    assert len(trials) == 30 and not trials.loc[trials["batch"] > 8, "feasible"].any()
    assert trials.loc[trials["batch"] <= 8, "feasible"].any() and (edited.front()["batch"] <= 8).all()


@pytest.mark.parametrize("sampler", ["random", "nsga2", "tpe"])
def test_changed_choices_after_the_trials_ran(tmp_path, capsys, sampler):
    path = write_tiny(tmp_path)
    dse.load_study(path).run(trials=10)
    fewer = write_tiny(tmp_path, TINY.replace('"a100-sxm-80gb", ', ""), name="fewer.toml")
    journal = str(path.with_suffix(".journal"))
    with pytest.raises(StudyFileError, match=r"fewer.toml: param.hardware = .*another --storage or study name"):
        dse.load_study(fewer, storage=journal).run(trials=20, sampler=sampler)
    assert main(["run", str(fewer), "--storage", journal, "--trials", "20"]) == 2
    err = capsys.readouterr().err
    assert "param.hardware" in err and "Traceback" not in err and err.count("\n") == 1
    assert _states(journal)["RUNNING"] == 0 and _states(journal)["COMPLETE"] == 10


def test_storage_messages(tmp_path, capsys):
    path = write_tiny(tmp_path)
    for url, package in (("postgresql+psycopg2://nobody@127.0.0.1:1/none", "pip install psycopg2-binary"),
                         ("postgresql://nobody@127.0.0.1:1/none", "a reachable, writable Optuna storage"),
                         ("mysql://nobody@127.0.0.1:1/none", "pip install pymysql"),
                         ("mysql+pymysql://nobody@127.0.0.1:1/none", "pip install pymysql")):
        with pytest.raises(StorageError, match=package):
            dse.load_study(path, storage=url).run()
    dse.load_study(path).run(trials=5)
    assert main(["front", str(path), "--csv", "/nonexistent/x.csv"]) == 2
    err = capsys.readouterr().err
    assert "(None)" not in err and "/nonexistent" in err


def test_front_json_contract(tmp_path, capsys):
    path = write_tiny(tmp_path)
    assert main(["run", str(path), "--json"]) == 0
    ran = json.loads(capsys.readouterr().out)
    assert main(["front", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"study", "objectives", "evaluated", "front"} <= set(out)
    assert out["study"] == "tiny" and out["evaluated"] == 20 and ran["front"] == out["front"]
    assert out["objectives"] == [{"metric": "request_latency_s", "direction": "minimize"},
                                 {"metric": "tokens_per_s", "direction": "maximize"}]
    for item in out["front"]:
        assert set(item) == {"params", "metrics"}
        assert set(item["params"]) == {"hardware", "batch", "tp"}
        assert item["metrics"]["feasible"] is True


def test_front_csv_and_plots(tmp_path, capsys):
    path = write_tiny(tmp_path)
    dse.load_study(path).run()
    csv, png, html = tmp_path / "f.csv", tmp_path / "f.png", tmp_path / "f.html"
    assert main(["front", str(path), "--csv", str(csv), "--plot", str(png)]) == 0
    assert main(["front", str(path), "--plot", str(html)]) == 0
    assert "knee" in capsys.readouterr().out
    assert csv.read_text().startswith("trial,") and png.read_bytes()[:4] == b"\x89PNG"
    assert "plotly" in html.read_text()[:5000].lower()



def test_far_off_infeasible_points_stay_out_of_the_plot():
    import pandas as pd

    from dse.plot import _in_view
    # feasible latencies 0.5-2 s: infeasible points within a decade (0.05-20 s) are drawn, a saturated
    # queue's 3e10 s is not; the second axis spans 10-20 (feasible), so 1e4 is far off too
    points = pd.DataFrame({"lat": [0.5, 2.0, 15.0, 3e10, 1.0], "cost": [10.0, 20.0, 12.0, 12.0, 1e4]})
    feasible = pd.Series([True, True, False, False, False])
    assert _in_view(points, feasible, ["lat", "cost"]).tolist() == [True, True, True, False, False]
    signed = pd.DataFrame({"x": [-1.0, 1.0, 2.9, 3.1]})  # range width 2: drawn within [-3, 3]
    assert _in_view(signed, pd.Series([True, True, False, False]), ["x"]).tolist() == [True, True, True, False]

BAD = [
    ('trials = 20\n', 'trials = 0\n', StudyFileError, "trials = 0"),
    ('sampler = "random"', 'sampler = "cmaes"', UnknownNameError, "one of auto, gp, nsga2, nsga3, random, tpe"),
    ('metric = "tokens_per_s"', 'metric = "tokens_per_sec"', UnknownNameError, "Did you mean 'tokens_per_s'"),
    ('"tokens_per_s <= 6000"', '"tokens_per_s <= lots"', StudyFileError, "a finite number"),
    ('[space.param.tp]', '[space.param.tpp]', UnknownNameError, "Did you mean 'tp'"),
    ('pow2 = [1, 2]', 'pow2 = [1, 3]', StudyFileError, "powers of two"),
    ('require = "tp == 1 or hardware != \'l4\'"', 'require = "__import__(\'os\')"', StudyFileError, "Call"),
    ('require = "tp == 1 or hardware != \'l4\'"', 'require = "batch > 1000"', EmptySpaceError,
     "tiny.toml: rule = 'tp only where GPUs are linked'"),
    ('input_len = 512', 'input_len = -5', StudyFileError, "scenario.input_len"),
    ('input_len = 512', 'input_len = 512\nzero = 1', StudyFileError, "zero"),
    ('choices = ["h100-sxm", "a100-sxm-80gb", "l4"]', 'choices = ["h100-sxm", "a100-sxm-80gbb", "l4"]',
     UnknownNameError, "a100-sxm-80gb"),
    ('mode = "serve"', 'mode = "serve"\n[oops', StudyFileError, "line 5"),
]


@pytest.mark.parametrize(("old", "new", "kind", "text"), BAD)
def test_bad_study_files_give_one_clear_error(tmp_path, old, new, kind, text):
    assert old in TINY
    path = write_tiny(tmp_path, TINY.replace(old, new))
    with pytest.raises(kind) as err:
        dse.load_study(path)
    assert text in str(err.value)


def test_bad_run_options(tmp_path, capsys):
    path = write_tiny(tmp_path)
    study = dse.load_study(path)
    with pytest.raises(UserInputError, match="--trials"):
        study.run(trials=0)
    with pytest.raises(UnknownNameError, match="--sampler"):
        study.run(sampler="grid")
    with pytest.raises(StorageError, match="--storage"):
        dse.load_study(path, storage=str(tmp_path / "missing" / "x.journal")).run()
    for args in (["run", str(path), "--trials", "0"], ["run", str(path), "--trials", "-3"],
                 ["run", str(path), "--sampler", "bogus"], ["front", str(tmp_path / "nope.toml")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"dse {args[0]}: error:") and "Traceback" not in err and err.count("\n") == 1


def test_shipped_studies_load():
    from pathlib import Path
    studies = sorted((Path(__file__).parent.parent / "studies").glob("*.toml"))
    assert len(studies) >= 5
    for path in studies:
        spec = dse.load_study(path).spec
        assert spec.objectives.reference is not None, path


def test_dse_error_is_the_base():
    assert issubclass(StorageError, DSEError) and issubclass(EmptySpaceError, DSEError)


def test_progress_keeps_the_best_feasible_value_of_each_objective():
    from dse.objectives import parse_objectives
    from dse.study import _Progress
    objectives = parse_objectives({"objective": [{"metric": "cost", "direction": "minimize"},
                                                 {"metric": "speed", "direction": "maximize"}]}, "t")
    bar = _Progress(10, False, objectives)
    bar.update(2, 0.1, np.array([[3.0, 5.0], [4.0, 9.0]]))
    bar.update(4, 0.2, np.empty((0, 2)))  # a batch with nothing feasible changes nothing
    bar.update(6, 0.3, np.array([[2.5, 1.0]]))
    assert bar.best.tolist() == [2.5, 9.0]
