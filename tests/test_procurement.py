"""Procurement reports (DESIGN.md 4.2, `dse report`): recommendations on the front, sensitivity with
flip points checked against the models' own arithmetic, intervals, importance and clear errors."""
from __future__ import annotations

import itertools
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import dse
from dse import front as fr
from dse.cli import main
from dse.errors import StudyFileError, UnknownNameError, UserInputError
from dse.objectives import parse_objectives
from dse.procurement import build
from dse.procurement.inputs import BY_KEY, Range, check_keys
from dse.procurement.roles import ROLES
from dse.procurement.sensitivity import Candidates, sensitivity

SCENARIO = dict(workload="llama-3-8b", mode="serve", input_len=512, output_len=128, duration_days=365)
STUDY = """
name = "buy-where"
description = "Serve Llama-3-8B for a year: which GPU, where, bought or rented?"
workload = "llama-3-8b"
mode = "serve"
trials = 48
seed = 1
sampler = "random"
population = 8

[scenario]
input_len = 512
output_len = 128
duration_days = 365

[space.param.hardware]
choices = ["h100-sxm", "a100-sxm-80gb"]
[space.param.region]
choices = ["ca-quebec", "us-central-iowa", "us-average"]
[space.param.purchase]
choices = ["rent-gpu-cloud", "buy"]
[space.param.batch]
choices = [8, 64]

[objectives]
constraints = ["feasible"]
[[objectives.objective]]
metric = "cost_per_mtok_usd"
direction = "minimize"
[[objectives.objective]]
metric = "request_latency_s"
direction = "minimize"
[[objectives.objective]]
metric = "carbon_per_mtok_kg"
direction = "minimize"
"""


@pytest.fixture(scope="module")
def study_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("proc") / "buy-where.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def report(study_path):
    return build(dse.load_study(study_path), robust=True)


def _key(r: dict) -> tuple:
    return tuple(sorted(r["params"].items()))


def test_recommendations_are_feasible_front_points_and_best_at_their_objective(study_path, report):
    study = dse.load_study(study_path)
    front = fr.records(study.front(), study.params())
    keys = {_key(r) for r in front}
    recs = report["recommendations"]
    assert set(recs) == set(ROLES)
    for role, metric in (("cheapest", "cost_per_mtok_usd"), ("fastest", "request_latency_s"),
                         ("greenest", "carbon_per_mtok_kg")):
        assert _key(recs[role]) in keys and recs[role]["metrics"]["feasible"] is True
        assert recs[role]["metrics"][metric] == min(r["metrics"][metric] for r in front)
    assert _key(recs["knee"]) in keys
    assert all(_key(r) in keys for r in report["runners_up"])
    assert not {_key(r) for r in report["runners_up"]} & {_key(r) for r in recs.values()}
    # the greenest design of a year of serving stands on Quebec's hydro grid (catalog: far below Iowa's)
    assert recs["greenest"]["params"]["region"] == "ca-quebec"


def test_sensitivity_entries_span_their_range_and_flips_change_the_answer(report):
    assert report["sensitivity"]
    for e in report["sensitivity"]:
        assert e["low"] <= e["value"] <= e["high"] and e["low"] < e["high"]
        assert e["metric_low"] is not None and e["metric_high"] is not None
        assert e["recommendation"] in ROLES and e["source"]
        if e["flips_at"] is not None:
            assert e["low"] <= e["flips_at"] <= e["high"]
    # the rental price of the cheapest design moves its cost per token in proportion when it is rented
    rec = report["recommendations"]["cheapest"]
    for e in (e for e in report["sensitivity"] if e["recommendation"] == "cheapest" and
              e["input"].startswith("gpu_hour_price")):
        assert e["metric_high"] / e["metric_low"] == pytest.approx(e["high"] / e["low"], rel=1e-9)
        assert rec["params"]["purchase"] != "buy"


