"""Energy, carbon, water, cost and reliability of a fleet over a horizon, against hand arithmetic with
the catalog's own figures (read here, so a catalog update does not break the arithmetic)."""
import math

import numpy as np
import pandas as pd
import pytest

import dse
from dse.catalog import economics, registry
from dse.models import calibration, reliability

A = economics()
H100 = registry("hardware").get("h100-sxm", "test")
DGX = registry("nodes").get("dgx-h100", "test")
DAY = 86400.0
SERVE = dict(workload="llama-3-8b", hardware="h100", mode="serve", batch=32)


def region(name):
    return registry("regions").get(name, "test")


def h100_draw(activity: float) -> float:
    """Mean W of one H100 and its host share, each idle + (busy - idle) x activity: the GPU between its
    idle draw and f x TDP, the host share (max / 8) between the idle and the load fraction of it."""
    tdp = H100.get("tdp")
    idle = H100.get("idle_power") or A["idle_power_fraction"].si * tdp
    busy = calibration.POWER_LOAD["datacenter-gpu"] * tdp
    host = DGX.get("host_power") / DGX.accelerators
    host_idle, host_busy = host * A["idle_power_fraction"].si, host * A["host_load_fraction"].si
    return idle + (busy - idle) * activity + host_idle + (host_busy - host_idle) * activity


def test_small_rented_fleet_by_hand():
    days, r = 30, region("us-average")
    m = dse.evaluate(**SERVE, gpus=4, duration_days=days, region="us-average")
    hours = days * 24
    it_w = 4 * h100_draw(m["activity"])
    kwh = it_w * hours / 1e3 * r.get("pue")
    assert m["fleet_gpus"] == 4 and m["gpu_hours"] == pytest.approx(4 * hours, rel=1e-12)
    assert m["power_w"] == pytest.approx(it_w, rel=1e-9)
    assert m["energy_kwh"] == pytest.approx(kwh, rel=1e-9)
    intensity = r.get("grid_intensity") * 3.6e6  # kg/kWh
    assert m["carbon_operational_kg"] == pytest.approx(kwh * intensity, rel=1e-9)
    host_embodied = (DGX.get("embodied_carbon") or 0.0) / 8  # not counted where the catalog has no node footprint
    embodied = (H100.get("embodied_carbon") + host_embodied) * 4 * hours * 3600 / A["hardware_life"].si
    assert m["carbon_embodied_kg"] == pytest.approx(embodied, rel=1e-9)
    assert m["carbon_kg"] == pytest.approx(kwh * intensity + embodied, rel=1e-9)
    rate = H100.get("rent_on_demand") * 3600  # USD per GPU-hour
    assert m["tco_usd"] == pytest.approx(rate * 4 * hours, rel=1e-12)
    assert m["capex_usd"] == 0 and m["opex_usd"] == m["tco_usd"]
    # capacity: the fleet generates tokens_per_s for the whole horizon
    assert m["cost_per_mtok_usd"] == pytest.approx(m["tco_usd"] / (m["tokens_per_s"] * days * DAY / 1e6), rel=1e-9)
    water = kwh / r.get("pue") * r.get("wue") * 3.6e6 * 1e3 + kwh * (r.get("water_offsite") or 0.0) * 3.6e9
    assert m["water_l"] == pytest.approx(water, rel=1e-9)


