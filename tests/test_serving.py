"""LLM serving: queueing (M/M/c), replica sizing, largest batch and throughput, against hand arithmetic."""
import math

import pytest

import dse
from dse.models import serving

# Llama-3-8B (catalog workloads.toml): 32 layers, hidden 4096, 32 heads of 128, 8 KV heads, SwiGLU 14336,
# vocabulary 128256, untied embeddings.
L, H, HEADS, KV, D, F, V = 32, 4096, 32, 8, 128, 14336, 128256
KVD = KV * D
# layers (QKV, out, SwiGLU, 2 norms), embedding, LM head, final norm
PARAMS = L * (H * (H + 2 * KVD) + H * H + 3 * H * F + 2 * H) + 2 * V * H + H
H100_CAPACITY = 80 * 2**30  # 80 GiB HBM3

SERVE = dict(workload="llama-3-8b", hardware="h100", mode="serve", precision="fp16", scheduler="static")


def mmc_wait_probability(c: int, load: float) -> float:
    """Erlang C from the textbook closed form (Kleinrock 1975, eq. 3.40), independent of the
    Erlang-B recursion in the module: P(wait) = [A^c/c! * 1/(1-rho)] / [sum_{k<c} A^k/k! + A^c/c! * 1/(1-rho)]."""
    rho = load / c
    top = load**c / math.factorial(c) / (1.0 - rho)
    return top / (sum(load**k / math.factorial(k) for k in range(c)) + top)


# --- erlang_c -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rho", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_erlang_c_single_server_is_rho(rho):
    # M/M/1: an arrival waits exactly when the server is busy, P = rho
    assert serving.erlang_c(1, rho) == pytest.approx(rho, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.8, 0.95])
def test_erlang_c_two_servers_closed_form(rho):
    # M/M/2 with rho = lambda/(2 mu), A = 2 rho: C = 2 rho^2 / (1 + rho)
    assert serving.erlang_c(2, 2 * rho) == pytest.approx(2 * rho**2 / (1 + rho), rel=1e-12)


def test_erlang_c_two_servers_worked_value():
    # lambda = 1, mu = 1, c = 2: rho = 1/2, C = 2 * 1/4 / (3/2) = 1/3
    assert serving.erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)


@pytest.mark.parametrize("c,load", [(3, 2.0), (8, 6.5), (16, 12.0), (32, 31.0)])
def test_erlang_c_matches_textbook_sum(c, load):
    assert serving.erlang_c(c, load) == pytest.approx(mmc_wait_probability(c, load), rel=1e-10)


def test_erlang_c_saturated_always_waits():
    assert serving.erlang_c(4, 4.0) == 1.0
    assert serving.erlang_c(4, 9.0) == 1.0


# --- wait_quantile ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lam,mu,q", [(0.9, 1.0, 0.99), (5.0, 8.0, 0.5), (3.0, 4.0, 0.9)])
def test_wait_quantile_mm1(lam, mu, q):
    # M/M/1: P(W > t) = rho * exp(-(mu - lambda) t)  =>  t_q = ln(rho / (1 - q)) / (mu - lambda)
    rho = lam / mu
    assert serving.wait_quantile(1, 1.0 / mu, lam, q) == pytest.approx(math.log(rho / (1 - q)) / (mu - lam), rel=1e-12)


def test_wait_quantile_mm1_zero_when_most_arrivals_do_not_wait():
    # rho = 0.4 <= 1 - q = 0.5: the median arrival finds the server idle
    assert serving.wait_quantile(1, 1.0, 0.4, 0.5) == 0.0
    assert serving.wait_quantile(1, 1.0, 0.5, 0.5) == 0.0  # boundary rho == 1 - q


def test_wait_quantile_mmc_and_unstable():
    c, s, lam = 8, 1.0, 7.0  # A = 7 of 8 servers
    expected = math.log(mmc_wait_probability(c, 7.0) / 0.01) / (c / s - lam)
    assert serving.wait_quantile(c, s, lam, 0.99) == pytest.approx(expected, rel=1e-10)
    assert serving.wait_quantile(c, s, 8.0, 0.99) == math.inf
    assert serving.wait_quantile(c, s, 9.0, 0.5) == math.inf


# --- replicas_needed ----------------------------------------------------------------------------------

