"""Studies through Optuna: the front of a tiny space checked by hand, resume to an exact total,
seeded determinism, constraints, a real SIGKILL mid-study, the JSON contract and bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from study_fixtures import TINY, hand_front, tiny_point, write_tiny

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


def test_storage_url_and_metrics_kept_with_each_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = dse.load_study(write_tiny(tmp_path), storage=url)
    study.run(trials=5)
    import optuna
    stored = optuna.load_study(study_name="tiny", storage=url)
    t = stored.get_trials()[0]
    record = t.user_attrs["dse"]  # one user attribute per trial: design point, metrics, constraint names
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
        names, point, metrics = t.user_attrs["dse"]["constraints"], t.user_attrs["dse"]["point"], \
            t.user_attrs["dse"]["metrics"]
        values = dict(zip(names, t.constraints.values(), strict=True))
        broken = point["hardware"] == "l4" and point["tp"] == 2
        assert (values["rule: tp only where GPUs are linked"] > 0) == broken
        if not broken:
            seen += 1
            assert (values["tokens_per_s <= 6000"] > 0) == (metrics["tokens_per_s"] > 6000)
            assert (values["feasible"] > 0) == (not metrics["feasible"])
    assert seen > 0


def test_trials_stored_one_attribute_per_key_still_read(tmp_path):
    """Storages written before one record per trial (point and metrics as two user attributes, a
    constraint per key) keep reading, and a run adds to them."""
    import optuna
    path = write_tiny(tmp_path)
    study = dse.load_study(path)
    stored = optuna.create_study(study_name="tiny", storage=study.storage, directions=["minimize", "maximize"])
    trial = stored.ask()
    trial.suggest_categorical("hardware", ["h100-sxm", "a100-sxm-80gb", "l4"])
    trial.set_constraint("feasible", 0.0)
    trial.set_constraint("tokens_per_s <= 6000", 0.5)
    trial.set_user_attr("point", {"hardware": "h100-sxm", "batch": 1, "tp": 1})
    trial.set_user_attr("metrics", {"request_latency_s": 1.0, "tokens_per_s": 9000.0, "feasible": True})
    stored.tell(trial, [1.0, 9000.0])
    old = study.trials()
    assert old[["hardware", "batch", "tp", "tokens_per_s", "feasible"]].to_dict("records") == [
        {"hardware": "h100-sxm", "batch": 1, "tp": 1, "tokens_per_s": 9000.0, "feasible": False}]
    assert study.run(trials=10, sampler="random").complete == 10 and len(study.trials()) == 10


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


def test_sigkill_mid_study_keeps_every_completed_trial(tmp_path):
    path = write_tiny(tmp_path)
    journal = path.with_suffix(".journal")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(path), "--trials", "100000", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or journal.read_bytes().count(b'"state":1') < 40):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = dse.load_study(path).trials()
    assert 0 < len(before) < 100000
    target = len(before) + 12
    summary = dse.load_study(path).run(trials=target)
    after = dse.load_study(path).trials()
    assert summary.complete == len(after) == target
    kept = after.set_index("trial").loc[before["trial"]]
    assert kept["request_latency_s"].fillna(-1).tolist() == before["request_latency_s"].fillna(-1).tolist()


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
    with pytest.raises(StorageError, match="--storage"):
        dse.load_study(path, storage="postgresql://nobody@127.0.0.1:1/none").run()
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