def test_small_owned_fleet_by_hand():
    days, r = 365, region("us-texas")
    m = dse.evaluate(**SERVE, gpus=8, duration_days=days, region="us-texas", purchase="buy")
    held = days * DAY
    storage = A["storage_capex_fraction"].si if "storage_capex_fraction" in A else 0.0
    hardware = 8 * DGX.get("purchase_price") / 8 * (1 + A["network_capex_fraction"].si + storage)
    assert m["hardware_cost_usd"] == pytest.approx(hardware, rel=1e-12)
    capex = hardware * held / A["hardware_life"].si
    assert m["capex_usd"] == pytest.approx(capex, rel=1e-9)
    provisioned = 8 * (H100.get("tdp") + DGX.get("host_power") / 8)
    maintenance = hardware * A["maintenance_rate"].si * held if "maintenance_rate" in A else 0.0
    opex = (m["energy_kwh"] * r.get("electricity_price") * 3.6e6 + maintenance
            + provisioned * A["facility_cost"].si * held)
    assert m["opex_usd"] == pytest.approx(opex, rel=1e-9)
    assert m["tco_usd"] == pytest.approx(capex + opex, rel=1e-12)


def test_coal_to_hydro_scales_operational_carbon_by_intensity_and_tco_by_price():
    coal, hydro = region("poland"), region("quebec")
    same = dict(**SERVE, duration_days=90, purchase="buy", pue=1.2)
    a = dse.evaluate(**same, region=coal.name)
    b = dse.evaluate(**same, region=hydro.name)
    assert a["energy_kwh"] == b["energy_kwh"]
    ratio = coal.get("grid_intensity") / hydro.get("grid_intensity")
    assert a["carbon_operational_kg"] / b["carbon_operational_kg"] == pytest.approx(ratio, rel=1e-9)
    assert a["carbon_embodied_kg"] == b["carbon_embodied_kg"]  # embodied carbon does not depend on the region
    price_gap = (coal.get("electricity_price") - hydro.get("electricity_price")) * 3.6e6  # USD/kWh
    assert a["tco_usd"] - b["tco_usd"] == pytest.approx(a["energy_kwh"] * price_gap, rel=1e-9)


def test_proportionality():
    one = dse.evaluate(**SERVE, duration_days=10)
    two = dse.evaluate(**SERVE, duration_days=20)
    for key in ("energy_kwh", "carbon_kg", "water_l", "tco_usd", "gpu_hours"):
        assert two[key] == pytest.approx(2 * one[key], rel=1e-12), key
    low = dse.evaluate(**SERVE, duration_days=10, pue=1.0)
    high = dse.evaluate(**SERVE, duration_days=10, pue=1.5)
    assert high["energy_kwh"] == pytest.approx(1.5 * low["energy_kwh"], rel=1e-12)
    assert high["power_w"] == low["power_w"]  # IT power; the facility overhead is in the energy
    grid = dse.evaluate(**SERVE, duration_days=10, grid_g_per_kwh=100)
    assert grid["carbon_operational_kg"] == pytest.approx(grid["energy_kwh"] * 0.1, rel=1e-12)


def test_buy_and_rent_cross_at_the_predicted_utilization():
    days, r = 365, region("us-texas")
    point = dict(**SERVE, gpus=8, duration_days=days, region="us-texas")
    rent = dse.evaluate(**point)["tco_usd"]
    full = dse.evaluate(**point, purchase="buy")
    held = days * DAY
    # per held second: rent r; buy (C/L + m C + f P) / u + electricity e, so they meet at u* below
    fixed = full["capex_usd"] + full["opex_usd"] - full["energy_kwh"] * r.get("electricity_price") * 3.6e6
    energy_cost = full["energy_kwh"] * r.get("electricity_price") * 3.6e6
    u_star = fixed / (rent - energy_cost)
    assert 0 < u_star < 1, u_star
    below = dse.evaluate(**point, purchase="buy", fleet_utilization=u_star * 0.98)["tco_usd"]
    above = dse.evaluate(**point, purchase="buy", fleet_utilization=min(1.0, u_star * 1.02))["tco_usd"]
    assert below > rent > above
    # at full use, depreciation hardware x held / L is what changes with the life L: they meet at L*
    other = full["tco_usd"] - full["capex_usd"]
    life_star = full["hardware_cost_usd"] * held / (rent - other) / (365.25 * DAY)
    shorter = dse.evaluate(**point, purchase="buy", life_years=life_star * 0.98)["tco_usd"]
    longer = dse.evaluate(**point, purchase="buy", life_years=life_star * 1.02)["tco_usd"]
    assert shorter > rent > longer