def test_replicas_needed_stability_ceil():
    # offered load 10 requests in service over 4 slots per replica: ceil(10/4) = 3 replicas (12 slots)
    assert serving.replicas_needed(10.0, 4, 1.0, 0.1, None) == 3
    # 2.5 requests/s x 0.5 s = 1.25 over 1 slot: 2
    assert serving.replicas_needed(2.5, 1, 0.5, 0.1, None) == 2
    # tiny load still needs one replica
    assert serving.replicas_needed(1e-6, 8, 1.0, 0.1, None) == 1


def test_replicas_needed_exactly_saturated_adds_one():
    # load 8 over 4 slots: 2 replicas would run at utilization 1 (unstable queue) -> 3
    assert serving.replicas_needed(8.0, 4, 1.0, 0.1, None) == 3
    assert serving.replicas_needed(2.0, 1, 1.0, 0.1, None) == 3


def test_replicas_needed_meets_slo_minimally_and_tighter_slo_needs_more():
    rate, c, s, ttft = 30.0, 8, 1.0, 0.1
    previous = 0
    for slo in (10.0, 1.0, 0.5, 0.2, 0.15, 0.11, 0.101):
        r = serving.replicas_needed(rate, c, s, ttft, slo)
        assert r >= previous
        previous = r
        assert r * c > rate * s  # stable
        assert ttft + serving.wait_quantile(c, s, rate / r, 0.99) <= slo
        if r > math.floor(rate * s / c) + 1:  # above the stability minimum only because of the SLO
            assert ttft + serving.wait_quantile(c, s, rate / (r - 1), 0.99) > slo
    assert previous > serving.replicas_needed(rate, c, s, ttft, None)


def test_replicas_needed_unreachable_slo_is_not_a_finite_count():
    # TTFT 0.5 s > SLO 0.4 s before any queueing: no replica count can meet it
    assert serving.replicas_needed(1.0, 1, 1.0, 0.5, 0.4) is None


# --- max_batch and throughput formulas ----------------------------------------------------------------

def test_max_batch_unit():
    assert serving.max_batch(100.0, 30.0, 7.0) == 10.0  # floor(70/7)
    assert serving.max_batch(100.0, 30.0, 6.9) == 10.0  # floor(10.14)
    assert serving.max_batch(100.0, 120.0, 7.0) == 0.0  # weights alone do not fit


def test_max_batch_llama3_8b_h100_by_hand():
    i, o = 512, 128
    m = dse.evaluate(**SERVE, batch=8, input_len=i, output_len=o)
    weights = PARAMS * 2  # fp16
    assert PARAMS == 8_030_261_248
    assert m["weights_bytes"] == weights
    kv_per_seq = 2 * L * KV * D * (i + o) * 2  # K and V, every layer, fp16
    # working activations of one prompt: input, QKV and the SwiGLU intermediate (x2 live) per token,
    # plus fp32 logits of one position
    work = i * (2 * H + 2 * KVD + 2 * F) * 2 + V * 4
    # all prompts prefilled in one pass (the default): every request adds its KV cache and its prompt,
    # within 90% of the device (10% runtime reserve: CUDA context, NCCL buffers, allocator) less the
    # engine's 0.13 GiB of library workspaces
    engine = 0.13 * 2**30
    usable = 0.9 * H100_CAPACITY - engine
    expected = (usable - weights) // (kv_per_seq + work)
    assert expected == 491  # 61,109,302,395 B / (83,886,080 + 40,358,912) B
    assert m["max_batch"] == expected
    assert m["kv_cache_bytes"] == 8 * kv_per_seq
    assert m["memory_per_gpu_bytes"] == pytest.approx(weights + 8 * kv_per_seq + 8 * work + engine
                                                      + 0.1 * H100_CAPACITY, rel=1e-12)
    # one prompt per prefill pass: the working memory is one prompt's, and only the KV cache grows
    one = dse.evaluate(**SERVE, batch=8, input_len=i, output_len=o, prefill_batch=1)
    assert one["max_batch"] == (usable - weights - work) // kv_per_seq == 727
    assert one["memory_per_gpu_bytes"] == pytest.approx(weights + 8 * kv_per_seq + work + engine
                                                        + 0.1 * H100_CAPACITY, rel=1e-12)
    assert one["ttft_s"] == pytest.approx(8 * dse.evaluate(**SERVE, batch=1, input_len=i, output_len=o)["ttft_s"])


def test_static_formula_unit():
    # static: 8 requests x 128 tokens over TTFT + 127 decode steps
    assert serving.static_tokens_per_s(8, 128, 0.1, 0.01) == pytest.approx(8 * 128 / (0.1 + 127 * 0.01), rel=1e-12)


