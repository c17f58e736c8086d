"""Continuous batching with chunked prefill: the operating point, capacity, memory plan and options,
against arithmetic written out here."""
import math

import numpy as np
import pandas as pd
import pytest

import dse
from dse.models import serving

SERVE = dict(workload="llama-3-8b", hardware="h100", mode="serve", precision="fp16")
L, H, KV, D, F, V = 32, 4096, 8, 128, 14336, 128256
PARAMS = 8_030_261_248


def engine(**kw):
    base = dict(a=5e-3, b=4e-5, c=2e-3, e=0.0, slots=128.0, full=120.0, prompt_steps=1.0, output_len=248.0,
                prompt_tokens=547.0, room=1920.0)
    return serving.Engine(**{**base, **kw})


def test_operating_point_closed_form_when_prefill_cost_is_flat():
    g, rate = engine(), 8.0
    n, t, stable = serving.operating_point(g, rate)
    # n (1 - rate c) = rate (O-1) (a + b n)  =>  n = rate (O-1) a / (1 - rate c - rate (O-1) b)
    expected = rate * 247 * 5e-3 / (1 - rate * 2e-3 - rate * 247 * 4e-5)
    assert n == pytest.approx(expected, rel=1e-12)
    assert t == pytest.approx((5e-3 + 4e-5 * expected) / (1 - rate * 2e-3), rel=1e-12)
    assert n == pytest.approx(rate * 247 * t, rel=1e-12)  # Little's law on the decode phase
    assert stable


def test_operating_point_quadratic_is_self_consistent():
    g, rate = engine(e=1e-5), 6.0
    n, t, stable = serving.operating_point(g, rate)
    assert n == pytest.approx(rate * 247 * t, rel=1e-12)
    assert t == pytest.approx((g.a + g.b * n) / (1 - rate * (g.c + g.e * n)), rel=1e-12)
    assert stable


def test_capacity_is_where_the_slots_fill():
    g = engine()
    cap, t_full, budget_bound = serving.capacity(g)
    cycle = 1 + 247
    assert t_full == pytest.approx(5e-3 + 4e-5 * 120 + 128 * 2e-3 / cycle, rel=1e-12)
    assert cap == pytest.approx(128 / (cycle * t_full), rel=1e-12)
    assert not budget_bound  # the budget passes 1920 / 547 prompts per mixed step, ~350 a second
    assert serving.operating_point(g, 0.99 * cap)[2]
    assert not serving.operating_point(g, 1.01 * cap)[2]


def test_capacity_is_where_the_step_budget_fills():
    # 50 tokens of room per step for 547-token prompts: a step carries 50 / 547 of a prompt beside the
    # 120 decodes, 5 ms + 4e-5 * 120 + 50 / 547 * 2e-3, fewer prompts a second than 128 slots turning
    # over every 248 steps want
    g = engine(room=50.0)
    cap, t_full, budget_bound = serving.capacity(g)
    k = 50 / 547
    assert t_full == pytest.approx(5e-3 + 4e-5 * 120 + k * 2e-3, rel=1e-12)
    assert budget_bound and cap == pytest.approx(k / t_full, rel=1e-12)  # 9.29 requests/s
    assert 128 / (248 * t_full) > cap
    assert serving.operating_point(g, 0.99 * cap)[2] and not serving.operating_point(g, 1.01 * cap)[2]
    # a prompt holds 547 / 50 steps' decode part and its own prefill work: the budget fills at the capacity;
    # at and beyond it the M/D/1 wait is infinite, without a warning
    service = 547 / 50 * (5e-3 + 4e-5 * 120) + 2e-3
    assert serving.prefill_service(g, 120.0) == pytest.approx(service, rel=1e-12)
    assert 1 / service == pytest.approx(cap, rel=1e-12)
    with np.errstate(all="raise"):
        wait, stable = serving.prefill_wait(g, 120.0, np.array([0.5 * cap, cap * (1 + 1e-9), 2 * cap]))
    assert wait[0] == pytest.approx(0.5 * service / (2 * 0.5), rel=1e-12) and np.isinf(wait[1:]).all()
    assert list(stable) == [True, False, False]


