"""Power and energy of a fleet: accelerators by activity, host share, facility overhead.

An accelerator draws its idle power plus a share of its loaded power in proportion to the time its
kernels run (the linear utilisation-to-power model of Fan, Weber & Barroso 2007, "Power
provisioning for a warehouse-sized computer", section 4.1, P(u) = P_idle + (P_busy - P_idle) u,
which they validate within 1% on whole servers):

    P_acc(a) = P_idle + (P_busy - P_idle) a,      P_busy = f_load x TDP,

where a is the fraction of wall time kernels run (not launch gaps, exposed communication, data
stalls or an empty serving queue) and f_load the mean draw of a busy device relative to its rated
board power, a fitted parameter per device class (`dse.models.calibration.POWER_LOAD`). The host
(CPUs, memory, NICs, on-board switches, fans) follows the same line over its share of the node's
non-accelerator maximum, from the idle fraction of nameplate of a GPU server (LBNL via Uptime
Institute 2025, ~20%) to the fraction an 8x H100 node draws in training (Latif et al. 2024: 8.4 of
10.2 kW); both from `economics.toml`. The facility multiplies IT energy by the PUE (The Green Grid
2007, "The Green Grid Data Center Power Efficiency Metrics: PUE and DCiE")."""
from __future__ import annotations

J_PER_KWH = 3.6e6


def accelerator_power(idle_w, busy_w, activity):
    """Mean draw (W) of one accelerator whose kernels run `activity` of the time (0..1)."""
    return idle_w + (busy_w - idle_w) * activity


def facility_energy_kwh(it_w, seconds, pue):
    """Energy drawn from the grid (kWh): IT power over the horizon, times the facility's PUE."""
    return it_w * seconds * pue / J_PER_KWH
