"""Collective communication in the alpha-beta model (Hockney 1994; Thakur, Rabenseifner & Gropp 2005,
"Optimization of Collective Communication Operations in MPICH")."""
from __future__ import annotations


def ring_allreduce_time(nbytes, ranks, bandwidth: float, latency: float):
    """Ring all-reduce: 2(n-1)/n of the buffer crosses each link in 2(n-1) steps (Patarasuk & Yuan
    2009, "Bandwidth optimal all-reduce algorithms"). `bandwidth` is one direction of one rank's link
    (B/s), `latency` the per-step alpha (s). Zero for a single rank; works on numpy columns."""
    return 2.0 * (ranks - 1) / ranks * nbytes / bandwidth + 2.0 * (ranks - 1) * latency
