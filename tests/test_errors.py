"""User mistakes through the Python API (DESIGN.md 4.3, 4.4).

Every mistake raises a `dse.DSEError` subclass whose message names the field, the value and what is
allowed (with a "did you mean" for names).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import dse

BASE = {"workload": "llama-3-8b", "hardware": "h100"}


def error_of(**kwargs) -> str:
    """The message of the DSEError that `dse.evaluate(**kwargs)` raises."""
    with pytest.raises(dse.DSEError) as info:
        dse.evaluate(**kwargs)
    return str(info.value)


def assert_names(message: str, *fragments: str) -> None:
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"


# ---------------------------------------------------------------- 1. unknown names

def test_unknown_hardware_suggests_closest():
    with pytest.raises(dse.UnknownNameError, match=r"hardware.*'H1000'.*Did you mean 'h100'"):
        dse.evaluate(workload="llama-3-8b", hardware="H1000")


def test_unknown_workload_suggests_closest():
    msg = error_of(workload="llama3-8bb", hardware="h100")
    assert_names(msg, "workload", "'llama3-8bb'", "Did you mean", "'llama-3-8b'")


def test_unknown_name_error_is_a_dse_error():
    assert issubclass(dse.UnknownNameError, dse.DSEError)
    assert issubclass(dse.UserInputError, dse.DSEError)


# ---------------------------------------------------------------- 2. batch

@pytest.mark.parametrize("batch", [0, -4, 2.5, "abc", True, float("nan")], ids=str)
def test_bad_batch(batch):
    with pytest.raises(dse.UserInputError) as info:
        dse.evaluate(**BASE, batch=batch)
    msg = str(info.value)
    assert_names(msg, "batch", repr(batch) if isinstance(batch, str) else str(batch), "an integer >= 1")


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("gpus", 0, ">= 1"), ("seq_len", 0, ">= 1"), ("zero", 5, "<= 3"),
])
def test_other_out_of_range_integers(key, value, allowed):
    assert_names(error_of(**BASE, **{key: value}), f"{key} = {value}", allowed)


# ---------------------------------------------------------------- 3. choices

def test_unknown_precision_suggests_fp8():
    msg = error_of(**BASE, precision="fp7")
    assert_names(msg, "precision", "'fp7'", "Did you mean", "'fp8'")


def test_unknown_weight_precision():
    assert_names(error_of(**BASE, weight_precision="int3"), "weight_precision", "'int3'", "'int4'")


def test_unknown_mode():
    assert_names(error_of(**BASE, mode="fly"), "mode", "'fly'")


def test_unknown_mode_lists_allowed_values():
    msg = error_of(**BASE, mode="fly")
    assert_names(msg, "infer", "train", "serve")
    assert "dse catalog" not in msg


def test_unknown_recompute():
    assert_names(error_of(**BASE, mode="train", recompute="partial"), "recompute", "'partial'")


def test_unknown_recompute_lists_allowed_values():
    msg = error_of(**BASE, mode="train", recompute="partial")
    assert_names(msg, "none", "selective", "full")
    assert "dse catalog" not in msg


def test_bad_sparsity():
    assert_names(error_of(**BASE, sparsity="3:4"), "sparsity", "'3:4'", "2:4")


# ---------------------------------------------------------------- 4. tensor parallelism

def test_tp_must_divide_heads():
    msg = error_of(**BASE, mode="serve", tp=3)
    assert_names(msg, "tp", "3", "divisor", "32")


def test_tp_at_most_gpus_per_node():
    msg = error_of(**BASE, mode="serve", tp=16)
    assert_names(msg, "tp", "16", "gpus_per_node", "8")


def test_tp_at_most_given_gpus_per_node():
    assert_names(error_of(**BASE, mode="serve", tp=8, gpus_per_node=4), "tp", "8", "4")


# ---------------------------------------------------------------- 5. workload files

GOOD_WORKLOAD = 'family = "transformer"\nlayers = 2\nhidden = 256\nheads = 8\nvocab = 1000\n'


@pytest.fixture
def workload_file(tmp_path):
    def write(text: str, name: str = "toy") -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return str(path)
    return write


def workload_error(path: str) -> str:
    with pytest.raises(dse.DSEError) as info:
        dse.evaluate(workload_file=path, hardware="h100")
    return str(info.value)


def test_good_workload_file_evaluates(workload_file):
    assert dse.evaluate(workload_file=workload_file(GOOD_WORKLOAD), hardware="h100")["feasible"] is True


def test_workload_file_invalid_toml(workload_file):
    path = workload_file('family = "transformer\nlayers = 2\n')
    assert_names(workload_error(path), "workload_file", path, "valid TOML", "line 1")


def test_workload_file_missing_hidden(workload_file):
    msg = workload_error(workload_file(GOOD_WORKLOAD.replace("hidden = 256\n", "")))
    assert_names(msg, ".hidden", "None", "a positive integer")


def test_workload_file_hidden_not_multiple_of_heads(workload_file):
    msg = workload_error(workload_file(GOOD_WORKLOAD.replace("hidden = 256", "hidden = 250")))
    assert_names(msg, ".hidden", "250", "multiple of heads (8)")


def test_workload_file_kv_heads_not_dividing_heads(workload_file):
    msg = workload_error(workload_file(GOOD_WORKLOAD + "kv_heads = 3\n"))
    assert_names(msg, ".kv_heads", "3", "divisor of heads (8)")


def test_workload_file_swiglu_without_ffn_hidden(workload_file):
    msg = workload_error(workload_file(GOOD_WORKLOAD + 'ffn = "swiglu"\n'))
    assert_names(msg, ".ffn_hidden", "swiglu")


def test_workload_file_negative_layers(workload_file):
    msg = workload_error(workload_file(GOOD_WORKLOAD.replace("layers = 2", "layers = -2")))
    assert_names(msg, ".layers", "-2", "a positive integer")


def test_workload_file_unknown_family(workload_file):
    msg = workload_error(workload_file(GOOD_WORKLOAD.replace('"transformer"', '"rnn"')))
    assert_names(msg, ".family", "'rnn'", "transformer", "cnn")


def test_workload_file_cnn_unknown_layer_op(workload_file):
    path = workload_file('family = "cnn"\ninput = [32, 32, 3]\n'
                         'layers = [ { op = "conv", out = 8, k = 3 }, { op = "warp", out = 4 } ]\n')
    assert_names(workload_error(path), "layers[1].op", "'warp'", "conv", "fc")


def test_workload_file_does_not_exist(tmp_path):
    path = str(tmp_path / "nope.toml")
    assert_names(workload_error(path), "workload_file", path, "an existing TOML file")


def test_workload_file_is_a_directory(tmp_path):
    assert_names(workload_error(str(tmp_path)), "workload_file", "not a directory")


def test_workload_file_misspelled_key(workload_file):
    msg = workload_error(workload_file(GOOD_WORKLOAD + "kv_head = 2\n"))
    assert_names(msg, "kv_head", "kv_heads")


# ---------------------------------------------------------------- 6. hardware files

GOOD_HARDWARE = '''name = "toy"
[peak]
fp16 = { value = 100, unit = "TFLOP/s" }
[spec]
memory_capacity = { value = 24, unit = "GiB" }
memory_bandwidth = { value = 1, unit = "TB/s" }
'''
BW = 'memory_bandwidth = { value = 1, unit = "TB/s" }'


@pytest.fixture
def hardware_file(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "toy.toml"
        path.write_text(text)
        return str(path)
    return write


def hardware_error(path: str) -> str:
    with pytest.raises(dse.DSEError) as info:
        dse.evaluate(workload="llama-3-8b", hardware_file=path)
    return str(info.value)


def test_good_hardware_file_evaluates(hardware_file):
    assert dse.evaluate(workload="llama-3-8b", hardware_file=hardware_file(GOOD_HARDWARE))["feasible"] is True


def test_hardware_file_missing_memory_bandwidth(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace(BW + "\n", "")))
    assert_names(msg, "spec.memory_bandwidth", "required")


def test_hardware_file_negative_value(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace('value = 1,', 'value = -1,')))
    assert_names(msg, "memory_bandwidth.value", "-1", "non-negative")


def test_hardware_file_unknown_unit(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace('"TB/s"', '"furlongs"')))
    assert_names(msg, "memory_bandwidth", "furlongs")


def test_hardware_file_wrong_dimension_unit(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace('"TB/s"', '"GiB"')))
    assert_names(msg, "memory_bandwidth", "GiB")


def test_hardware_file_unknown_precision_key(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace("fp16 = {", "fp12 = {")))
    assert_names(msg, ".peak", "'fp12'", "fp16", "int8")


def test_hardware_file_low_above_high(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace('value = 1, unit = "TB/s"',
                                                             'value = 1, unit = "TB/s", low = 2, high = 1.5')))
    assert_names(msg, "memory_bandwidth", "low <= value <= high")


def test_hardware_file_zero_peak(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace("value = 100,", "value = 0,")))
    assert_names(msg, "peak.fp16", "0")


def test_hardware_file_zero_bandwidth_message(hardware_file):
    msg = hardware_error(hardware_file(GOOD_HARDWARE.replace('value = 1,', 'value = 0,')))
    assert_names(msg, "memory_bandwidth", "0")
    assert "Quantity(" not in msg


def test_hardware_file_does_not_exist(tmp_path):
    path = str(tmp_path / "nope.toml")
    assert_names(hardware_error(path), "hardware_file", path, "an existing TOML file")


# ---------------------------------------------------------------- 7. negative and malformed amounts

def test_negative_qps():
    assert_names(error_of(**BASE, mode="serve", qps=-1), "qps", "-1", "> 0")


@pytest.mark.parametrize("tokens", [-5, 0, float("inf")], ids=str)
def test_bad_tokens(tokens):
    assert_names(error_of(**BASE, mode="train", tokens=tokens), "tokens", str(tokens), "> 0")


@pytest.mark.parametrize("rate", ["-250MB/s", -250e6], ids=str)
def test_negative_worker_bw(rate):
    msg = error_of(**BASE, cpu_workers=4, worker_bw=rate, sample_bytes="100kB")
    assert_names(msg, "worker_bw", "-250")


@pytest.mark.parametrize("size", [0, "0", "0kB"], ids=repr)
def test_zero_sample_bytes(size):
    msg = error_of(**BASE, cpu_workers=4, worker_bw="250MB/s", sample_bytes=size)
    assert_names(msg, "sample_bytes", "0")


def test_worker_bw_needs_a_rate_unit():
    msg = error_of(**BASE, cpu_workers=4, worker_bw="250MB", sample_bytes="100kB")
    assert_names(msg, "worker_bw", "'250MB'", "250MB/s")


def test_sample_bytes_refuses_a_rate():
    assert_names(error_of(**BASE, cpu_workers=4, worker_bw="250MB/s", sample_bytes="100kB/s"),
                 "sample_bytes", "'100kB/s'")


# ---------------------------------------------------------------- 8. options in the wrong mode

def test_qps_in_train_mode():
    assert_names(error_of(**BASE, mode="train", qps=1), "qps", "= 1 ", "not used in train mode")


def test_tokens_in_serve_mode():
    assert_names(error_of(**BASE, mode="serve", tokens=100), "tokens", "100", "not used in serve mode")


def test_cpu_workers_in_serve_mode():
    msg = error_of(**BASE, mode="serve", cpu_workers=2, worker_bw="250MB/s", sample_bytes="1kB")
    assert_names(msg, "cpu_workers", "2", "infer and train")


def test_cpu_workers_without_worker_bw():
    assert_names(error_of(**BASE, cpu_workers=4, sample_bytes="100kB"), "worker_bw", "cpu_workers")


def test_cpu_workers_alone_names_a_missing_option():
    msg = error_of(**BASE, cpu_workers=4)
    assert "cpu_workers" in msg
    assert "worker_bw" in msg or "sample_bytes" in msg


def test_tp_in_infer_mode():
    assert_names(error_of(**BASE, tp=2), "tp", "2", "serve")


# ---------------------------------------------------------------- 9. workload source

def test_both_workload_and_workload_file():
    assert_names(error_of(**BASE, workload_file="x.toml"), "workload", "workload_file", "exactly one")


def test_neither_workload_nor_workload_file():
    assert_names(error_of(hardware="h100"), "workload", "workload_file", "exactly one")


def test_both_hardware_and_hardware_file():
    assert_names(error_of(**BASE, hardware_file="x.toml"), "hardware", "hardware_file", "exactly one")


# ---------------------------------------------------------------- 10. unknown keywords

def test_unknown_keyword():
    with pytest.raises(dse.DSEError, match=r"no_such_option.*dse eval --help"):
        dse.evaluate(**BASE, no_such_option=1)


def test_misspelled_keyword_suggests_the_option():
    assert_names(error_of(**BASE, btch=4), "'btch'", "Did you mean", "'batch'")


def test_unknown_keyword_hint_points_at_options():
    msg = error_of(**BASE, no_such_option=1)
    assert "dse catalog" not in msg
    assert "batch" in msg or "--help" in msg


# ---------------------------------------------------------------- 11. evaluate_many

def frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"workload": ["llama-3-8b"] * n, "hardware": ["h100"] * n, **columns})


def many_error(df: pd.DataFrame) -> str:
    with pytest.raises(dse.DSEError) as info:
        dse.evaluate_many(df)
    return str(info.value)


def test_evaluate_many_names_field_value_and_row():
    msg = many_error(frame(batch=[1, 2, 0], seq_len=[128] * 3))
    assert_names(msg, "batch", "0", "row 2")


def test_evaluate_many_batch_zero_without_seq_len_column():
    assert_names(many_error(frame(batch=[1, 2, 0])), "batch", "0", "row 2")


def test_evaluate_many_text_cell():
    assert_names(many_error(frame(batch=[1, 2, "abc"])), "batch", "'abc'", "row 2")


def test_evaluate_many_unknown_workload_row():
    df = frame(batch=[1, 1, 1])
    df["workload"] = ["llama-3-8b", "llama-3-8b", "llama3-8bb"]
    df["seq_len"] = 128
    assert_names(many_error(df), "workload", "'llama3-8bb'", "'llama-3-8b'", "row 2")


def test_evaluate_many_tp_row():
    assert_names(many_error(frame(mode=["serve"] * 3, tp=[1, 2, 3])), "tp", "3", "row 2")


def test_evaluate_many_unknown_column():
    assert_names(many_error(frame(btch=[1, 2, 3])), "'btch'", "'batch'")


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_evaluate_many_batch_column_without_seq_len(mode):
    out = dse.evaluate_many(frame(mode=[mode] * 3, batch=[1, 2, 4]))
    assert len(out) == 3


def test_evaluate_many_row_with_varying_mode():
    msg = many_error(frame(mode=["serve", "infer", "infer"], batch=[1, 1, 0], seq_len=[np.nan, 64, 64]))
    assert_names(msg, "batch", "0", "row 2")


def test_evaluate_many_value_shown_plainly():
    msg = many_error(frame(batch=[1, 2, 2.5], seq_len=[64] * 3))
    assert_names(msg, "batch", "2.5", "row 2")
    assert "np.float64" not in msg


def test_evaluate_many_empty_cell_takes_the_default():
    out = dse.evaluate_many(frame(batch=[1, 2, None], seq_len=[64] * 3))
    assert out["latency_s"].iloc[2] == dse.evaluate(**BASE, seq_len=64)["latency_s"]  # batch 1


# ---------------------------------------------------------------- 12. economics options

@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"region": "quebec"}, ["region", "'quebec'", "duration_days"]),
    ({"pue": 1.2}, ["pue", "duration_days"]),
    ({"duration_days": 3, "region": "quebc"}, ["region", "'quebc'", "Did you mean"]),
    ({"duration_days": 3, "purchase": "lease"}, ["purchase", "'lease'", "buy"]),
    ({"duration_days": 3, "pue": 0.5}, ["pue", "0.5", ">= 1"]),
    ({"duration_days": 3, "grid_g_per_kwh": -1}, ["grid_g_per_kwh", "-1", ">= 0"]),
    ({"duration_days": 3, "fleet_utilization": 0.5}, ["fleet_utilization", "purchase buy"]),
    ({"duration_days": 3, "purchase": "buy", "fleet_utilization": 1.5}, ["fleet_utilization", "1.5", "<= 1"]),
    ({"duration_days": 0}, ["duration_days", "0", "> 0"]),
    ({"duration_days": 3, "purchase": "rent-gpu-cloud", "electricity_price": 0.1},
     ["electricity_price", "purchase buy"]),
    ({"duration_days": 3, "region": ""}, ["region", "''", "region name"]),
    ({"duration_days": 3, "region": ["quebec"]}, ["region", "['quebec']", "region name"]),
    ({"mode": "serve", "tokens": 1e9, "duration_days": 3}, ["tokens", "not used in serve mode"]),
])
def test_economics_options_refused(kwargs, fragments):
    assert_names(error_of(**BASE, **kwargs), *fragments)


def test_messages_are_single_line():
    for kwargs in ({**BASE, "batch": 0}, {**BASE, "precision": "fp7"}, {"workload": "x", "hardware": "h100"}):
        assert "\n" not in error_of(**kwargs)


def test_errors_do_not_chain_internal_exceptions():
    with pytest.raises(dse.DSEError) as info:
        dse.evaluate(**BASE, batch="abc")
    assert info.value.__cause__ is None
    assert re.search(r"batch = 'abc' is not allowed", str(info.value))


def test_serve_refuses_encoders_and_cnns():
    for workload in ("bert-large", "vit-b-16", "resnet-50"):
        assert_names(error_of(workload=workload, hardware="h100", mode="serve"), "mode", "serve", workload)


def test_precision_the_device_cannot_run_lists_what_it_runs():
    assert_names(error_of(workload="llama-3-8b", hardware="tpu-v4", precision="fp32"), "precision", "fp32",
                 "bf16")


def test_parallelism_needs_a_node_that_connects_the_gpus():
    assert_names(error_of(workload="llama-3-8b", hardware="tpu-v4", mode="serve", tp=2), "tp", "2",
                 "says how tpu-v4 GPUs connect")
    assert_names(error_of(workload="llama-3-8b", hardware="tpu-v4", mode="train", batch=8, dp=2), "dp", "2")
    # a link the device has, but not that wide: H200 NVL's 4-way bridge, and the servers of PCIe cards
    assert_names(error_of(workload="llama-3-8b", hardware="h200-nvl", mode="serve", tp=8), "tp", "8", "at most 4")
    assert_names(error_of(workload="llama-3-8b", hardware="l40s", mode="serve", tp=16, gpus_per_node=16), "tp",
                 "16", "at most 8")


def test_training_refuses_storage_narrower_than_its_arithmetic():
    assert_names(error_of(workload="llama-3-8b", hardware="a100", mode="train", precision="fp8"), "precision",
                 "fp8", "fp16")
    assert_names(error_of(workload="llama-3-8b", hardware="h100", mode="train", precision="int8"), "precision")


def test_result_cache_does_not_confuse_true_with_one():
    dse.evaluate(**BASE, batch=1)
    assert_names(error_of(**BASE, batch=True), "batch", "True")