def test_flip_point_matches_the_linear_cost_crossing():
    """Quebec's electricity price raised over a wide range: the cheapest design (bought H100s in Quebec)
    gives way to the same fleet in Iowa where their costs per token cross, which is linear in the price."""
    rows = [dict(SCENARIO, hardware=h, region=r, purchase=p, batch=b) for h, r, p, b in itertools.product(
        ["h100-sxm", "a100-sxm-80gb"], ["ca-quebec", "us-central-iowa"], ["rent-gpu-cloud", "buy"], [8, 64])]
    options = pd.DataFrame(rows)
    spec = load_objectives()
    cands = Candidates(options=options, metrics=dse.evaluate_many(options), objectives=spec)
    cost = spec.objectives[0]
    rec = int(cands.metrics["cost_per_mtok_usd"].idxmin())
    assert options.loc[rec, "region"] == "ca-quebec" and options.loc[rec, "purchase"] == "buy"
    rng = Range(BY_KEY["electricity_price"], "ca-quebec", None, 0.02, 0.041, 0.40, "test range")
    entry = sensitivity(cands, rec, cost, "cost_per_mtok_usd", rng, options.index)
    assert entry["flips_to"] is not None
    to = options.loc[entry["flips_to"]]
    assert to["region"] == "us-central-iowa" and to["hardware"] == options.loc[rec, "hardware"]
    point = {k: options.loc[rec, k] for k in ("hardware", "region", "purchase", "batch")}
    c1, c2 = (dse.evaluate(**SCENARIO, **point, electricity_price=p)["cost_per_mtok_usd"] for p in (0.05, 0.10))
    slope = (c2 - c1) / 0.05
    other = dse.evaluate(**SCENARIO, **{k: to[k] for k in point})["cost_per_mtok_usd"]
    crossing = 0.05 + (other - c1) / slope
    assert entry["flips_at"] == pytest.approx(crossing, rel=1e-3)
    assert entry["metric_low"] == pytest.approx(c1 + slope * (0.02 - 0.05), rel=1e-9)


def load_objectives():
    return parse_objectives({"constraints": ["feasible"], "objective": [
        {"metric": "cost_per_mtok_usd", "direction": "minimize"},
        {"metric": "request_latency_s", "direction": "minimize"},
        {"metric": "carbon_per_mtok_kg", "direction": "minimize"}]}, "test")


def test_price_options_replace_the_catalog_prices():
    """--gpu-hour-price: rent = price x GPUs x hours; --gpu-price: depreciation = price x GPUs x held / life."""
    rent = dse.evaluate(**SCENARIO, hardware="h100-sxm", batch=64, purchase="rent-gpu-cloud", gpu_hour_price=2.0)
    assert rent["tco_usd"] == pytest.approx(2.0 * rent["fleet_gpus"] * 365 * 24, rel=1e-12)
    own = dse.evaluate(**SCENARIO, hardware="h100-sxm", batch=64, purchase="buy", gpu_price=40_000.0, life_years=5)
    years = 365 * 86400 / (365.25 * 86400)
    assert own["capex_usd"] == pytest.approx(40_000.0 * own["fleet_gpus"] * years / 5, rel=1e-12)
    with pytest.raises(UserInputError, match="gpu_hour_price"):
        dse.evaluate(**SCENARIO, hardware="h100-sxm", purchase="buy", gpu_hour_price=2.0)
    with pytest.raises(UserInputError, match="gpu_price"):
        dse.evaluate(**SCENARIO, hardware="h100-sxm", purchase="rent", gpu_price=2.0)


def test_failure_rate_options_set_the_mtbf():
    """2,048 GPUs in 256 nodes: MTBF = 1 / (2,048 x 3e-5 + 256 x 6e-5) hours."""
    m = dse.evaluate(workload="llama-3-70b", hardware="h100-sxm", mode="train", gpus=2048, tp=8, pp=4, dp=64,
                     batch=2048, micro_batch=1, seq_len=8192, tokens=15e12, purchase="rent-gpu-cloud",
                     gpu_failure_rate=3e-5, node_failure_rate=6e-5)
    assert m["mtbf_s"] == pytest.approx(3600 / (2048 * 3e-5 + 256 * 6e-5), rel=1e-12)


