"""LLM serving: prefill and decode, KV cache, largest batch, continuous batching and queueing.

A request of I input and O output tokens is prefilled in one pass (time to first token, TTFT) and
then decoded one token per step; each decode step reads every weight once for the whole batch and
each sequence's KV cache (Pope et al. 2023, "Efficiently Scaling Transformer Inference", section 2).
The prefill yields the first token; decode step k = 1 .. O-1 attends to I + k keys, so the mean
inter-token latency (ITL) is taken as the decode step at the mean context I + O/2 (exact where a
step's time is affine in the context, i.e. while no operator changes between compute- and
memory-bound along the way).

Queueing: a replica with c = batch slots and per-request service time S is an M/M/c queue; the
probability of waiting is Erlang C and the waiting time beyond it is exponential with rate
c/S - lambda (Kleinrock 1975, "Queueing Systems Vol. 1", section 3.5; Harchol-Balter 2013, ch. 14).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, pdtr


def max_batch(capacity, fixed_bytes, per_sequence_bytes):
    """Largest batch with fixed_bytes + batch * per_sequence_bytes <= capacity (0 if none fits)."""
    return np.maximum(0.0, np.floor((capacity - fixed_bytes) / per_sequence_bytes))


def static_tokens_per_s(batch, output_len, ttft, itl):
    """Generated tokens per second of a replica serving batches of `batch` requests back to back."""
    return batch * output_len / (ttft + (output_len - 1) * itl)


def continuous_tokens_per_s(batch, output_len, itl, prefill_one):
    """Continuous batching (Yu et al. 2022, Orca): `batch` slots stay full; each request's prefill
    yields its first token and its other O - 1 come from decode steps shared by the batch. Per
    replica: batch * O / ((O - 1) * ITL + batch * prefill_one)."""
    return batch * output_len / ((output_len - 1) * itl + batch * prefill_one)


def erlang_c(servers: int, load: float) -> float:
    """Probability an arrival waits in M/M/c with offered load A = lambda*S (Erlang B recursion)."""
    if load >= servers:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
        if b < 1e-300:  # past the load the terms fall faster than geometrically: no one waits
            return 0.0
    return b / (1.0 - (load / servers) * (1.0 - b))


def wait_quantile(servers: int, service_s: float, rate: float, q: float) -> float:
    """q-quantile of the queueing delay in M/M/c: P(W > t) = C * exp(-(c/S - lambda) t)."""
    load = rate * service_s
    if load >= servers:
        return math.inf
    c = erlang_c(servers, load)
    if c <= 1.0 - q:
        return 0.0
    return math.log(c / (1.0 - q)) / (servers / service_s - rate)


def replicas_needed(rate: float, servers: int, service_s: float, ttft: float, ttft_slo: float | None) -> int | None:
    """Fewest replicas whose queue is stable and whose p99 TTFT (wait + prefill) meets the SLO; None
    when the SLO is below the TTFT itself, which no number of replicas can fix. The p99 wait falls
    monotonically with replicas, so the search doubles and then bisects."""
    low = max(1, math.floor(rate * service_s / servers) + 1)  # smallest stable count: load < servers
    if ttft_slo is None:
        return low
    if ttft > ttft_slo:
        return None

    def meets(r: int) -> bool:
        return ttft + wait_quantile(servers, service_s, rate / r, 0.99) <= ttft_slo

    high = low
    while not meets(high):
        low, high = high + 1, high * 2
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if meets(mid) else (mid + 1, high)
    return high


def busy_probability(servers, load):
    """Probability that an M/M/c queue with offered load A = lambda*S < c holds any request, 1 - P0,
    with P0 = 1 / (sum_{k<c} A^k/k! + A^c/c! / (1 - A/c)) (Kleinrock 1975, eq. 3.37), written with
    Poisson terms so large c and A neither overflow nor loop; numbers or columns."""
    at_c = np.exp(servers * np.log(load) - load - gammaln(servers + 1.0))  # Poisson pmf at c
    p0 = np.exp(-load) / (pdtr(servers - 1, load) + at_c / (1.0 - load / servers))
    return 1.0 - p0