def test_budget_bound_replica_running_full_answers_by_littles_law():
    # 4,000-token prompts through 512 batched tokens: the budget, not the 115 slots, limits the replica;
    # without --qps the loop keeps `batch` requests in flight, each taking batch / capacity seconds
    m = dse.evaluate(**SERVE, input_len=4000, output_len=16, max_batched_tokens=512)
    cap, batch = m["capacity_requests_per_s"], m["concurrency"]
    assert m["feasible"] and 1 < cap < 10
    assert m["request_latency_s"] == pytest.approx(batch / cap, rel=1e-9)
    # the same replica at a Poisson rate below that capacity is stable, above it infeasible in numbers
    assert dse.evaluate(**SERVE, input_len=4000, output_len=16, max_batched_tokens=512, qps=0.5 * cap)["feasible"]
    over = dse.evaluate(**SERVE, input_len=4000, output_len=16, max_batched_tokens=512, qps=2 * cap)
    assert not over["feasible"] and f"({cap:.3g} requests/s)" in over["infeasible_reasons"][0]


def test_full_load_step_keeps_to_the_token_budget():
    """8,000-token prompts, 4 outputs, 16 slots, 8,192 batched tokens: the slots would turn over
    16 / (1 + 3) = 4 prompts a step, 32,000 tokens, but 8,192 - 16 = 8,176 tokens of room hold
    8,176 / 8,000 of a prompt; the full-load step is the mixed step with that full budget, and
    k * (O - 1) sequences decode in it (it once carried all 4 prompts: ITL 0.75 s at full load)."""
    k = 8176 / 8000
    g = engine(slots=16.0, output_len=4.0, prompt_tokens=8000.0, room=8176.0, full=k * 3, e=1e-5)
    cap, t_full, budget_bound = serving.capacity(g)
    n = k * 3
    assert t_full == pytest.approx(5e-3 + 4e-5 * n + k * (2e-3 + 1e-5 * n), rel=1e-12)
    assert budget_bound and cap == pytest.approx(k / t_full, rel=1e-12)
    assert cap == pytest.approx(1 / serving.prefill_service(g, n), rel=1e-12)  # the budget's M/D/1 fills there
    # the operating point arrives at that step: n = rate * (O - 1) * t and t = D(n) + rate * t * P(n)
    n_op, t_op, _ = serving.operating_point(g, cap)
    assert n_op == pytest.approx(n, rel=1e-9) and t_op == pytest.approx(t_full, rel=1e-9)


@pytest.mark.parametrize("i,o,batch", [(8000, 4, 16), (4000, 16, 256)])
def test_replica_running_full_keeps_littles_law(i, o, batch):
    # both budget-bound: each holds its `batch` requests in flight, capacity x latency = batch
    # (it once read 21.9 with 16 slots and 267 with 256)
    m = dse.evaluate(**SERVE, input_len=i, output_len=o, batch=batch)
    assert m["capacity_requests_per_s"] * m["request_latency_s"] == pytest.approx(batch, rel=1e-9)
    near = dse.evaluate(**SERVE, input_len=i, output_len=o, batch=batch, qps=0.9 * m["capacity_requests_per_s"])
    assert near["itl_s"] < m["itl_s"] and near["concurrency"] < batch


def test_prefill_compute_time_is_the_prompts_share_of_the_mixed_step():
    for i in (1, 2, 7):  # a prompt of a few tokens: a small share, never negative
        m = dse.evaluate(**SERVE, input_len=i, output_len=100)
        assert 0 < m["prefill_compute_time_s"] < 1e-3


@pytest.mark.parametrize("c,load", [(1, 0.5), (2, 1.0), (8, 6.5), (128, 120.0)])
def test_erlang_c_column_matches_the_recursion(c, load):
    assert serving.erlang_c_column(c, load) == pytest.approx(serving.erlang_c(c, load), rel=1e-9)
    assert serving.wait_quantile_column(c, 1.0, load, 0.99) == pytest.approx(
        serving.wait_quantile(c, 1.0, load, 0.99), rel=1e-9, abs=1e-12)


def test_engine_defaults_follow_vllm():
    assert serving.engine_defaults("h100-sxm", 80 * 2**30) == (8192.0, 1024.0)
    assert serving.engine_defaults("a100-sxm-80gb", 80 * 2**30) == (2048.0, 256.0)  # A100 excluded
    assert serving.engine_defaults("l40s", 48 * 2**30) == (2048.0, 256.0)