def test_young_daly_lengthens_a_16k_gpu_run_through_the_economics_layer():
    from dse import economics as layer
    site = layer.site(H100, None, "rent")
    ideal = 54 * DAY
    m = {"checkpoint_bytes": 405e9 * (2 + 12), "time_to_train_s": ideal, "activity": 1.0}
    n = {"gpus": 16_384, "gpus_per_node": 8, "tokens": 15.6e12, "duration_days": None}
    out = layer.apply(m, n, "train", site)
    lam = 16_384 * A["gpu_failure_rate"].si + 2_048 * A["node_failure_rate"].si
    delta = 405e9 * 14 / (2_048 * A["checkpoint_bandwidth"].si)
    tau = math.sqrt(2 * delta / lam) - delta
    restart = A["restart_time"].si + delta  # detection and restart, then the checkpoint read back
    good = (1 - lam * (restart + (tau + delta) / 2)) / (1 + delta / tau)
    assert out["goodput"] == pytest.approx(good, rel=1e-12)
    assert out["time_to_train_s"] == pytest.approx(ideal / good, rel=1e-12)
    assert out["failures"] == pytest.approx(ideal / good * lam, rel=1e-12)
    # Daly 2006 eq. 20, the exponential model the first-order form approximates: within 0.1%
    mtbf = 1 / lam
    exact = tau / (mtbf * math.exp(restart / mtbf) * (math.exp((tau + delta) / mtbf) - 1))
    assert out["goodput"] == pytest.approx(exact, rel=1e-3)


def test_young_daly_lengthens_a_16k_gpu_run():
    gpus, nodes = 16_384, 2_048
    lam = gpus * A["gpu_failure_rate"].si + nodes * A["node_failure_rate"].si  # failures per second
    mtbf = 1 / lam
    state = 405e9 * (2 + 12)  # Llama 3 405B: bf16 weights + fp32 master, Adam m and v
    delta = state / (nodes * A["checkpoint_bandwidth"].si)
    tau = math.sqrt(2 * delta * mtbf) - delta  # Young's interval with Daly's correction
    restart = A["restart_time"].si
    good = (1 - (restart + (tau + delta) / 2) / mtbf) / (1 + delta / tau)
    assert reliability.checkpoint_interval(delta, mtbf) == pytest.approx(tau, rel=1e-12)
    assert reliability.goodput(delta, tau, restart, mtbf) == pytest.approx(good, rel=1e-12)
    # Llama 3 405B reports > 90% effective training time at this scale (Dubey et al. 2024, 3.3.4)
    assert 0.85 < good < 0.99
    # 54 days of work take 54 / goodput days of wall time, with that many expected interruptions
    wall = 54 * DAY / good
    assert wall * lam == pytest.approx(54 * DAY / good / mtbf, rel=1e-12)


def test_training_run_cost_follows_goodput():
    m = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="train", batch=64, dp=8, zero=3,
                     recompute="full", tokens=1e11)
    assert m["time_to_train_s"] == pytest.approx(m["failure_free_time_to_train_s"] / m["goodput"], rel=1e-12)
    assert m["failure_free_time_to_train_s"] == pytest.approx(1e11 / m["tokens_per_s"], rel=1e-12)
    assert m["gpu_hours"] == pytest.approx(8 * m["time_to_train_s"] / 3600, rel=1e-12)
    assert m["tco_usd"] == pytest.approx(m["gpu_hours"] * H100.get("rent_on_demand") * 3600, rel=1e-12)
    fixed = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="train", batch=64, dp=8, zero=3,
                         recompute="full", duration_days=7)
    assert fixed["tokens_trained"] == pytest.approx(fixed["tokens_per_s"] * fixed["goodput"] * 7 * DAY, rel=1e-12)