def test_uncertainty_intervals_contain_the_catalog_case(report):
    for role, spans in report["uncertainty"].items():
        metrics = report["recommendations"][role]["metrics"]
        for m, (low, high) in spans.items():
            assert low <= metrics[m] * (1 + 1e-9) and metrics[m] <= high * (1 + 1e-9)


def test_robust_front_is_non_dominated_under_the_pessimistic_case(report):
    robust = report["robust_front"]
    assert robust
    values = np.array([[r["metrics"][m] for m in ("cost_per_mtok_usd", "request_latency_s", "carbon_per_mtok_kg")]
                       for r in robust])
    for i, v in enumerate(values):
        others = np.delete(values, i, axis=0)
        assert not ((others <= v).all(axis=1) & (others < v).any(axis=1)).any()


def test_importance_per_objective_and_for_the_front(report):
    imp = report["importance"]
    assert set(imp) == {"cost_per_mtok_usd", "request_latency_s", "carbon_per_mtok_kg", "front"}
    for scores in imp.values():
        assert set(scores) <= {"hardware", "region", "purchase", "batch"}
        assert all(v >= 0 for v in scores.values())


def test_report_json_shape_and_files(study_path, tmp_path, capsys):
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["report", str(study_path), "--json", "--md", str(md), "--html", str(page)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"study", "question", "recommendations", "runners_up", "sensitivity", "assumptions"} <= set(out)
    assert out["question"].startswith("Serve Llama-3-8B")
    for r in [*out["recommendations"].values(), *out["runners_up"]]:
        assert set(r) == {"params", "metrics"}
    for e in out["sensitivity"]:
        assert {"input", "low", "high", "metric_low", "metric_high", "flips_at", "flips_to"} <= set(e)
        assert e["flips_to"] is None or set(e["flips_to"]) == {"params", "metrics"}
    assert any("source" in a for a in out["assumptions"])
    text = md.read_text()
    assert "## Recommendations" in text and "Cheapest:" in text and (tmp_path / "r.front.png").stat().st_size > 1000
    assert "data:image/png;base64," in page.read_text()


def test_unknown_uncertain_input_is_one_clear_message(study_path, capsys):
    with pytest.raises(UnknownNameError, match="--vary"):
        check_keys(["electricity-price"])
    assert main(["report", str(study_path), "--vary", "electricity_prize"]) == 2
    err = capsys.readouterr().err
    assert "--vary = 'electricity_prize'" in err and "electricity_price" in err and "Traceback" not in err


def test_study_without_objectives_to_recommend_on(tmp_path, capsys):
    text = STUDY.replace('metric = "cost_per_mtok_usd"', 'metric = "ttft_s"')
    path = tmp_path / "no-cost.toml"
    path.write_text(text)
    with pytest.raises(StudyFileError, match="a cost"):
        build(dse.load_study(path))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert "objectives" in err and "*_usd" in err and "Traceback" not in err


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (.ci/run installs it)")
def test_html_report_renders_in_headless_chromium(study_path, report, tmp_path):
    """The HTML page as a browser draws it: the recommendation text in the DOM, both charts as images
    that decoded, and a screenshot that is not blank (dark text and the charts' colours on it)."""
    from matplotlib.image import imread

    from dse.procurement import render

    page = tmp_path / "report.html"
    render.html_page(report, render.charts(report, dse.load_study(study_path)), str(page))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400"]
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    script = ("<script>document.body.setAttribute('data-decoded', Array.from(document.images).filter("
              "i => i.complete && i.naturalWidth > 0).map(i => i.alt).join('|'))</script>")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    cheapest = report["recommendations"]["cheapest"]
    assert "Cheapest: " + ", ".join(f"{k}={v}" for k, v in cheapest["params"].items()) in dom
    assert 'data-decoded="Pareto front|Sensitivity (tornado)"' in dom
    pixels = imread(shot)[..., :3]
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1100
    assert (pixels.sum(axis=2) < 0.6).mean() > 0.005  # dark: text, axes
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.4) & (pixels[..., 2] < 0.4)
    blue = (pixels[..., 2] > 0.6) & (pixels[..., 0] < 0.4)
    assert red.sum() > 200 and blue.sum() > 200  # the front's red points, the tornado's and feasible blue
