"""Input pipeline in front of the accelerator: max(compute, storage, CPU) with prefetching."""
import math

import pytest

import dse
from dse.models import data_pipeline

# Seed scenario: ResNet-50 training on A100, batch 256, 500 kB per sample, 250 MB/s per CPU worker,
# storage 3 GB/s.
BASE = dict(workload="resnet-50", hardware="a100", mode="train", batch=256)
PIPE = dict(worker_bw="250MB/s", sample_bytes="500kB", storage_bw="3GB/s")
BATCH_BYTES = 256 * 500e3  # 128 MB per step


@pytest.fixture(scope="module")
def t_compute():
    """Step time of the accelerator alone (no --cpu-workers)."""
    return dse.evaluate(**BASE)["step_time_s"]


def test_pipelined_step_and_workers_needed_unit():
    t_sto = BATCH_BYTES / 3e9  # 0.0427 s
    t_cpu = BATCH_BYTES / (8 * 250e6)  # 0.064 s
    t, util, stall = data_pipeline.pipelined_step(0.05, t_sto, t_cpu)
    assert t == pytest.approx(0.064, rel=1e-12)
    assert util == pytest.approx(0.05 / 0.064, rel=1e-12)
    assert stall == pytest.approx(1 - 0.05 / 0.064, rel=1e-12)
    assert data_pipeline.workers_needed(256, 500e3, 250e6, 0.05) == math.ceil(BATCH_BYTES / (250e6 * 0.05))  # 11
    assert data_pipeline.workers_needed(256, 500e3, 250e6, 0.064) == 8  # exactly 8: no rounding up to 9
    assert data_pipeline.workers_needed(1, 1.0, 1e9, 1.0) == 1  # never fewer than one


def test_seed_scenario_by_hand(t_compute):
    m = dse.evaluate(**BASE, cpu_workers=8, **PIPE)
    t_cpu = BATCH_BYTES / (8 * 250e6)
    t_sto = BATCH_BYTES / 3e9
    assert m["cpu_transform_time_s"] == pytest.approx(t_cpu, rel=1e-12)
    assert m["storage_time_s"] == pytest.approx(t_sto, rel=1e-12)
    step = max(t_compute, t_sto, t_cpu)
    util = t_compute / step
    assert m["step_time_s"] == pytest.approx(step, rel=1e-12)
    assert m["accelerator_utilization"] == pytest.approx(util, rel=1e-12)
    assert m["data_stall_fraction"] == pytest.approx(1 - util, rel=1e-12, abs=1e-15)
    assert m["cpu_workers_needed"] == math.ceil(BATCH_BYTES / (250e6 * t_compute))


def test_too_few_workers_stall_the_accelerator(t_compute):
    base = dse.evaluate(**BASE)
    m = dse.evaluate(**BASE, cpu_workers=2, **PIPE)
    t_cpu = BATCH_BYTES / (2 * 250e6)  # 0.256 s
    assert t_cpu > t_compute
    assert m["step_time_s"] == pytest.approx(t_cpu, rel=1e-12)
    assert m["accelerator_utilization"] == pytest.approx(t_compute / t_cpu, rel=1e-12)
    assert m["data_stall_fraction"] == pytest.approx(1 - t_compute / t_cpu, rel=1e-12)
    assert m["data_stall_fraction"] > 0.5 and m["bottleneck"] == "data"
    # rates shrink by the same factor the step grows
    assert m["samples_per_s"] == pytest.approx(256 / t_cpu, rel=1e-12)
    assert m["mfu"] == pytest.approx(base["mfu"] * t_compute / t_cpu, rel=1e-12)


def test_enough_workers_keep_the_accelerator_busy(t_compute):
    needed = math.ceil(BATCH_BYTES / (250e6 * t_compute))
    m = dse.evaluate(**BASE, cpu_workers=needed, **PIPE)
    assert m["accelerator_utilization"] == 1.0
    assert m["data_stall_fraction"] == 0.0
    assert m["bottleneck"] != "data"
    assert m["step_time_s"] == pytest.approx(t_compute, rel=1e-12)
    if needed > 1:  # one worker fewer is not enough
        fewer = dse.evaluate(**BASE, cpu_workers=needed - 1, **PIPE)
        assert fewer["accelerator_utilization"] < 1.0


def test_slow_storage_bounds_the_step(t_compute):
    m = dse.evaluate(**BASE, cpu_workers=64, worker_bw="250MB/s", sample_bytes="500kB", storage_bw="100MB/s")
    t_sto = BATCH_BYTES / 100e6  # 1.28 s
    assert m["step_time_s"] == pytest.approx(t_sto, rel=1e-12)
    assert m["accelerator_utilization"] == pytest.approx(t_compute / t_sto, rel=1e-12)
    assert m["bottleneck"] == "data"
