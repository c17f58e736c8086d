"""The words of a procurement report: how a design, a metric, a recommendation and a flip point read
(shared by the Markdown and HTML forms)."""
from __future__ import annotations

from dse.report import readable

ROLE_TEXT = {"cheapest": "Cheapest", "fastest": "Fastest", "greenest": "Greenest", "knee": "Best compromise (knee)"}
SHOWN_METRICS = ("tco_usd", "cost_per_mtok_usd", "time_to_train_s", "request_latency_s", "ttft_p99_s", "itl_s",
                 "carbon_kg", "carbon_per_mtok_kg", "fleet_gpus", "gpus_needed", "energy_kwh")


def design(r: dict) -> str:
    """A design point by its parameters: ``hardware=h100-sxm, precision=fp8, ...``."""
    return ", ".join(f"{k}={v}" for k, v in r["params"].items())


def metrics(r: dict, objectives: list[str]) -> str:
    """The objectives and the headline metrics of a design, readable."""
    keys = list(dict.fromkeys([*objectives, *(k for k in SHOWN_METRICS if k in r["metrics"])]))
    return ", ".join(f"{k} {value(k, r['metrics'][k])}" for k in keys if k in r["metrics"])


def value(metric: str, x) -> str:
    """A metric in the unit a buyer reads it in: dollars, days or hours, tonnes or grams."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return readable(metric, x)
    if metric.endswith("_usd"):
        return f"${x / 1e6:,.3g}M" if abs(x) >= 1e6 else f"${x:,.0f}" if abs(x) >= 100 else f"${x:.3g}"
    if metric.endswith("_s") and not metric.endswith("_per_s") and abs(x) >= 7200:
        return f"{x / 86400:,.3g} days" if abs(x) >= 2 * 86400 else f"{x / 3600:.3g} h"
    if metric.endswith("_kg"):
        return f"{x / 1e3:,.3g} t" if abs(x) >= 1e3 else f"{x:.3g} kg" if abs(x) >= 1 else f"{x * 1e3:.3g} g"
    return readable(metric, x)


def number(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    text = f"{x:,.4g}"
    return f"{text} {unit}".strip()


def change(rec: dict, other: dict) -> str:
    """What differs between two designs: ``region us-texas -> france``."""
    diff = [f"{k} {rec['params'].get(k)} -> {v}" for k, v in other["params"].items() if rec["params"].get(k) != v]
    return ", ".join(diff) or "an equal design"


def flip(entry: dict, rec: dict) -> str:
    """One sentence for a flip point: ``above 0.14 USD/kWh (electricity price of us-central-iowa), the
    cheapest design changes: region us-central-iowa -> ca-quebec``."""
    side = "above" if entry["flips_at"] > entry["value"] else "below"
    if number(entry["flips_at"]) == number(entry["value"]):
        side = f"just {side}"  # a tie at the catalog value: any move that way flips it
    what = f"{entry['label']}" + (f" of {entry['input'].split(':', 1)[1]}" if ":" in entry["input"] else "")
    head = f"{side} {number(entry['flips_at'], entry['unit'])} ({what}, catalog value {number(entry['value'])})"
    role = entry["recommendation"]
    if entry["flips_to"] is None:
        return f"{head}, no design stays feasible as the {role} one"
    return f"{head}, the {role} design changes: {change(rec, entry['flips_to'])}"


def recommendation(role: str, r: dict, objectives: list[str]) -> str:
    return f"{ROLE_TEXT[role]}: {design(r)}. {metrics(r, objectives)}."