def test_serving_fleet_at_a_load_keeps_spares_and_idles_between_requests():
    m = dse.evaluate(**SERVE, qps=20, ttft_slo=2.0, duration_days=30)
    assert m["fleet_gpus"] == m["replicas_needed"] + m["spare_replicas"]
    # a replica fails every ~7 years and is back in minutes: no spare is needed for 99.9%
    assert m["spare_replicas"] == 0
    assert m["cost_per_mtok_usd"] == pytest.approx(m["tco_usd"] / (20 * 128 * 30 * DAY / 1e6), rel=1e-12)
    # at 0.5 requests/s one replica (32 slots) holds a request with probability 1 - P0 = 1 - e^-A for A << 32
    light = dse.evaluate(**SERVE, qps=0.5, duration_days=30)
    full = dse.evaluate(**SERVE, duration_days=30)
    offered = 0.5 * light["request_latency_s"]
    assert light["activity"] == pytest.approx(full["activity"] * (1 - math.exp(-offered)), rel=1e-6)
    assert light["activity"] < 0.7 * full["activity"]
    assert light["power_w"] == pytest.approx(h100_draw(light["activity"]), rel=1e-9)


def _same_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """evaluate_many's rows equal evaluate's, every metric (NaN in the frame where evaluate leaves it out)."""
    out = dse.evaluate_many(frame)
    for i, row in frame.iterrows():
        one = dse.evaluate(**{k: v for k, v in row.to_dict().items() if not (isinstance(v, float) and math.isnan(v))})
        for key in out.columns:
            got = out[key].iloc[i]
            if key not in one:
                assert pd.isna(got), (i, key, got)
            elif isinstance(one[key], str | bool):
                assert got == one[key], (i, key)
            else:
                assert got == pytest.approx(one[key], rel=1e-9), (i, key)
    return out


def test_evaluate_many_carries_economics_column_wise():
    regions = ["us-average", "quebec", "poland", "us-texas"]
    frame = pd.DataFrame({**{k: v for k, v in SERVE.items()}, "region": regions, "duration_days": [10, 20, 30, 40],
                          "purchase": ["rent", "buy", "rent", "buy"]})
    out = _same_rows(frame)
    assert np.isnan(out["hardware_cost_usd"].iloc[0]) and out["hardware_cost_usd"].iloc[1] > 0


def test_evaluate_many_at_a_load_and_for_training_runs():
    serve = pd.DataFrame({**SERVE, "duration_days": 30, "qps": [0.5, 20.0, 500.0], "ttft_slo": [5.0, 2.0, 0.001]})
    out = _same_rows(serve)
    # no replica count meets a 1 ms TTFT: the deployment given (one replica) can only make its own tokens
    assert out["tokens_generated"].iloc[2] == pytest.approx(out["tokens_per_s"].iloc[2] * 30 * DAY, rel=1e-9)
    train = pd.DataFrame({"workload": "llama-3-8b", "hardware": "h100", "mode": "train", "batch": 64, "dp": 8,
                          "zero": 3, "recompute": "full", "tokens": [1e11, None, None],
                          "duration_days": [None, 7.0, 14.0], "purchase": ["rent", "rent-gpu-cloud", "rent-reserved"]})
    _same_rows(train)


def test_every_region_evaluates():
    for r in registry("regions"):
        m = dse.evaluate(**SERVE, duration_days=1, region=r.name)
        assert m["energy_kwh"] > 0 and m["carbon_kg"] > 0, r.name
        assert ("water_l" in m) == (r.get("wue") is not None), r.name


