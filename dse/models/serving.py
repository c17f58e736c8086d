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
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, pdtr


def max_batch(capacity, fixed_bytes, per_sequence_bytes):
    """Largest batch with fixed_bytes + batch * per_sequence_bytes <= capacity (0 if none fits)."""
    return np.maximum(0.0, np.floor((capacity - fixed_bytes) / per_sequence_bytes))


def static_tokens_per_s(batch, output_len, ttft, itl):
    """Generated tokens per second of a replica serving batches of `batch` requests back to back."""
    return batch * output_len / (ttft + (output_len - 1) * itl)


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


# --- continuous batching with chunked prefill (Orca; vLLM V1; Sarathi-Serve) -------------------------

GIB = 2.0**30
# vLLM's OpenAI-compatible server defaults (vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults,
# vLLM v0.9-v0.11, 2025; github.com/vllm-project/vllm): max_num_batched_tokens 8192 and max_num_seqs
# 1024 on GPUs of 70 GiB or more other than A100, else 2048 and 256.
ENGINE_LARGE = (8192.0, 1024.0)
ENGINE_SMALL = (2048.0, 256.0)
# The three engine parameters, fitted by `bench/vllm_sim2real.py --fit` on the vLLM sim2real
# benchmark's train rows only (vLLM v0.15.1, H100; 2026-11-30; bench/README.md): the overhead per
# engine step (scheduling, input preparation, sampling and graph launch, on the CPU between GPU
# steps), the overhead per request (HTTP, tokenisation, first-token detokenisation, in the client's
# TTFT), and the share of the device class's streaming efficiency (`dse.models.calibration`, fitted
# on TensorRT-LLM's large static batches) that vLLM's engine steps reach reading weights and KV.
STEP_S = 1.5e-3
REQUEST_S = 5.5e-3
STREAM_EFFICIENCY = 0.92
# vLLM schedules one step ahead of the one executing (async scheduling: vllm-project/vllm PR #19970,
# 2025, "the scheduler operate[s] one step ahead"; on by default unless an option is incompatible,
# vllm/config/vllm.py, 2026): an arriving request joins the step after the one already planned.
AHEAD_STEPS = 1.0
# A kernel boundary inside a replayed CUDA graph: no host launch, but the GPU still drains one kernel
# and starts the next, about 1.3 us per kernel measured on an H100 (Spector et al., Hazy Research,
# "Look Ma, No Bubbles! Designing a Low-Latency Megakernel for Llama-1B", 2025-05-27). The only published
# figure found: `--cuda-graphs on` applies it to every device (HIP graphs on AMD, XLA's compiled steps on
# TPU included), so elsewhere it is the H100's number, not a measurement.
GRAPH_KERNEL_S = 1.3e-6


def engine_defaults(name: str, capacity_bytes: float) -> tuple[float, float]:
    """(max batched tokens per step, max sequences in flight) that vLLM picks for a device."""
    return ENGINE_LARGE if capacity_bytes >= 70 * GIB and "a100" not in name.lower() else ENGINE_SMALL


def erlang_c_column(servers, load):
    """Erlang C for numbers or columns: Erlang B = Poisson pmf(c; A) / cdf(c; A) (Kleinrock 1975, eq.
    3.46), C = B / (1 - (A/c)(1 - B)); 1 where the load reaches the servers."""
    load = np.maximum(load, 1e-300)
    stable = load < servers
    with np.errstate(all="ignore"):  # unstable columns overflow; they are masked below
        b = np.exp(servers * np.log(load) - load - gammaln(servers + 1.0)) / np.maximum(pdtr(servers, load), 1e-300)
        c = b / (1.0 - np.minimum(load / servers, 1.0) * (1.0 - b))
    return np.where(stable, np.minimum(c, 1.0), 1.0)


def wait_quantile_column(servers, service_s, rate, q: float, erlang_c=None):
    """q-quantile of the M/M/c queueing delay for numbers or columns, P(W > t) = C exp(-(c/S - lambda) t);
    inf where unstable. `erlang_c`: the queue's C when the caller has it already."""
    margin = servers / service_s - rate
    c = erlang_c_column(servers, rate * service_s) if erlang_c is None else erlang_c
    t = np.log(np.maximum(c, 1e-300) / (1.0 - q)) / np.where(margin > 0, margin, 1.0)
    return np.where(margin > 0, np.where(c > 1.0 - q, t, 0.0), np.inf)


