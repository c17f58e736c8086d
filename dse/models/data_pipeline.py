"""Input pipeline against the accelerator: storage read and CPU decode/augment feeding each step.

The three stages (read, transform, compute) run as a pipeline with prefetching (PyTorch DataLoader
workers, tf.data prefetch; Murray et al. 2021, "tf.data", section 3), so a step takes the slowest
stage: t = max(t_compute, t_storage, t_cpu). The accelerator is busy t_compute / t of the time; the
rest is a data stall (Mohan et al. 2021, "Analyzing and Mitigating Data Stalls in DNN Training").
"""
from __future__ import annotations

import numpy as np


def stage_time(samples, sample_bytes, rate):
    """Seconds a stage of throughput `rate` (bytes/s: storage bandwidth, or workers x per-worker
    decode rate) needs for `samples` samples; 0 for a stage that is not modelled (rate = inf)."""
    return samples * sample_bytes / rate


def pipelined_step(t_compute, t_storage, t_cpu):
    """Step time with the stages overlapped, the accelerator's busy fraction and its stall fraction."""
    t = np.maximum(np.maximum(t_compute, t_storage), t_cpu)
    return t, t_compute / t, 1.0 - t_compute / t


def workers_needed(samples, sample_bytes: float, worker_bw: float, t_compute)     :
    """CPU workers whose combined transform rate keeps up with the accelerator."""
    return np.maximum(1.0, np.ceil(samples * sample_bytes / (worker_bw * t_compute) - 1e-9))
