"""Money: renting accelerator-hours against owning the hardware.

Rent: the provider's price per accelerator-hour covers hardware, facility, power and staff, so the
cost is price x accelerators x hours held.

Buy: total cost of ownership in the form of Barroso, Hoelzle & Ranganathan 2018, "The Datacenter as
a Computer", 3rd ed., chapter 6 (capital expenses depreciated straight-line over the hardware's life,
plus operating expenses). The fleet costs `hardware_usd` up front (accelerator servers plus a share
for the cluster network and storage); the workload is charged depreciation, maintenance (a yearly
fraction of capex) and facility space-and-cooling capacity (USD per kW of provisioned IT power per
month) for the time it holds the hardware divided by `utilization`, the share of the hardware's life
spent on paid work (idle owned hardware still depreciates); electricity is charged for the energy it
draws, at the region's price. With hourly price r, capex C per accelerator, life L, maintenance rate
m, facility rate f, provisioned power P and energy cost per hour e, buying is cheaper once
u > (C / L + m C + f P) / (r - e)."""
from __future__ import annotations

SECONDS_PER_HOUR = 3600.0


def rent_usd(price_per_hour, accelerators, held_s):
    """Rental cost of `accelerators` held for `held_s` seconds at `price_per_hour` each."""
    return price_per_hour * accelerators * held_s / SECONDS_PER_HOUR


def owned_capex_usd(hardware_usd, held_s, life_s, utilization):
    """Depreciation charged to a workload holding hardware worth `hardware_usd` for `held_s`."""
    return hardware_usd * held_s / (life_s * utilization)


def owned_opex_usd(hardware_usd, energy_kwh, price_per_kwh, provisioned_w, facility_usd_per_w_s,
                   maintenance_per_s, held_s, utilization):
    """Operating cost of owned hardware: electricity drawn, plus maintenance and facility capacity
    for the share of the hardware's time the workload occupies."""
    occupied = held_s / utilization
    return (energy_kwh * price_per_kwh + hardware_usd * maintenance_per_s * occupied
            + provisioned_w * facility_usd_per_w_s * occupied)


def cost_per_million_tokens(total_usd, tokens):
    """USD per million generated tokens."""
    return total_usd / (tokens / 1e6)