def test_owned_hardware_pays_off_after_the_predicted_horizon():
    # a project that bears the whole purchase (hardware life = its horizon): buying costs C + e H, renting
    # r H, so buying pays off after H* = C / (r - e), with e the owned cost per day that is not capex
    point = dict(**SERVE, gpus=8, region="us-texas")
    day = dse.evaluate(**point, duration_days=1, purchase="buy", life_years=1 / 365.25)
    rent_per_day = dse.evaluate(**point, duration_days=1)["tco_usd"]
    capex = day["hardware_cost_usd"]
    h_star = capex / (rent_per_day - (day["tco_usd"] - capex))
    for days, buy_cheaper in ((h_star * 0.95, False), (h_star * 1.05, True)):
        buy = dse.evaluate(**point, duration_days=days, purchase="buy", life_years=days / 365.25)["tco_usd"]
        rent = dse.evaluate(**point, duration_days=days)["tco_usd"]
        assert (buy < rent) == buy_cheaper, days


def test_energy_calibration_meets_its_acceptance():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "bench" / "calibrate_energy.py"
    spec = importlib.util.spec_from_file_location("calibrate_energy", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows, energy_median, carbon_median = bench.table()
    assert len(rows) == 6 and energy_median < 0.20 and carbon_median < 0.20
    for _, _, measured, model, error in bench.node_check():
        assert abs(error) < 0.25, (measured, model)


def test_spares_follow_the_binomial_tail():
    # 200 replicas of one H100 each (plus 1/8 of its node) out for 3 days after each failure
    lam = (A["gpu_failure_rate"].si + A["node_failure_rate"].si / 8)
    q = lam * 72 * 3600 / (1 + lam * 72 * 3600)
    from scipy.stats import binom
    k = next(k for k in range(50) if binom.sf(k, 200 + k, q) <= 1e-3)
    assert k >= 1
    assert reliability.spares_needed(200, lam, 72 * 3600, 1e-3) == k
    m = dse.evaluate(**SERVE, gpus=200, duration_days=30, repair_hours=72)
    assert m["spare_replicas"] == k and m["fleet_gpus"] == 200 + k


def test_a_users_chip_does_not_borrow_a_catalog_node(tmp_path):
    chip = tmp_path / "h100-sxm.toml"
    chip.write_text("""
[peak]
bf16 = { value = 989.5, unit = "TFLOP/s" }
[spec]
memory_capacity = { value = 80, unit = "GiB" }
memory_bandwidth = { value = 3.35, unit = "TB/s" }
tdp = { value = 700, unit = "W" }
purchase_price = { value = 20000, unit = "USD" }
""")
    r = dse.evaluate_point(workload="llama-3-8b", hardware_file=str(chip), mode="serve", batch=8, duration_days=30,
                           purchase="buy")
    storage = A["storage_capex_fraction"].si if "storage_capex_fraction" in A else 0.0
    assert r.metrics["hardware_cost_usd"] == pytest.approx(20000 * (1 + A["network_capex_fraction"].si + storage))
    assert any("host" in note for note in r.notes)
    bad = tmp_path / "hot.toml"
    bad.write_text(chip.read_text() + 'idle_power = { value = 800, unit = "W" }\n')
    with pytest.raises(dse.DSEError, match="idle_power"):
        dse.evaluate(workload="llama-3-8b", hardware_file=str(bad))


def test_carbon_per_million_tokens():
    m = dse.evaluate(**SERVE, duration_days=30, region="ca-quebec")
    assert m["carbon_per_mtok_kg"] == pytest.approx(m["carbon_kg"] / (m["tokens_generated"] / 1e6), rel=1e-12)


def test_a_serving_fleet_pays_for_what_it_deploys_or_what_the_load_needs():
    needed = dse.evaluate(**SERVE, qps=20, duration_days=30)["replicas_needed"]
    over = dse.evaluate(**SERVE, qps=20, duration_days=30, gpus=needed + 3)
    assert over["fleet_gpus"] == needed + 3 and over["feasible"]
    under = dse.evaluate(**SERVE, qps=20, duration_days=30)  # one replica given: infeasible, costed as needed
    assert under["fleet_gpus"] == needed and (needed == 1 or not under["feasible"])
