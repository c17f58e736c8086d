"""The economics layer, applied on top of any mode's metrics when a horizon is given (`--tokens` or
`--duration-days`): power, energy, carbon, water, cost (buy or rent) and reliability of the fleet
the design point needs. Catalog look-ups for one (accelerator, region, purchase) choice are
resolved once into `Site`; `apply` is column-wise like the mode models."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dse.catalog import Accelerator, Node, economics, node_for, registry
from dse.models import calibration, carbon, cost, power, reliability, serving
from dse.models.power import J_PER_KWH

DEFAULT_REGION = "us-average"
SPARE_RISK = 1e-3  # serving fleets keep enough spares that all replicas are up 99.9% of the time
SECONDS_PER_YEAR = 365.25 * 86400.0
NAN = math.nan


@dataclass(frozen=True, slots=True)
class Site:
    """Per-accelerator power, carbon and price figures, and the region's, for one categorical choice.
    A figure the catalog lacks is NaN, so every metric it feeds is NaN (unknown, never guessed)."""

    purchase: str
    idle_w: float
    busy_w: float
    host_idle_w: float  # host share per accelerator, idle and busy
    host_busy_w: float
    provisioned_w: float  # accelerator TDP + host maximum share: the IT capacity to provision
    embodied_kg: float  # accelerator + host share, manufacturing footprint
    hardware_usd: float  # per accelerator, with its share of host, network and storage
    rent_usd_per_h: float
    gpus_per_node: float | None  # of the catalog node, None without one
    intensity_kg_per_kwh: float
    pue: float
    wue_l_per_kwh: float
    offsite_l_per_kwh: float
    price_usd_per_kwh: float
    life_s: float
    maintenance_per_s: float
    facility_usd_per_w_s: float
    gpu_failures_per_s: float
    node_failures_per_s: float
    restart_s: float
    checkpoint_bw_per_node: float
    notes: tuple[str, ...]


def _si(a: dict, key: str, default: float = NAN) -> float:
    """SI value of an economics assumption, or `default` when the catalog could not source it."""
    return a[key].si if key in a else default


def _power(device: Accelerator, node: Node | None, a: dict, notes: list) -> tuple[float, ...]:
    """(idle, busy, host idle, host busy, provisioned) W per accelerator; NaN where the catalog lacks the
    TDP. The host share of a node's non-accelerator maximum idles at the same fraction of nameplate as
    an idle server and draws `host_load_fraction` of it under load."""
    tdp = device.get("tdp")
    if tdp is None:
        notes.append(f"{device.name} has no TDP in the catalog: power, energy, carbon and owned cost are unknown")
        return NAN, NAN, 0.0, 0.0, NAN
    idle = device.get("idle_power")
    if idle is None:
        idle = _si(a, "idle_power_fraction") * tdp
        notes.append(f"idle power {idle:.3g} W = {a['idle_power_fraction'].value:g} x TDP (no measured idle "
                     f"power for {device.name})")
    host_max = node.get("host_power") / node.accelerators if node and node.get("host_power") else 0.0
    if not host_max:
        notes.append(f"no catalog node with host power for {device.name}: host (CPU, memory, NIC) power is not "
                     "counted")
    busy = calibration.POWER_LOAD[device.device_class] * tdp
    return (idle, busy, host_max * _si(a, "idle_power_fraction"), host_max * a["host_load_fraction"].si,
            tdp + host_max)


def _embodied(device: Accelerator, node: Node | None, a: dict, notes: list) -> float:
    """Manufacturing footprint per accelerator with its host share (kg); NaN when unknown."""
    kg = device.get("embodied_carbon")
    if kg is None and device.get("die_area"):
        kg = carbon.estimated_accelerator_kg(device.get("die_area"), device.memory_capacity,
                                             a["embodied_per_die_area"].si, a["embodied_per_memory_gb"].si,
                                             _si(a, "embodied_packaging", 0.0))
        notes.append(f"embodied carbon of {device.name} estimated from die area and memory: {kg:.0f} kg (ACT-style "
                     "model of die and memory only; product footprints such as H100's 164 kg are ~3x higher)")
    elif kg is None:
        notes.append(f"no embodied carbon (footprint or die area) for {device.name}: embodied carbon is unknown")
        return NAN
    if node is None or node.get("embodied_carbon") is None:
        notes.append("host embodied carbon is not counted (no node footprint in the catalog)")
        return kg
    return kg + node.get("embodied_carbon") / node.accelerators


def _hardware_usd(device: Accelerator, node: Node | None, a: dict, notes: list) -> float:
    """Purchase price per accelerator with its share of host, cluster network and storage; NaN when unknown."""
    if node and node.get("purchase_price"):
        unit = node.get("purchase_price") / node.accelerators
    elif device.get("purchase_price"):
        unit = device.get("purchase_price")
        notes.append(f"buy: {device.name} priced alone (no catalog node price): host not included")
    else:
        notes.append(f"no purchase price for {device.name} in the catalog: cost is unknown")
        return NAN
    if "maintenance_rate" not in a:
        notes.append("buy: maintenance is not counted (no sourced rate in the catalog)")
    return unit * (1.0 + a["network_capex_fraction"].si + _si(a, "storage_capex_fraction", 0.0))


RENT_FIELDS = {"rent": "rent_on_demand", "rent-reserved": "rent_reserved", "rent-gpu-cloud": "rent_gpu_cloud"}


def site(device: Accelerator, region_name: str | None, purchase: str) -> Site:
    """Resolve the catalog figures one design point's economics need (cached by the caller)."""
    a = economics()
    region = registry("regions").get(DEFAULT_REGION if region_name is None else region_name, "--region")
    notes = [] if region_name else [f"region: {region.name} (default; choose with --region)"]
    node = node_for(device)
    idle, busy, host_idle, host_busy, provisioned = _power(device, node, a, notes)
    embodied = _embodied(device, node, a, notes)
    hardware = _hardware_usd(device, node, a, notes) if purchase == "buy" else NAN
    rent = device.get(RENT_FIELDS[purchase]) if purchase in RENT_FIELDS else None
    if purchase in RENT_FIELDS and rent is None:
        notes.append(f"no {RENT_FIELDS[purchase].replace('_', ' ')} price for {device.name} in the catalog: cost "
                     "is unknown")
    price = region.get("electricity_price")
    if purchase == "buy" and price is None:
        notes.append(f"no electricity price for {region.name}: owned cost is unknown (give --electricity-price)")
    wue, offsite = region.get("wue"), region.get("water_offsite")
    if wue is None:
        notes.append(f"no on-site WUE for {region.name}: water is unknown")
    if offsite is None:
        notes.append(f"no off-site (generation) water figure for {region.name}: water_l is on-site cooling only")
    return Site(
        purchase=purchase, idle_w=idle, busy_w=busy, host_idle_w=host_idle, host_busy_w=host_busy,
        provisioned_w=provisioned, embodied_kg=embodied, hardware_usd=hardware,
        rent_usd_per_h=NAN if rent is None else rent * 3600.0, gpus_per_node=node.accelerators if node else None,
        intensity_kg_per_kwh=region.get("grid_intensity") * J_PER_KWH, pue=region.get("pue"),
        wue_l_per_kwh=NAN if wue is None else wue * J_PER_KWH * 1e3,
        offsite_l_per_kwh=(offsite or 0.0) * J_PER_KWH * 1e3,
        price_usd_per_kwh=NAN if price is None else price * J_PER_KWH, life_s=a["hardware_life"].si,
        maintenance_per_s=_si(a, "maintenance_rate", 0.0), facility_usd_per_w_s=a["facility_cost"].si,
        gpu_failures_per_s=a["gpu_failure_rate"].si, node_failures_per_s=a["node_failure_rate"].si,
        restart_s=_si(a, "restart_time"), checkpoint_bw_per_node=a["checkpoint_bandwidth"].si, notes=tuple(notes))


