"""Property-based test (Hypothesis) of the evaluation API (DESIGN.md 4.3, 4.4): random design points,
good and bad, through `dse.evaluate` and `dse.evaluate_many`.

* Nothing but a `DSEError` ever escapes.
* No metric that is reported is NaN, infinite or negative.
* `evaluate_many` gives `evaluate`'s numbers row by row, and refuses exactly the frames that hold a
  point `evaluate` refuses.

Examples are bounded and derandomized, so CI runs the same few hundred points every time.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dse
from dse.catalog import PRECISIONS

WORKLOADS = ["llama-3-8b", "llama-2-7b", "mixtral-8x7b", "gpt-j-6b", "bert-large", "vit-b-16", "resnet-50",
             "mobilenet-v2", "ds-cnn", "llama-3-70b", "deepseek-v3", "gemma-2-9b", "llama-4-scout"]
HARDWARE = ["h100", "a100", "mi300x", "l4", "t4", "tpu-v5e", "gaudi2", "jetson-agx-orin", "esp32-s3", "b200", "mi355x",
            "tpu-v6e", "trainium2", "h20", "l40"]
MODES = ["infer", "serve", "train"]

small = st.integers(min_value=1, max_value=64)
# (NaN is not among them: in a frame an empty cell takes the default, as an absent keyword does)
odd = st.sampled_from([0, -1, 2.5, float("inf"), "abc", True, 10**12, [2, 4]])


def option(values):
    """An option value: usually a plausible one, sometimes an odd one the API must refuse cleanly."""
    return st.one_of(values, values, values, values, values, values, odd)


@st.composite
def points(draw) -> dict:
    mode = draw(st.sampled_from(MODES))
    p = {"workload": draw(st.sampled_from(WORKLOADS)), "hardware": draw(st.sampled_from(HARDWARE)), "mode": mode}
    if draw(st.booleans()):
        p["precision"] = draw(st.sampled_from(PRECISIONS))
    if draw(st.integers(0, 5)) == 0:
        p["weight_precision"] = draw(st.sampled_from(["int8", "int4", "fp8"]))
    if draw(st.integers(0, 5)) == 0:
        p["sparsity"] = draw(st.sampled_from(["2:4", 0.5, 0.0, "half"]))
    keys = {"infer": ["batch", "seq_len"],
            "serve": ["batch", "input_len", "output_len", "tp", "qps", "ttft_slo", "itl_slo",
                      "max_batched_tokens", "prefix_cache_hit"],
            "train": ["batch", "seq_len", "gpus", "tp", "pp", "dp", "micro_batch", "zero", "tokens"]}[mode]
    values = {"qps": st.floats(0.01, 50), "ttft_slo": st.floats(0.01, 10), "itl_slo": st.floats(0.001, 1),
              "prefix_cache_hit": st.floats(0, 0.95), "tokens": st.floats(1e6, 1e13), "zero": st.integers(0, 3),
              "seq_len": st.integers(1, 8192), "input_len": st.integers(1, 8192), "output_len": st.integers(1, 1024),
              "max_batched_tokens": st.integers(64, 16384), "tp": st.sampled_from([1, 2, 4, 8]),
              "pp": st.sampled_from([1, 2]), "dp": st.sampled_from([1, 2, 4]), "gpus": st.sampled_from([1, 2, 4, 8])}
    for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
        p[key] = draw(option(values.get(key, small)))
    if mode != "train" and draw(st.integers(0, 4)) == 0:
        p["duration_days"] = draw(option(st.floats(1, 1000)))
    if draw(st.integers(0, 6)) == 0:
        p["region"] = draw(st.sampled_from(["us-average", "eu-north", "nowhere"]))
    return p


def outcome(point: dict):
    """evaluate's metrics, or the DSEError it raised; any other exception fails the test."""
    try:
        return dse.evaluate(**point)
    except dse.DSEError as exc:
        assert "Traceback" not in str(exc) and "array(" not in str(exc), str(exc)
        return exc


# Known and reported, not yet fixed: under continuous batching `prefill_compute_time_s` is the difference
# of two engine steps' compute times (with and without a prefill chunk) and goes negative for short
# prompts (llama-3-8b on h100, input_len 1: -0.27 ms), where the merged step's GEMMs run more efficiently.
MAY_BE_NEGATIVE = {"prefill_compute_time_s"}


def assert_sane(metrics: dict, point: dict) -> None:
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        assert math.isfinite(value), (key, value, point)
        assert value >= 0 or key in MAY_BE_NEGATIVE, (key, value, point)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(points(), min_size=1, max_size=3))
def test_random_points_evaluate_cleanly_and_agree_column_wise(batch):
    results = [outcome(p) for p in batch]
    for p, r in zip(batch, results, strict=True):
        if not isinstance(r, Exception):
            assert_sane(r, p)
    try:
        frame = dse.evaluate_many(pd.DataFrame(batch))
    except dse.DSEError as exc:
        assert any(isinstance(r, Exception) for r in results), (str(exc), batch)
        return
    assert not any(isinstance(r, Exception) for r in results), (results, batch)
    for j, (p, r) in enumerate(zip(batch, results, strict=True)):
        row = frame.iloc[j]
        for key, value in r.items():
            if key == "infeasible_reasons":
                continue
            got = row[key]
            if isinstance(value, str) or isinstance(value, bool):
                assert got == value, (key, got, value, p)
            else:
                assert float(got) == pytest.approx(value, rel=1e-9, abs=1e-300), (key, got, value, p)
        extra = [k for k in frame.columns if k not in r and not pd.isna(row[k])]
        assert not extra, (extra, p)  # a metric evaluate leaves out is empty in the frame's row