def test_max_batch_plans_memory_as_vllm_does():
    i, o = 4032, 64
    m = dse.evaluate(**SERVE, input_len=i, output_len=o)
    usable = 0.9 * 80 * 2**30 - 0.13 * 2**30  # less the engine's library workspaces (memory.engine_workspaces)
    weights = PARAMS * 2
    kv = 2 * L * KV * D * (i + o) * 2  # 512 MiB per request at 4,096 tokens
    work = 8192 * (2 * H + 2 * KV * D + 2 * F) * 2 + 1024 * V * 4  # a full step of 8,192 tokens
    assert m["max_batch"] == (usable - weights - work) // kv == 111
    assert m["concurrency"] == 111  # no --batch: what the KV cache holds (under max_num_seqs 1024)
    assert m["memory_per_gpu_bytes"] == pytest.approx(80 * 2**30 - (usable - weights - work - 111 * kv), rel=1e-12)


def test_at_a_rate_latencies_agree_with_littles_law():
    m = dse.evaluate(**SERVE, batch=128, input_len=547, output_len=248, qps=8.0, max_batched_tokens=2048)
    assert m["concurrency"] == pytest.approx(8.0 * m["request_latency_s"], rel=1e-12)
    assert m["request_latency_s"] == pytest.approx(m["ttft_s"] + 247 * m["itl_s"], rel=1e-12)
    assert m["tokens_per_s"] == pytest.approx(8.0 * 248, rel=1e-12)
    assert m["ttft_p99_s"] >= m["ttft_p50_s"] >= m["ttft_s"] - m["itl_s"]
    assert m["feasible"] is True and m["replicas_needed"] == 1
    full = dse.evaluate(**SERVE, batch=128, input_len=547, output_len=248, max_batched_tokens=2048)
    assert m["itl_s"] < full["itl_s"]  # a lighter load than the full replica


def test_beyond_capacity_is_infeasible_with_the_capacity_in_numbers():
    full = dse.evaluate(**SERVE, batch=64, input_len=547, output_len=248)
    qps = 2.5 * full["capacity_requests_per_s"]
    m = dse.evaluate(**SERVE, batch=64, input_len=547, output_len=248, qps=qps)
    assert m["feasible"] is False
    assert any("exceed the capacity" in r and f"{full['capacity_requests_per_s']:.3g}" in r
               for r in m["infeasible_reasons"])
    assert m["replicas_needed"] == math.floor(qps / full["capacity_requests_per_s"]) + 1 == 3
    assert "ttft_p99_s" not in m


def test_slot_queue_is_stable_up_to_the_capacity_and_not_beyond():
    """8,000-token prompts, 4 outputs, 16 slots: each prompt fits one step's budget (8,192 - 16 decodes),
    so a request holds its slot 1 + 3 steps; the slots' M/M/c queue (rate * 4 * ITL < 16) and the step
    budget's must both be stable, and their busier utilisation reach 1 at the capacity reported, not
    before (it once reached 1.15 at 0.97x capacity, with a TTFT of 1e300 still called feasible)."""
    row = dict(**SERVE, batch=16, input_len=8000, output_len=4)
    cap = dse.evaluate(**row)["capacity_requests_per_s"]
    ttfts = []
    for share in (0.5, 0.9, 0.95, 0.97, 0.98, 0.99):
        m = dse.evaluate(**row, qps=share * cap)
        slots_busy = share * cap * (1 + 3) * m["itl_s"] / 16
        assert slots_busy <= m["queue_utilization"] < 1 and m["feasible"] and m["replicas_needed"] == 1, share
        assert m["request_latency_s"] == pytest.approx(m["ttft_s"] + 3 * m["itl_s"], rel=1e-12)
        assert math.isfinite(m["ttft_s"]) and m["ttft_s"] < 1e3
        ttfts.append(m["ttft_s"])
    assert ttfts == sorted(ttfts)  # the wait grows with the load up to the capacity
    over = dse.evaluate(**row, qps=1.01 * cap)
    assert not over["feasible"] and over["queue_utilization"] == pytest.approx(1.01, rel=1e-12)
    assert f"({cap:.3g} requests/s)" in over["infeasible_reasons"][0] and over["replicas_needed"] == 2


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_far_beyond_capacity_is_an_answer_not_an_overflow():
    """Short outputs of long prompts at 20 requests/s: the operating point's decoding count runs off to
    ~1e300, whose prompt service time must not be squared into an overflow (it once warned)."""
    row = dict(workload="llama-3-8b", hardware="h100", mode="serve", batch=251, input_len=2211, output_len=37,
               qps=20.0)
    m = dse.evaluate(**row)
    assert m["feasible"] is False and any("exceed the capacity" in r for r in m["infeasible_reasons"])
    assert dse.evaluate_many(pd.DataFrame([row]))["feasible"].tolist() == [False]