@dataclass(frozen=True, slots=True)
class Engine:
    """A replica's step times as affine functions of the sequences decoding, n (exact while no operator
    changes between compute- and memory-bound in between; a chord, hence an upper bound, otherwise,
    since each operator's roofline is convex in n): a decode step takes a + b*n, and one prompt's
    prefill chunks add c + e*n to the steps that carry them, in `chunks` steps of `mixed` (a
    column's value at full load). `full` is the decoding count at full load (`capacity`); `slots` the
    sequences in flight; `prompt_steps` the chunk steps of one prompt, each a decode step plus its
    share (c + e*n) / prompt_steps; `prompt_tokens` the prompt tokens computed and `room` the tokens
    of a step's budget left to prompts once the decodes are in."""

    a: object
    b: object
    c: object
    e: object
    slots: object
    full: object
    prompt_steps: object
    output_len: object
    prompt_tokens: object
    room: object


def step_time(g: Engine, n):
    return g.a + g.b * n


def prefill_extra(g: Engine, n):
    return g.c + g.e * n


def capacity(g: Engine):
    """Requests/s of a replica at full load and the mean step there. Each step carries k prompts' worth
    of chunks, the smaller of two limits: the slots, each holding a request for its prompt's chunk steps
    and O - 1 decode steps, turn over k = slots / (chunks + O - 1) requests a step; the step's token
    budget holds k = room / prompt_tokens prompts' tokens beside the decodes (vLLM schedules no more than
    max_num_batched_tokens a step: vllm/v1/core/sched/scheduler.py). The step is the decode step
    stretched by those prefills, t = D(n) + k * P(n) (with the budget binding, the mixed step with a full
    budget), and the replica passes k / t requests a second; n = `full`, k * (O - 1) sequences decoding,
    where the operating point at that rate arrives (`operating_point`). Returns (requests/s, t, whether
    the budget is the limit)."""
    cycle = g.prompt_steps + g.output_len - 1.0
    turnover, room = g.slots / cycle, g.room / g.prompt_tokens
    per_step = np.minimum(turnover, room)
    t = step_time(g, g.full) + per_step * prefill_extra(g, g.full)
    return per_step / t, t, room < turnover


def operating_point(g: Engine, rate, cap=None):
    """The self-consistent point at `rate` requests/s (Poisson) on one replica: n sequences decoding
    and mean step t with n = rate * (O - 1) * t (Little's law on the decode phase) and
    t = D(n) / (1 - rate * P(n)) (each step carries on average rate * t prompts' chunks). With D and P
    affine this is the quadratic rate*e*n^2 + (rate*(O-1)*b + rate*c - 1)*n + rate*(O-1)*a = 0, whose
    smaller root is taken. Returns (n, t, stable); beyond capacity (`cap`, requests/s; by default the
    one `capacity` gives for g, but a chord fitted near a light load says little about full load) `stable`
    is false."""
    o1 = g.output_len - 1.0
    a2, a1, a0 = rate * g.e, rate * o1 * g.b + rate * g.c - 1.0, rate * o1 * g.a
    disc = a1 * a1 - 4.0 * a2 * a0
    root = np.sqrt(np.maximum(disc, 0.0))
    n = 2.0 * a0 / np.maximum(root - a1, 1e-300)
    with np.errstate(over="ignore"):  # beyond capacity; flagged by `stable`
        t = step_time(g, n) / np.maximum(1.0 - rate * prefill_extra(g, n), 1e-300)
    cap = capacity(g)[0] if cap is None else cap
    stable = (disc >= 0) & (a1 < 0) & (rate < cap)
    return n, t, stable


def prefill_service(g: Engine, decoding):
    """Seconds of step budget one prompt occupies with `decoding` sequences decoding: its share,
    prompt_tokens / room, of the decode part of the steps whose budget it fills, and its own prefill
    work; 1 / this at full load is the budget's limit in `capacity` (room / prompt_tokens prompts a
    step of D + room / prompt_tokens * P)."""
    return g.prompt_tokens / g.room * step_time(g, decoding) + prefill_extra(g, decoding)


def prefill_wait(g: Engine, decoding, rate):
    """Mean wait of a prompt for room in the steps' token budget: the budget left by the decodes is
    one server that prompts occupy for `prefill_service` seconds, so an M/D/1 queue, whose mean wait is
    rho * S / (2 (1 - rho)) (Pollaczek-Khinchine; Kleinrock 1975, section 5.6); infinite at rho >= 1,
    where the queue grows without bound. Returns (wait, stable)."""
    service = prefill_service(g, decoding)
    stable = rate * service < 1.0
    held = np.where(stable, service, 0.0)  # an unstable row's service (huge beyond capacity) is not squared
    rho = rate * held
    return np.where(stable, rho * held / (2.0 * (1.0 - rho)), np.inf), stable
