"""The input pipeline (storage, CPU decode/augment) in front of the accelerator, in any mode."""
from __future__ import annotations

import numpy as np

from dse.models import data_pipeline
from dse.modes.setup import Setup, relabel


def with_data_pipeline(m: dict, n: dict, s: Setup) -> dict:
    """Put the input pipeline (storage read, CPU decode/augment) in front of the accelerator when
    --cpu-workers or --storage-bw is given; a stage without its option is not modelled."""
    key = "step_time_s" if s.mode == "train" else "latency_s"
    samples, sample_bytes, t_compute = n["batch"], n["sample_bytes"], m[key]
    t_sto = data_pipeline.stage_time(samples, sample_bytes, np.inf if n["storage_bw"] is None else n["storage_bw"])
    cpu_rate = np.inf if n["cpu_workers"] is None else n["cpu_workers"] * n["worker_bw"]
    t_cpu = data_pipeline.stage_time(samples, sample_bytes, cpu_rate)
    t, util, stall = data_pipeline.pipelined_step(t_compute, t_sto, t_cpu)
    scale = t_compute / t
    m.update({"data_stall_fraction": stall, "accelerator_utilization": util, "activity": m["activity"] * util,
              "storage_time_s": t_sto,
              "cpu_transform_time_s": t_cpu, "accelerator_time_s": t_compute, key: t})
    if n["worker_bw"] is not None:
        m["cpu_workers_needed"] = data_pipeline.workers_needed(samples, sample_bytes, n["worker_bw"], t_compute)
    for rate in ("throughput_per_s", "samples_per_s", "tokens_per_s", "mfu", "hfu", "model_tflops_per_gpu"):
        if rate in m:
            m[rate] = m[rate] * scale
    if "time_to_train_s" in m:
        m["time_to_train_s"] = m["time_to_train_s"] / scale
    m["bottleneck"] = relabel(stall > 1e-9, "data", m["bottleneck"])  # the slowest stage sets the step
    return m