def test_slos_raise_the_replicas_needed():
    base = dict(**SERVE, batch=128, input_len=547, output_len=248, qps=30.0)
    loose = dse.evaluate(**base)
    tight = dse.evaluate(**base, itl_slo=0.8 * loose["itl_s"], gpus=4)
    assert tight["replicas_needed"] > loose["replicas_needed"]
    one = dse.evaluate(**base, itl_slo=0.8 * loose["itl_s"])
    assert one["feasible"] is False and any("inter-token" in r for r in one["infeasible_reasons"])
    assert dse.evaluate(**base, ttft_slo=1e-4)["feasible"] is False  # below the unloaded TTFT


def test_prefix_cache_removes_prefill_compute():
    base = dict(**SERVE, batch=64, input_len=2000, output_len=100, qps=4.0)
    cold, warm = dse.evaluate(**base), dse.evaluate(**base, prefix_cache_hit=0.9)
    assert warm["ttft_s"] < cold["ttft_s"]
    assert warm["prefill_compute_time_s"] < 0.2 * cold["prefill_compute_time_s"]


def test_evaluate_many_matches_evaluate():
    rng = np.random.default_rng(3)
    rows = [dict(**SERVE, batch=int(b), input_len=int(i), output_len=int(o), qps=float(q), max_batched_tokens=2048,
                 prefix_cache_hit=float(h), itl_slo=0.03)
            for b, i, o, q, h in zip(rng.integers(8, 256, 12), rng.integers(64, 3000, 12), rng.integers(16, 512, 12),
                                     rng.uniform(0.5, 60, 12), rng.uniform(0, 0.9, 12), strict=True)]
    many = dse.evaluate_many(pd.DataFrame(rows))
    for j, row in enumerate(rows):
        one = dse.evaluate(**row)
        for key in ("ttft_s", "itl_s", "request_latency_s", "tokens_per_s", "max_batch", "concurrency", "feasible"):
            assert many[key].iloc[j] == pytest.approx(one[key], rel=1e-9), (j, key)
        if "ttft_p99_s" in one:
            assert many["ttft_p99_s"].iloc[j] == pytest.approx(one["ttft_p99_s"], rel=1e-9)


@pytest.mark.parametrize("option,value,words", [
    ("max_batched_tokens", 0, ">= 1"), ("max_batched_tokens", 10**6, "context of 8192"),
    ("prefix_cache_hit", 1.0, "< 1"), ("prefix_cache_hit", -0.1, ">= 0"), ("qps", 0, "> 0"),
    ("scheduler", "continous", "continuous"), ("prefill_batch", 4, "scheduler static"),
    ("decode_attention", "perhead", "grouped, per-head"), ("cuda_graphs", "yes", "one of off, on")])
def test_bad_engine_options_are_named(option, value, words):
    with pytest.raises(dse.UserInputError) as err:
        dse.evaluate(**SERVE, batch=8, **{option: value})
    assert option in str(err.value) and words in str(err.value)


def test_fp8_keeps_the_tp_all_reduce_in_16_bits():
    # decode at full load: full = slots (O-1) / (chunk steps + O-1) sequences, one token each; two
    # all-reduces per layer of full x hidden in 16 bits, vLLM's one-shot on H100 (the peer's buffer read at
    # 237 GB/s after 4.8 us; `test_engine_allreduce.py`)
    b, i, o = 64, 512, 128
    m = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="serve", precision="fp8", tp=2, batch=b,
                     input_len=i, output_len=o)
    full = b * (o - 1) / (1 + o - 1)  # a 512-token prompt fits one step's budget: one chunk step
    one_shot = 4.8e-6 + 1 * full * H * 2 / 237e9
    assert m["communication_time_s"] == pytest.approx(2 * L * one_shot, rel=1e-9)


