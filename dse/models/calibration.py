"""Achievable-efficiency parameters per device class, fitted to published measurements.

Five numbers per class, never per device or per measurement row:
  tensor      fraction of the dense matrix-unit peak a large GEMM reaches,
  rows_half   GEMM rows M at which matrix units reach half of `tensor` (Hockney's n_1/2 in M),
  vector      fraction of the fp32 vector peak element-wise kernels reach,
  memory      fraction of peak DRAM/HBM bandwidth streaming kernels reach,
  launch      fixed cost per kernel launch (s).

Datacenter GPUs: `tensor`, `memory` and `launch` come from `bench/calibrate.py --fit`, a grid search
over tensor 0.60-0.90 in steps of 0.01 (best-shape bf16 cuBLAS GEMMs reach 0.80-0.87 of dense peak on
H100/A100, and real layer shapes less), memory 0.80-0.93 (BabelStream reaches 0.87-0.92 of peak HBM
bandwidth) and launch 1-6 us (published per-kernel costs: 1.3 us with CUDA graphs on H100 to
9.6 us with a synchronisation per launch on V100; CUDA Graphs blog 2019, Hazy Research 2025).
`tensor` is the share of peak at the class's reference board (`REFERENCE_MATMUL_SHARE` below); each
device with a measured best-shape GEMM rate scales it by its own share over the reference
(`dse.models.precision.tensor_share`: H100 SXM 0.96, A100 SXM 1.04). Memory 0.90 and launch 6 us,
the top of its launch range, come from the 2026-11-25 fit; after the per-board share `tensor` was
refitted alone (`--fit tensor`) to 0.72, minimising the median error over the 25 rows of
bench/calibration/inference.csv (MLPerf Inference ResNet-50 Offline, TensorRT-LLM v0.6.1 peak
throughput): 4.3% on 2026-11-30. Since the v0.6.1 rows run per-head decode attention (as that
engine did) they give 5.1% at 0.72; a refit would take 0.77 for 4.7%, not taken because 0.72 also
carries the training rows (bench/README.md). Fitting all three lands on 0.75, 0.87 and 5 us
at 4.1%, a flat neighbour not taken: `memory` also carries the vLLM serving fit
(`bench/vllm_sim2real.py`), which moving it would shift.
`rows_half` is set from cuBLAS fp16 GEMMs on A100 in their compute-bound range
(triton-lang/triton issue #4876: 74%, 81% and 85% of peak at M = 256, 1024 and 2048 against an
asymptote near 87%, i.e. M/(M + M_1/2) with M_1/2 = 45-77; 50 is used), not fitted to the rows.
`vector` (element-wise kernels) has no calibration rows here and keeps 0.5.
Classes without rows use the datacenter-GPU values and every result on them says so in its notes.

Two more numbers serve distributed training only, fitted by `bench/calibrate_training.py --fit` (a
grid over collective 0.50-0.95 and interference 0.0-0.5) on the 22 rows of Narayanan et al. 2021,
Tables 1 and 2 (bench/calibration/training_throughput.csv), minimising the worst error:
  collective    fraction of a link's one-direction bandwidth a collective reaches: 0.70 (nccl-tests
                bus bandwidths on NVLink and InfiniBand are 0.7-0.9 of line rate),
  interference  share of communication hidden under compute that still lengthens the step, for the
                SMs and memory bandwidth the collective kernels take: 0.3.
They give a median error of 8.0% and a worst of 14.2% on 2026-11-30, refitted after the per-board
GEMM share (bench/README.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Efficiency:
    tensor: float
    rows_half: float
    vector: float
    memory: float
    launch: float
    calibrated: bool
    basis: str
    collective: float = 1.0
    interference: float = 0.0


# The fraction of peak the best-shape GEMM reaches on the boards of the datacenter-GPU calibration rows,
# A100 SXM (271.2 of 312 TFLOP/s bf16) and H100 SXM (794.5 of 989.5; H200 the same), their mean:
# (0.8692 + 0.8029) / 2 = 0.8361 (stas00/ml-engineering, "Maximum Achievable Matmul FLOPS" table;
# catalog `achievable_bf16`). `tensor` is what real layer shapes reach on a board at this reference;
# a device whose measured rate is a larger or smaller share of its peak scales `tensor` by the ratio
# (`dse.models.precision.tensor_share`), so the fit stays a property of the class, the spread between
# boards comes from measurements, and the calibration rows as a whole are not shifted. The classes
# without rows borrow the GPU fit and so this reference too.
REFERENCE_MATMUL_SHARE = (271.2 / 312.0 + 794.5 / 989.5) / 2.0

_GPU = dict(tensor=0.72, rows_half=50.0, vector=0.5, memory=0.90, collective=0.70, interference=0.3)
BY_CLASS: dict[str, Efficiency] = {
    "datacenter-gpu": Efficiency(**_GPU, launch=6e-6, calibrated=True,
                                 basis="fitted by bench/calibrate.py --fit on 2026-11-30"),
    "datacenter-accel": Efficiency(**_GPU, launch=6e-6, calibrated=False,
                                   basis="no TPU, Gaudi, Trainium or Inferentia measurements in the calibration "
                                         "set; datacenter-GPU values are used"),
    "edge-gpu": Efficiency(**_GPU, launch=6e-6, calibrated=False,
                           basis="no Jetson measurements in the calibration set; datacenter-GPU values are used"),
    # Derived, not fitted: a CMSIS-NN int8 inner loop on a Cortex-M4 (Lai et al. 2018, "CMSIS-NN",
    # section 3.1) loads 4 activations and 4 weights (2 LDR, 2 cycles each), widens them to 16 bits
    # (4 SXTB16, 1 cycle each) and issues 2 SMLAD (1 cycle each, 2 MACs each): 4 MACs in 10 cycles
    # against the 2 MAC/cycle peak = 0.2 (cycle counts: ARM Cortex-M4 TRM r0p1, table 3-1). Word loads
    # take 2 cycles, so streaming reaches half the 1 word/cycle bus rate. An MCU kernel is a function
    # call on one in-order core: no launch queue and no matrix tiles.
    "mcu": Efficiency(tensor=0.2, rows_half=0.0, vector=0.2, memory=0.5, launch=0.0, calibrated=False,
                      basis="derived from Cortex-M4 CMSIS-NN instruction timings; no microcontroller "
                            "measurements in the calibration set"),
}


def for_class(device_class: str) -> Efficiency:
    return BY_CLASS[device_class]


CALIBRATED_VENDORS = ("NVIDIA",)  # every row of bench/calibration/inference.csv is an NVIDIA GPU


def for_device(device_class: str, vendor: str) -> Efficiency:
    """The class's efficiencies for one device: a datacenter GPU of another vendor (AMD) runs on the
    NVIDIA fit and is labelled uncalibrated, since no measurement of it is in the calibration set."""
    eff = BY_CLASS[device_class]
    if eff.calibrated and vendor not in CALIBRATED_VENDORS:
        return replace(eff, calibrated=False, basis=f"fitted on NVIDIA GPUs only, no {vendor or 'user-file'} "
                       "measurements in the calibration set; NVIDIA-fitted values are used")
    return eff


# Mean draw of a busy accelerator (kernels running back to back) as a fraction of its TDP, per
# class: the one power parameter fitted by `bench/calibrate_energy.py --fit` on the training runs of
# Patterson et al. 2021, Table 4 (bench/calibration/carbon.csv) on 2026-11-30: the TPU v2/v3 rows
# fix `datacenter-accel` (0.67), the GPT-3 V100 row `datacenter-gpu` (0.72, with the DGX-1 host
# share). Out of sample, an 8x H100 node training comes to ~7.7 kW against 7.8-8.4 kW measured
# (bench/calibration/power.csv). Classes without measured runs take the GPU value.
POWER_LOAD: dict[str, float] = {"datacenter-gpu": 0.72, "datacenter-accel": 0.67, "edge-gpu": 0.72, "mcu": 0.72}