def test_throughput_through_evaluate():
    b, o = 16, 128
    m = dse.evaluate(**SERVE, batch=b, input_len=512, output_len=o, gpus=2)  # 2 replicas of tp=1
    assert m["replicas"] == 2
    assert m["request_latency_s"] == pytest.approx(m["ttft_s"] + (o - 1) * m["itl_s"], rel=1e-12)
    assert m["tokens_per_s"] == pytest.approx(2 * b * o / m["request_latency_s"], rel=1e-9)
    # the 16 prompts prefill together: each one's share of the pass, TTFT / 16, is less than a lone
    # prompt's prefill, which pays for every weight by itself
    assert m["ttft_s"] / b < dse.evaluate(**SERVE, batch=1, input_len=512, output_len=o)["ttft_s"]
    # continuous batching is `--scheduler continuous`'s: a "continuous" throughput of the static batch,
    # b * O / ((O - 1) * ITL + b * TTFT / b), is this tokens_per_s again, so it is not reported
    assert "continuous_tokens_per_s" not in m


# --- queueing through dse.evaluate --------------------------------------------------------------------

def test_queueing_tail_latency_by_hand():
    b, qps = 8, 7.0
    m = dse.evaluate(**SERVE, batch=b, input_len=512, output_len=128, qps=qps)
    s = m["request_latency_s"]
    assert m["queue_utilization"] == pytest.approx(qps * s / b, rel=1e-12)
    assert m["ttft_p99_s"] >= m["ttft_p50_s"] >= m["ttft_s"]
    c = mmc_wait_probability(b, qps * s)
    p99 = m["ttft_s"] + (math.log(c / 0.01) / (b / s - qps) if c > 0.01 else 0.0)
    p50 = m["ttft_s"] + (math.log(c / 0.5) / (b / s - qps) if c > 0.5 else 0.0)
    assert m["ttft_p99_s"] == pytest.approx(p99, rel=1e-9)
    assert m["ttft_p50_s"] == pytest.approx(p50, rel=1e-9)
    # a request's p99 latency: the same p99 wait before its prefill, then its whole service
    assert m["request_latency_p99_s"] == pytest.approx(s + p99 - m["ttft_s"], rel=1e-9)
    assert m["ttft_p99_s"] > m["ttft_s"]  # at utilization ~0.9 the tail waits
    assert m["replicas_needed"] == 1 and m["gpus_needed"] == 1
    assert m["feasible"] is True


def test_overloaded_rate_is_infeasible_with_reason():
    b, qps = 8, 100.0
    m = dse.evaluate(**SERVE, batch=b, input_len=512, output_len=128, qps=qps)
    s = m["request_latency_s"]
    assert m["queue_utilization"] == pytest.approx(qps * s / b, rel=1e-12) and m["queue_utilization"] > 1
    assert m["feasible"] is False
    assert any("exceed the capacity" in r for r in m["infeasible_reasons"])
    assert "ttft_p99_s" not in m  # no finite quantile for an unstable queue
    assert m["replicas_needed"] == math.ceil(qps * s / b)


def test_ttft_slo_raises_replicas_needed():
    base = dict(**SERVE, batch=8, input_len=512, output_len=128, qps=7.0)
    loose = dse.evaluate(**base)
    tight = dse.evaluate(**base, ttft_slo=loose["ttft_s"] * 1.5)
    assert tight["replicas_needed"] > loose["replicas_needed"] == 1
    assert tight["gpus_needed"] == tight["replicas_needed"]
    assert tight["ttft_p99_s"] > loose["ttft_s"] * 1.5  # one replica misses the SLO ...
    assert tight["feasible"] is False  # ... so the deployment as given is infeasible
    assert any("p99 TTFT" in r for r in tight["infeasible_reasons"])


@pytest.mark.parametrize("option", [dict(dp=4), dict(zero=3), dict(micro_batch=4)])
def test_serve_refuses_training_only_options(option):
    try:
        dse.evaluate(**SERVE, batch=8, **option)
    except dse.UserInputError:
        return
    raise AssertionError(f"{option} accepted and ignored in serve mode")


def test_prefill_batch_max_batch_is_tight():
    base = dict(workload="llama-3-8b", hardware="l4", mode="serve", precision="fp8", prefill_batch=4,
                scheduler="static")
    largest = dse.evaluate(**base, batch=4)["max_batch"]
    assert dse.evaluate(**base, batch=largest)["feasible"] is True
    assert dse.evaluate(**base, batch=largest + 1)["feasible"] is False