def test_engine_steps_pay_a_step_overhead_not_kernel_launches():
    # under CUDA graphs a decode-only step pays the engine's per-step overhead once, whatever its kernels;
    # a step carrying a prefill chunk adds one eager attention launch per layer
    import importlib

    from dse.catalog import registry
    from dse.config import engine_options, numbers
    from dse.modes.setup import setup
    sv = importlib.import_module("dse.modes.serve")
    s = setup(registry("workloads").get("llama-3-8b", "w"), registry("hardware").get("h100", "h"), "serve", "fp16",
              None, None, "none")
    n = numbers({"batch": 8.0}, s)
    engine_options(n, {"batch": 8.0}, {}, s)
    decode, _ = sv._steps(s, n, 8.0, 600.0, 0.0, 512.0, 1.0)
    mixed, _ = sv._steps(s, n, 8.0, 600.0, 512.0, 512.0, 1.0)
    assert float(decode.overhead) == serving.STEP_S
    assert float(mixed.overhead) == pytest.approx(serving.STEP_S + 32 * s.eff.launch)


def test_decode_attention_per_head_streams_the_kv_once_per_query_head():
    # Llama-2-70B: 64 query heads, 8 KV heads of 128, 80 layers. A per-head kernel streams each KV head's
    # cache once per query head on the rank: 8 times at tp 2; at tp 16 each rank holds 4 query heads
    # and one (replicated) KV head: 4 times.
    from dse.catalog import registry
    from dse.models import transformer
    w = registry("workloads").get("llama-2-70b", "w")
    assert transformer.decode_kv_streams(w, 2, "per-head") == 8
    assert transformer.decode_kv_streams(w, 16, "per-head") == 4
    assert transformer.decode_kv_streams(w, 2, "grouped") == 1
    # a static batch of 64 at 2,048 in / 2,048 out on 2 H100s in fp8 (fp8 KV cache, 1 B): each decode
    # step reads 64 sequences x mean context 3,072 x 80 layers x 2 x 8 x 128 elements / 2 ranks; the
    # per-head kernel reads it 7 more times at 3.35 TB/s x 0.9 (the class's bandwidth efficiency)
    kw = dict(workload="llama-2-70b", hardware="h100", mode="serve", precision="fp8", batch=64, tp=2,
              input_len=2048, output_len=2048, scheduler="static")
    grouped, per_head = dse.evaluate(**kw), dse.evaluate(**kw, decode_attention="per-head")
    extra = 7 * 64 * 3072 * 80 * 2 * 8 * 128 * 1.0 / 2 / (3.35e12 * 0.9)
    assert per_head["decode_memory_time_s"] - grouped["decode_memory_time_s"] == pytest.approx(extra, rel=1e-9)
    assert per_head["itl_s"] - grouped["itl_s"] == pytest.approx(extra, rel=1e-9)
    assert per_head["ttft_s"] == grouped["ttft_s"]  # the prefill's attention is not the decode kernel


def test_per_head_streams_reach_only_the_decode_part_of_a_mixed_step():
    # 16 sequences decoding at context 900 plus a 256-token chunk of a 1,024-token prompt; Llama-3-8B's
    # cache is 32 layers x 2 x 8 KV heads x 128 = 65,536 elements per token, 2 B each in fp16. Four
    # streams add 3 x 16 x 900 x 65,536 x 2 bytes; the chunk's K/V reads stay as they were.
    from dse.catalog import registry
    from dse.models import transformer
    w = registry("workloads").get("llama-3-8b", "w")
    one = transformer.mixed_ops(w, 16.0, 900.0, 256.0, 1024.0, 2.0, 2.0)
    four = transformer.mixed_ops(w, 16.0, 900.0, 256.0, 1024.0, 2.0, 2.0, kv_streams=4.0)
    added = (four.kv_bytes - one.kv_bytes) @ four.repeat  # every layer's operators
    assert added == pytest.approx(3 * 16 * 900 * 65_536 * 2, rel=1e-12)
    assert (four.flops_tensor == one.flops_tensor).all()