def _given(n: dict, key: str, default):
    return default if n.get(key) is None else n[key]


def _failure_rates(n: dict, site: Site) -> tuple:
    """Failures per GPU-second and per node-second: the options (per hour) where given, else the catalog's."""
    return (_given(n, "gpu_failure_rate", site.gpu_failures_per_s * 3600.0) / 3600.0,
            _given(n, "node_failure_rate", site.node_failures_per_s * 3600.0) / 3600.0)


def _training(m: dict, n: dict, site: Site, per_node: float, out: dict):
    """Horizon, fleet and tokens of a training run: wall time stretched by checkpoint/restart."""
    gpus = n["gpus"]
    nodes = np.ceil(gpus / per_node)
    rate = reliability.failure_rate(gpus, nodes, *_failure_rates(n, site))
    write_s = m["checkpoint_bytes"] / (nodes * site.checkpoint_bw_per_node)
    interval = reliability.checkpoint_interval(write_s, 1.0 / rate)
    # a restart reloads the checkpoint at the bandwidth it was written with
    good = reliability.goodput(write_s, interval, site.restart_s + write_s, 1.0 / rate)
    out.update(goodput=good, checkpoint_interval_s=interval, checkpoint_write_s=write_s, mtbf_s=1.0 / rate)
    if n["tokens"] is not None:
        held = m["time_to_train_s"] / good
        out.update(failure_free_time_to_train_s=m["time_to_train_s"], time_to_train_s=held)
    else:
        held = n["duration_days"] * 86400.0
        if "tokens_per_s" in m:
            out["tokens_trained"] = m["tokens_per_s"] * good * held
    out["failures"] = held * rate
    return held, gpus, 0.0, m["activity"]


