"""evaluate_many: a frame of design points gives, row for row, the metrics dse.evaluate gives."""
import math

import numpy as np
import pandas as pd
import pytest

import dse


def _kwargs(row: pd.Series) -> dict:
    """A frame row as dse.evaluate keywords: missing (NaN/None) cells left out, numpy scalars unwrapped."""
    out = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[k] = v.item() if isinstance(v, np.generic) else v
    return out


def assert_rows_match(frame: pd.DataFrame, out: pd.DataFrame, rows=None) -> None:
    assert len(out) == len(frame)
    for i in (range(len(frame)) if rows is None else rows):
        m = dse.evaluate(**_kwargs(frame.iloc[i]))
        got = out.iloc[i]
        for key, v in m.items():
            if key == "infeasible_reasons":
                continue
            g = got[key]
            if isinstance(v, str | bool | np.bool_):
                assert g == v, (i, key, g, v)
            elif math.isinf(v):
                assert g == v, (i, key, g, v)
            else:
                assert float(g) == pytest.approx(float(v), rel=1e-9), (i, key, g, v)
        # metrics of another mode are absent (NaN) on this row
        for key in out.columns.difference(list(m)):
            assert pd.isna(got[key]), (i, key, got[key])


NON_SERVE = [  # CNN rows leave seq_len empty: a CNN takes none
    dict(workload="resnet-50", hardware="a100", mode="train", precision="bf16", batch=256, seq_len=np.nan),
    dict(workload="bert-large", hardware="v100", mode="infer", precision="fp16", batch=32, seq_len=512),
    dict(workload="resnet-50", hardware="h100", mode="infer", precision="int8", batch=64, seq_len=np.nan),
    dict(workload="llama-3-8b", hardware="h100", mode="train", precision="bf16", batch=8, seq_len=2048),
    dict(workload="llama-3-8b", hardware="h100", mode="train", precision="bf16", batch=16, seq_len=1024),
    dict(workload="resnet-50", hardware="a100", mode="train", precision="bf16", batch=128, seq_len=np.nan),
    dict(workload="llama-3-8b", hardware="a100", mode="infer", precision="fp8", batch=2, seq_len=1024),
    dict(workload="llama-3-70b", hardware="h100", mode="infer", precision="fp16", batch=1, seq_len=128),
]
SERVE = [
    dict(workload="llama-3-8b", hardware="h100", precision="fp16", batch=8, input_len=512, output_len=128, qps=1.0),
    dict(workload="llama-3-8b", hardware="a100", precision="fp8", batch=4, input_len=1024, output_len=64, qps=2.0),
    dict(workload="llama-3-8b", hardware="h100", precision="fp16", batch=16, input_len=256, output_len=128, qps=0.5),
    dict(workload="mixtral-8x7b", hardware="h100", precision="fp8", batch=2, input_len=128, output_len=64, qps=100.0),
    dict(workload="llama-3-70b", hardware="h100", precision="fp16", batch=1, input_len=128, output_len=64, qps=1.0),
    dict(workload="llama-2-7b", hardware="mi250x", precision="int4", batch=3, input_len=100, output_len=20, qps=3.0),
    dict(workload="llama-3-8b", hardware="h100", precision="fp16", batch=32, input_len=2048, output_len=256, qps=9.0),
]


def test_infer_and_train_frame_matches_evaluate_row_by_row():
    frame = pd.DataFrame(NON_SERVE)
    frame["ttft_slo"] = np.nan  # optional column absent on every row
    out = dse.evaluate_many(frame)
    assert list(out.index) == list(range(len(frame)))
    assert_rows_match(frame, out)
    assert out.loc[7, "feasible"] == False  # noqa: E712  70B does not fit one H100


def test_serve_frame_with_queueing_matches_evaluate_row_by_row():
    frame = pd.DataFrame(SERVE)
    frame["mode"] = "serve"
    frame["itl_slo"] = np.nan  # optional column absent on every row
    out = dse.evaluate_many(frame)
    assert_rows_match(frame, out)
    assert out.loc[3, "feasible"] == False  # noqa: E712  100 requests/s overload one replica
    assert pd.isna(out.loc[3, "ttft_p99_s"])  # unstable queue: no finite quantile


def test_weight_precision_column_none_on_some_rows():
    frame = pd.DataFrame([dict(workload="llama-3-8b", hardware="h100", mode="serve", batch=b) for b in (1, 2, 4, 8)])
    frame["weight_precision"] = [None, "int4", None, "int8"]
    out = dse.evaluate_many(frame)
    assert_rows_match(frame, out)
    assert out.loc[1, "weights_bytes"] == pytest.approx(out.loc[0, "weights_bytes"] * 4.25 / 16, rel=1e-12)


def test_mixed_modes_frame_matches_evaluate_row_by_row():
    rows = NON_SERVE[:4] + [dict(r, mode="serve", seq_len=np.nan) for r in SERVE[:3]]  # serve takes no seq_len
    frame = pd.DataFrame(rows)
    frame["ttft_slo"] = np.nan
    out = dse.evaluate_many(frame)
    assert_rows_match(frame, out)