def test_per_head_is_refused_for_latent_attention():
    with pytest.raises(dse.UserInputError) as err:
        dse.evaluate(workload="deepseek-v3", hardware="h200", mode="serve", precision="fp8", tp=8,
                     decode_attention="per-head")
    assert str(err.value).startswith("decode_attention = 'per-head' is not allowed: grouped for deepseek-v3")


def test_decode_attention_applies_to_serve_only():
    with pytest.raises(dse.UserInputError) as err:
        dse.evaluate(workload="llama-3-8b", hardware="h100", mode="infer", decode_attention="per-head")
    assert "decode_attention" in str(err.value) and "serve" in str(err.value)


def test_full_load_throughput_is_the_closed_loops_littles_law():
    # 5 requests in flight, each replaced as it ends: 5 x 500 tokens every request latency, below the
    # capacity an open queue reaches (a request's overheads and budget wait hold no slot)
    m = dse.evaluate(workload="llama-3.1-70b", hardware="h100", mode="serve", precision="fp8", tp=2, batch=5,
                     input_len=5000, output_len=500)
    assert m["tokens_per_s"] == pytest.approx(5 * 500 / m["request_latency_s"], rel=1e-12)
    assert m["tokens_per_s"] < m["capacity_requests_per_s"] * 500
    assert m["request_latency_s"] == pytest.approx(m["ttft_s"] + 499 * m["itl_s"], rel=1e-12)


def test_cuda_graphs_turn_static_decode_launches_into_graph_kernel_boundaries():
    # Llama-2-7B decode launches 11 kernels a layer (QKV, attention, out-projection, gate/up/down,
    # activation, two norms, two residual adds) plus embedding, final norm and logits: 32 x 11 + 3 =
    # 355. A replayed graph pays 1.3 us per kernel boundary (serving.GRAPH_KERNEL_S) where an eager
    # launch pays the class's 6 us; the prefill launches per kernel either way.
    kw = dict(workload="llama-2-7b", hardware="a100-sxm-80gb", mode="serve", precision="bf16", batch=1,
              input_len=5, output_len=200, scheduler="static", tp=8, gpus=8)
    eager, graphed = dse.evaluate(**kw), dse.evaluate(**kw, cuda_graphs="on")
    assert eager["itl_s"] - graphed["itl_s"] == pytest.approx(355 * (6e-6 - 1.3e-6), rel=1e-9)
    assert eager["ttft_s"] == graphed["ttft_s"]
    assert dse.evaluate(**kw, cuda_graphs="off")["itl_s"] == eager["itl_s"]  # off: the static default


def test_cuda_graphs_off_launches_every_kernel_of_a_continuous_step():
    # vLLM's --enforce-eager: every step launches all its kernels (Llama-3-8B: 32 x 11 + 3 = 355, as
    # above) at the class's 6 us on top of the per-step overhead; under graphs a decode-only step pays
    # the step overhead alone and a mixed one adds its 32 eager attention launches
    import importlib

    from dse.catalog import registry
    from dse.config import engine_options, numbers
    from dse.modes.setup import setup
    sv = importlib.import_module("dse.modes.serve")
    s = setup(registry("workloads").get("llama-3-8b", "w"), registry("hardware").get("h100", "h"), "serve", "fp16",
              None, None, "none")
    steps = {}
    for graphs in ("on", "off"):
        n = numbers({"batch": 8.0}, s)
        engine_options(n, {"batch": 8.0}, {"cuda_graphs": graphs}, s)
        steps[graphs] = [sv._steps(s, n, 8.0, 600.0, chunk, 512.0, 1.0)[0].overhead for chunk in (0.0, 512.0)]
    assert float(steps["off"][0]) == pytest.approx(serving.STEP_S + 355 * 6e-6, rel=1e-12)
    assert float(steps["off"][1]) == pytest.approx(serving.STEP_S + 355 * 6e-6, rel=1e-12)
    assert float(steps["on"][0]) == serving.STEP_S
    assert float(steps["on"][1]) == pytest.approx(serving.STEP_S + 32 * 6e-6, rel=1e-12)