def _serving(m: dict, n: dict, site: Site, per_node: float, out: dict):
    """Horizon, fleet and tokens of a serving deployment. At a request rate the fleet is the deployment
    given or, when the load needs more replicas, those (what it would take to serve the load; the
    point is then infeasible as given), busy while its M/M/c queue holds a request, generating what the
    load asks up to what the replicas can; without a rate, the deployment runs full. Spares idle
    beside it."""
    held = n["duration_days"] * 86400.0
    given = m["replicas"]
    if n["qps"] is None:
        replicas, activity, tokens = given, m["activity"], m["tokens_per_s"] * held
    else:
        needed = np.asarray(m.get("replicas_needed", NAN), dtype=float)
        replicas = np.where(np.isfinite(needed), np.maximum(needed, given), given)
        load = n["qps"] / replicas * m["request_latency_s"]
        # an unstable queue (load >= slots) is always busy; 1 - P0 tends to 1 as the load nears the slots
        activity = m["activity"] * serving.busy_probability(n["batch"], np.minimum(load, 0.999 * n["batch"]))
        tokens = np.minimum(n["qps"] * n["output_len"], m["tokens_per_s"] / given * replicas) * held
    tp = n["tp"]
    rate = reliability.failure_rate(tp, tp / per_node, *_failure_rates(n, site))
    repair = _given(n, "repair_hours", None)
    spares = reliability.spares_needed(replicas, rate, site.restart_s if repair is None else repair * 3600.0,
                                       SPARE_RISK)
    out.update(spare_replicas=spares, tokens_generated=tokens)
    return held, replicas * tp, spares * tp, activity


def apply(m: dict, n: dict, mode: str, site: Site) -> dict:
    """The horizon's energy, carbon, water, cost and reliability metrics for a mode's metrics `m`
    (numbers or columns), to add to them (`activity` and `time_to_train_s` replace the mode's): busy
    accelerators draw power by their activity, spares idle; owned hardware is charged by the share of
    its life the workload takes (`--fleet-utilization`)."""
    out: dict = {}
    per_node = site.gpus_per_node or n["gpus_per_node"]
    if mode == "train":
        held, busy_gpus, idle_gpus, activity = _training(m, n, site, per_node, out)
    elif mode == "serve":
        held, busy_gpus, idle_gpus, activity = _serving(m, n, site, per_node, out)
    else:
        held, busy_gpus, idle_gpus, activity = n["duration_days"] * 86400.0, n["gpus"], 0.0, m["activity"]
    gpus = busy_gpus + idle_gpus
    pue = _given(n, "pue", site.pue)
    intensity = site.intensity_kg_per_kwh if n.get("grid_g_per_kwh") is None else n["grid_g_per_kwh"] / 1e3
    busy_w = (power.accelerator_power(site.idle_w, site.busy_w, activity)
              + power.accelerator_power(site.host_idle_w, site.host_busy_w, activity))
    it_w = busy_gpus * busy_w + idle_gpus * (site.idle_w + site.host_idle_w)
    energy = power.facility_energy_kwh(it_w, held, pue)
    operational = carbon.operational_kg(energy, intensity)
    life = site.life_s if n.get("life_years") is None else n["life_years"] * SECONDS_PER_YEAR
    if site.purchase == "buy":
        util = _given(n, "fleet_utilization", 1.0)
        price = _given(n, "electricity_price", site.price_usd_per_kwh)
        hardware = _given(n, "gpu_price", site.hardware_usd) * gpus
        capex = cost.owned_capex_usd(hardware, held, life, util)
        opex = cost.owned_opex_usd(hardware, energy, price, site.provisioned_w * gpus, site.facility_usd_per_w_s,
                                   site.maintenance_per_s, held, util)
        out["hardware_cost_usd"] = hardware
    else:  # the provider's own utilisation is in its price; no capex of ours (NaN when the price is unknown)
        util = 1.0
        opex = cost.rent_usd(_given(n, "gpu_hour_price", site.rent_usd_per_h), gpus, held)
        capex = 0.0 * opex
    embodied = carbon.embodied_kg(site.embodied_kg, gpus, held / util, life)  # idle owned time is ours too
    out.update(fleet_gpus=gpus, horizon_s=held, gpu_hours=gpus * held / 3600.0, power_w=it_w, energy_kwh=energy,
               carbon_operational_kg=operational, carbon_embodied_kg=embodied, carbon_kg=operational + embodied,
               water_l=carbon.water_l(energy / pue, site.wue_l_per_kwh, energy, site.offsite_l_per_kwh),
               capex_usd=capex, opex_usd=opex, tco_usd=capex + opex, activity=activity)
    if mode == "serve":
        out["cost_per_mtok_usd"] = cost.cost_per_million_tokens(capex + opex, out["tokens_generated"])
        out["carbon_per_mtok_kg"] = (operational + embodied) / (out["tokens_generated"] / 1e6)
    return out
