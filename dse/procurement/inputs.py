"""The uncertain inputs a procurement report varies: each is an evaluation option (`dse eval`'s
--electricity-price, --pue, --gpu-hour-price, ...) set on the design points it concerns (one region's,
one accelerator's, or all), over a low/high range read from the catalog with its source. An input
whose catalog figure has no range is not varied, and the report says so."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dse import config as cfg
from dse import economics
from dse.catalog import economics as assumptions
from dse.catalog import registry
from dse.catalog.types import Quantity
from dse.errors import UnknownNameError
from dse.models.power import J_PER_KWH

SECONDS_PER_HOUR = 3600.0
# Owned hardware's utilisation: the model's default is fully used (1.0); LBNL's 2024 US Data Center Energy
# Usage Report (Shehabi et al., as quoted by Uptime Institute UII Update 362, May 2025, the source of the
# catalog's idle_power_fraction) puts GPU servers in useful work 75-85% of the time.
UTILISATION = (0.75, 1.0, 1.0)
UTILISATION_SOURCE = ("LBNL 2024 United States Data Center Energy Usage Report (Shehabi et al., Dec 2024), as "
                      "quoted by Uptime Institute UII Update 362 (May 2025): GPU servers in useful work 75-85% of "
                      "the time; high = the model's default, fully used")
RENT_CLASSES = economics.RENT_FIELDS  # purchase choice -> accelerator price field


@dataclass(frozen=True)
class Input:
    """One uncertain input: `key` (what `--vary` names), the option it sets, whom it concerns (`scope`:
    "region", "hardware" or "all"), the purchase choices it applies to (None: all), a label and unit."""

    key: str
    option: str
    scope: str
    purchases: tuple[str, ...] | None
    label: str
    unit: str
    worse: str  # "high" or "low": the end that makes cost and carbon worse (the pessimistic case)


INPUTS = (
    Input("electricity_price", "electricity_price", "region", ("buy",), "electricity price", "USD/kWh", "high"),
    Input("pue", "pue", "region", None, "PUE", "", "high"),
    Input("grid_intensity", "grid_g_per_kwh", "region", None, "grid carbon intensity", "g/kWh", "high"),
    Input("gpu_hour_price", "gpu_hour_price", "hardware", tuple(RENT_CLASSES), "rental price", "USD/GPU-h", "high"),
    Input("gpu_price", "gpu_price", "hardware", ("buy",), "purchase price", "USD/GPU", "high"),
    Input("utilisation", "fleet_utilization", "all", ("buy",), "owned fleet utilisation", "", "low"),
    Input("hardware_life", "life_years", "all", None, "hardware life", "years", "low"),
    Input("gpu_failure_rate", "gpu_failure_rate", "all", None, "GPU failure rate", "1/GPU-h", "high"),
    Input("node_failure_rate", "node_failure_rate", "all", None, "node failure rate", "1/node-h", "high"),
)
BY_KEY = {i.key: i for i in INPUTS}
# catalog figures the issue names as uncertain that no evaluation option can vary yet
NOT_VARIED = ("accelerator efficiency (fitted per device class, no range)",
              "embodied carbon (catalog footprints have no range, no evaluation option)")


@dataclass(frozen=True)
class Range:
    """An input's range for one entity (a region, an accelerator and purchase choice, or all points):
    `value` is what the models use when the option is not given."""

    input: Input
    entity: str
    purchase: str | None
    low: float
    value: float
    high: float
    source: str

    @property
    def name(self) -> str:
        """How the report names it: the input key, and whose figure it is."""
        return self.input.key if self.input.scope == "all" else f"{self.input.key}:{self.entity}"

    def rows(self, options: pd.DataFrame) -> pd.Series:
        """Which design points (an `evaluate_many` frame) this range concerns."""
        mask = pd.Series(True, index=options.index)
        if self.input.scope == "region":
            mask &= _column(options, "region", economics.DEFAULT_REGION) == self.entity
        elif self.input.scope == "hardware":
            mask &= _column(options, "hardware", None) == self.entity
        if self.purchase is not None:
            mask &= _column(options, "purchase", cfg.DEFAULTS["purchase"]) == self.purchase
        elif self.input.purchases is not None:
            mask &= _column(options, "purchase", cfg.DEFAULTS["purchase"]).isin(self.input.purchases)
        return mask


def _column(options: pd.DataFrame, key: str, default) -> pd.Series:
    if key in options:
        return options[key].fillna(default).astype(object)
    return pd.Series(default, index=options.index, dtype=object)


def check_keys(keys: list[str] | None) -> tuple[Input, ...]:
    """The inputs named (all when None); an unknown name is an UnknownNameError."""
    if keys is None:
        return INPUTS
    for k in keys:
        if k not in BY_KEY:
            raise UnknownNameError("--vary", k, BY_KEY)
    return tuple(BY_KEY[k] for k in keys)


def ranges(point: dict, inputs: tuple[Input, ...], skipped: list[str]) -> list[Range]:
    """The ranges of the inputs that concern one design point (its option values), each over its
    catalog low/high (a missing side is the value itself); inputs without any range are appended to
    `skipped` with the reason."""
    out = []
    purchase = point.get("purchase") or cfg.DEFAULTS["purchase"]
    region = point.get("region") or economics.DEFAULT_REGION
    for i in inputs:
        if i.purchases is not None and purchase not in i.purchases:
            continue
        found = _range(i, point, region, purchase)
        if isinstance(found, str):
            skipped.append(found)
        elif found.low < found.high:
            out.append(found)
        else:
            skipped.append(f"{i.label} of {found.entity}: the catalog gives no low/high range")
    return out


def _range(i: Input, point: dict, region: str, purchase: str) -> Range | str:
    if i.scope == "region":
        r = registry("regions").get(region, "--region")
        field = {"grid_g_per_kwh": "grid_intensity"}.get(i.option, i.option)
        q = r.fields.get(field)
        if q is None:
            return f"{i.label} of {region}: not in the catalog"
        scale = J_PER_KWH if i.option == "electricity_price" else 1e3 * J_PER_KWH if field == "grid_intensity" else 1
        return _from_quantity(i, region, None, q, scale)
    if i.scope == "hardware":
        device = cfg.resolve_hardware(point.get("hardware"), None)
        if i.option == "gpu_hour_price":
            q = device.spec.get(RENT_CLASSES[purchase])
            if q is None:
                return f"{i.label} of {device.name} ({purchase}): not in the catalog"
            return _from_quantity(i, device.name, purchase, q, SECONDS_PER_HOUR)
        return _gpu_price(i, device, region)
    if i.option == "fleet_utilization":
        low, value, high = UTILISATION
        return Range(i, "all", None, low, value, high, UTILISATION_SOURCE)
    if i.option == "life_years":
        return _from_quantity(i, "all", None, assumptions()["hardware_life"], 1 / economics.SECONDS_PER_YEAR)
    return _from_quantity(i, "all", None, assumptions()[i.key], SECONDS_PER_HOUR)


def _from_quantity(i: Input, entity: str, purchase: str | None, q: Quantity, scale: float) -> Range:
    value = _round(q.si * scale)
    low = value if q.low_si is None else _round(q.low_si * scale)
    high = value if q.high_si is None else _round(q.high_si * scale)
    return Range(i, entity, purchase, low, value, high, f"{q.source} ({q.date})")


def _round(x: float) -> float:
    """Undo the last-digit noise of a unit round trip (6 years -> s -> 5.999999999999999 years)."""
    return float(f"{x:.12g}")


def _gpu_price(i: Input, device, region: str) -> Range | str:
    """The purchase price per accelerator the models use (node share, network and storage included),
    scaled over the accelerator's own catalog price range."""
    unit = economics.site(device, region, "buy").hardware_usd
    q = device.spec.get("purchase_price")
    if q is None or unit != unit:  # NaN: no price at all
        return f"{i.label} of {device.name}: not in the catalog"
    low = unit * (q.low_si / q.si if q.low_si is not None else 1.0)
    high = unit * (q.high_si / q.si if q.high_si is not None else 1.0)
    return Range(i, device.name, "buy", low, unit, high, f"{q.source} ({q.date}); range scaled onto the "
                 "price with its host, network and storage share")
