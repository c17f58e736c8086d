"""Energy and operational carbon of published training runs against the power model.

    python bench/calibrate_energy.py          # table per row and the median absolute errors
    python bench/calibrate_energy.py --fit    # the busy-power fraction per device class that fits best

Rows (bench/calibration/carbon.csv, a copy of shared/calibration/carbon.csv): Patterson et al. 2021,
"Carbon Emissions and Large Neural Network Training", Table 4. Given what the paper publishes about
each run (accelerator count, days, PUE, net grid intensity), the model predicts the energy and the
tCO2e: energy = chips x days x 24 h x P x PUE, with P the modelled mean draw of one accelerator and
its host share in a training run (`dse.economics.Site`: idle + (f_load x TDP - idle) x activity,
host at its load fraction), activity 1 (a large training job runs kernels back to back; the job's
own launch gaps are below 1% at these sizes). The paper's measured mean system power per chip is
shown beside the model's. Then an 8x H100 node training, against the node powers measured by Latif
et al. 2024 and Newkirk et al. 2025 (bench/calibration/power.csv), which the fit did not see.
"""
from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from dse import economics
from dse.catalog import registry
from dse.models import calibration, carbon, power

CSV = Path(__file__).parent / "calibration" / "carbon.csv"
HARDWARE = {"TPU v2": "tpu-v2", "TPU v3": "tpu-v3", "NVIDIA V100": "v100-sxm2"}
ACTIVITY = 1.0


def rows() -> list[dict]:
    with open(CSV, newline="") as f:
        return [r for r in csv.DictReader(f) if r["num_chips"]]


def chip_power(device_name: str, load: float | None = None) -> float:
    """Modelled mean draw (W) of one accelerator and its host share during training."""
    device = registry("hardware").get(device_name, "hardware")
    site = economics.site(device, None, "rent")
    busy = site.busy_w if load is None else load * device.get("tdp")
    return (power.accelerator_power(site.idle_w, busy, ACTIVITY)
            + power.accelerator_power(site.host_idle_w, site.host_busy_w, ACTIVITY))


def predict(r: dict, load: float | None = None) -> tuple[float, float, float]:
    """(mean W per chip, energy MWh, tCO2e) for one row."""
    watts = chip_power(HARDWARE[r["hardware"]], load)
    seconds = float(r["training_days"]) * 86400.0
    kwh = power.facility_energy_kwh(int(r["num_chips"]) * watts, seconds, float(r["pue"]))
    return watts, kwh / 1e3, carbon.operational_kg(kwh, float(r["grid_kgCO2e_per_kWh_net"])) / 1e3


def table(load_by_class: dict[str, float] | None = None) -> tuple[list[tuple], float, float]:
    out, e_err, c_err = [], [], []
    for r in rows():
        device = registry("hardware").get(HARDWARE[r["hardware"]], "hardware")
        load = None if load_by_class is None else load_by_class[device.device_class]
        watts, mwh, tco2 = predict(r, load)
        e = mwh / float(r["energy_MWh"]) - 1.0
        c = tco2 / float(r["tCO2e_net_or_total"]) - 1.0
        out.append((r["row_id"], r["hardware"], float(r["measured_avg_power_per_chip_W"]), watts,
                    float(r["energy_MWh"]), mwh, e, float(r["tCO2e_net_or_total"]), tco2, c))
        e_err.append(abs(e))
        c_err.append(abs(c))
    return out, statistics.median(e_err), statistics.median(c_err)


def _class_error(cls: str, load: float) -> float:
    """Median absolute energy error of one class's rows with its busy-power fraction set to `load`."""
    rows_of_class = [row for row in table({**calibration.POWER_LOAD, cls: load})[0]
                     if registry("hardware").get(HARDWARE[row[1]], "h").device_class == cls]
    return statistics.median(abs(row[6]) for row in rows_of_class)


def fit() -> dict[str, float]:
    """Per device class, the busy-power fraction of TDP minimising the median energy error of its rows."""
    best = {}
    for cls in ("datacenter-gpu", "datacenter-accel"):
        grid = [x / 100 for x in range(40, 101)]
        best[cls] = min(grid, key=lambda f, cls=cls: _class_error(cls, f))
    return best


NODE_POINT = dict(workload="llama-3-8b", hardware="h100", mode="train", batch=64, dp=8, zero=3, recompute="full",
                  duration_days=1)
POWER_CSV = Path(__file__).parent / "calibration" / "power.csv"


def node_check() -> list[tuple]:
    """An 8x H100 node training (Llama-3-8B, data-parallel, ZeRO-3) against the measured node powers."""
    import dse

    watts = dse.evaluate(**NODE_POINT)["power_w"]
    out = []
    with open(POWER_CSV, newline="") as f:
        for r in csv.DictReader(f):
            if r["row_id"] == "latif24_h100x8_node_max":
                measured = float(r["value"]) * 1e3
            elif r["row_id"] == "newkirk25_h100x8_node_fraction":
                measured = float(r["value"]) * 10.2e3  # fraction of the 10.2 kW rating
            else:
                continue
            out.append((r["row_id"], r["what"], measured, watts, watts / measured - 1.0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true")
    args = parser.parse_args()
    if args.fit:
        print("best busy-power fraction of TDP per class:", fit())
        return
    out, e_med, c_med = table()
    print("| row | chip | measured W/chip | model W/chip | energy MWh | model MWh | error | tCO2e | model tCO2e "
          "| error |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in out:
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:,.1f} | {r[5]:,.1f} | {r[6]:+.1%} | "
              f"{r[7]:,.1f} | {r[8]:,.1f} | {r[9]:+.1%} |")
    print(f"\nmedian absolute error: energy {e_med:.1%}, tCO2e {c_med:.1%} over {len(out)} rows")
    print("\n| 8x H100 node, training (not fitted) | measured W | model W | error |\n|---|---:|---:|---:|")
    for row_id, what, measured, model, err in node_check():
        print(f"| {row_id}: {what} | {measured:,.0f} | {model:,.0f} | {err:+.1%} |")


if __name__ == "__main__":
    main()
