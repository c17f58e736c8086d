"""Carbon and water of a fleet over a horizon.

Operational carbon is facility energy times the grid's location-based intensity (GHG Protocol Scope
2 Guidance, 2015, section 4: location-based method). Embodied carbon is the manufacturing footprint
of the hardware, amortised straight-line over its service life in proportion to the time the
workload holds it (Gupta et al. 2022, "ACT: Designing Sustainable Computer Systems with an
Architectural Carbon Modeling Tool", eq. 1: CF = OP + (T / LT) x E). Where no product carbon footprint
is published, an accelerator's embodied carbon is estimated from its die area and memory capacity,
ACT's eq. 2-4 form (per-area fab footprint for the logic, per-GB footprint for the memory, plus
packaging). Water is on-site cooling water, the facility's WUE times IT energy (The Green Grid 2011,
"Water Usage Effectiveness (WUE)": litres per kWh of IT energy), plus off-site water consumed to
generate the electricity, the grid's energy water intensity factor times facility energy (Li et
al. 2023, "Making AI Less Thirsty", section 2.1)."""
from __future__ import annotations


def operational_kg(energy_kwh, intensity_kg_per_kwh):
    """Scope-2 location-based emissions of the energy drawn (kg CO2e)."""
    return energy_kwh * intensity_kg_per_kwh


def embodied_kg(per_unit_kg, units, held_s, life_s):
    """Manufacturing footprint of `units` pieces of hardware charged for `held_s` of a `life_s` life."""
    return per_unit_kg * units * held_s / life_s


def estimated_accelerator_kg(die_area_m2, memory_bytes, per_area_kg_m2, per_byte_kg, packaging_kg):
    """Embodied carbon of an accelerator without a published footprint: logic area x fab footprint per
    area + memory capacity x footprint per byte + packaging (ACT eq. 2-4)."""
    return die_area_m2 * per_area_kg_m2 + memory_bytes * per_byte_kg + packaging_kg


def water_l(it_kwh, wue_l_per_kwh, facility_kwh, offsite_l_per_kwh):
    """On-site cooling water (WUE x IT energy) plus off-site generation water (EWIF x facility energy)."""
    return it_kwh * wue_l_per_kwh + facility_kwh * offsite_l_per_kwh