def test_transformer_rows_with_default_seq_len():
    frame = pd.DataFrame([
        dict(workload="bert-large", hardware="v100", mode="infer", batch=32),
        dict(workload="llama-3-8b", hardware="h100", mode="train", batch=8),
        dict(workload="llama-3-8b", hardware="h100", mode="infer", batch=2),
    ])
    out = dse.evaluate_many(frame)
    assert_rows_match(frame, out)


def test_input_index_is_kept_and_rows_keep_their_order():
    frame = pd.DataFrame(SERVE[:5])
    frame["mode"] = "serve"
    plain = dse.evaluate_many(frame)
    shuffled_labels = frame.set_axis([10, 3, 7, 3, "x"])  # unordered, duplicated, mixed-type labels
    out = dse.evaluate_many(shuffled_labels)
    assert list(out.index) == [10, 3, 7, 3, "x"]  # the caller's rows, in the caller's order
    pd.testing.assert_frame_equal(out.reset_index(drop=True), plain)
    listed = dse.evaluate_many(frame.to_dict("records"))
    pd.testing.assert_frame_equal(listed, plain)
    assert_rows_match(shuffled_labels, out)


def test_reversed_frame_gives_reversed_rows():
    frame = pd.DataFrame(NON_SERVE)
    out = dse.evaluate_many(frame)
    back = dse.evaluate_many(frame.iloc[::-1])
    assert list(back.index) == list(reversed(range(len(frame))))
    # same values row for row; column order follows the first group met, so it may differ
    pd.testing.assert_frame_equal(back.iloc[::-1].reset_index(drop=True), out, check_dtype=False, check_like=True)


def test_empty_cells_are_options_not_given():
    frame = pd.DataFrame([dict(workload="llama-3-8b", hardware="h100", mode="serve", batch=b) for b in (1, 2, 4)])
    frame["qps"] = [1.0, np.nan, 2.0]
    out = dse.evaluate_many(frame)
    assert pd.isna(out.loc[1, "queue_utilization"]) and out.loc[0, "queue_utilization"] > 0
    assert_rows_match(frame, out)


def test_ten_thousand_rows():
    n = 10_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(dict(
        workload=rng.choice(["llama-3-8b", "llama-2-7b"], n), hardware=rng.choice(["h100", "a100"], n),
        precision=rng.choice(["fp16", "fp8", "int8"], n), mode="serve", batch=rng.integers(1, 65, n),
        input_len=rng.integers(16, 4097, n), output_len=rng.integers(1, 513, n)))
    out = dse.evaluate_many(frame)
    assert len(out) == n and list(out.index) == list(range(n))
    assert np.isfinite(out["ttft_s"]).all() and (out["itl_s"].dropna() > 0).all()
    assert (out["itl_s"].isna() == (frame["output_len"] == 1)).all()  # no decode step, no inter-token latency
    assert_rows_match(frame, out, rows=[0, 1, 4999, 9998, 9999])


def test_zero_stages_in_a_frame_match_evaluate():
    frame = pd.DataFrame([dict(workload="llama-3-8b", hardware="h100", mode="train", batch=16, seq_len=1024, dp=8,
                               zero=z) for z in (0, 1, 2, 3)])
    out = dse.evaluate_many(frame)
    assert_rows_match(frame, out)
    assert out["memory_per_gpu_bytes"].is_monotonic_decreasing
    # ZeRO-3's two gathers and a reduce-scatter move 1.5x an all-reduce's bytes and steps, and pay NCCL's
    # 6.6 us fixed cost (fabrics.toml nvlink4) three times against once; 0.3 of both exposed (interference)
    assert out.loc[3, "communication_time_s"] == pytest.approx(
        1.5 * out.loc[0, "communication_time_s"] + 0.3 * (3 - 1.5) * 6.6e-6, rel=1e-9)


def test_storage_bandwidth_column():
    frame = pd.DataFrame({"workload": "resnet-50", "hardware": "a100", "mode": "train", "batch": 256,
                          "storage_bw": [0.3e9, 3e9], "sample_bytes": 110e3})
    out = dse.evaluate_many(frame)
    for i in range(2):
        one = dse.evaluate(workload="resnet-50", hardware="a100", mode="train", batch=256,
                           storage_bw=frame["storage_bw"][i], sample_bytes=110e3)
        assert out["step_time_s"].iloc[i] == pytest.approx(one["step_time_s"], rel=1e-12)
    # 256 x 110 kB at 0.3 GB/s take 94 ms, longer than the A100's step: storage sets the pace
    assert out["step_time_s"].iloc[0] == pytest.approx(256 * 110e3 / 0.3e9, rel=1e-12)
    assert out["step_time_s"].iloc[0] > out["step_time_s"].iloc[1]
