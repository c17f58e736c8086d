"""The operator roofline against hand arithmetic."""
import numpy as np
import pytest

from dse.models import roofline
from dse.models.calibration import Efficiency
from dse.models.precision import Execution

EFF = Efficiency(tensor=0.5, rows_half=64.0, vector=0.25, memory=0.8, launch=5e-6, calibrated=False, basis="test")
EX = Execution(compute="fp16", tensor_rate=100e12, vector_rate=10e12, stored="fp16", weight_bytes=2.0, act_bytes=2.0,
               kv_bytes=2.0, dequant=False, notes=())


def table(weights, ft, fv, act, kernels=1.0, repeat=1.0, rows=4096.0):
    arr = lambda v: np.array([v], dtype=float)  # noqa: E731
    return roofline.OpTable(("op",), arr(repeat), arr(weights), arr(ft), arr(rows), arr(fv), arr(act),
                            arr(kernels))


def test_compute_bound_gemm():
    # 4096^3 GEMM: 2*4096^3 FLOP; compute (F + F_half)/(R*eta) dominates 3*4096^2*2 bytes / (BW*eta_m)
    f = 2 * 4096**3
    t = roofline.run(table(4096**2, f, 0, 2 * 4096**2 * 2), EX, EFF, bandwidth=2e12, weight_bytes=2.0)
    compute = f / (100e12 * 0.5 * 4096 / (4096 + 64))  # M = 4096 rows reach 4096/4160 of eta
    memory = 3 * 4096**2 * 2 / (2e12 * 0.8)
    assert float(t.compute) == pytest.approx(compute)
    assert float(t.memory) == pytest.approx(memory)
    assert float(t.total) == pytest.approx(compute + 5e-6)
    assert roofline.bottleneck(t) == "compute"


def test_memory_bound_gemv_repeated_over_layers():
    # batch-1 decode of a 4096x4096 layer, 32 layers: weights dominate
    w = 4096 * 4096
    t = roofline.run(table(w, 2 * w, 0, 2 * 4096 * 2, kernels=2, repeat=32), EX, EFF, bandwidth=2e12,
                     weight_bytes=2.0)
    per_layer = (w * 2 + 2 * 4096 * 2) / (2e12 * 0.8)
    assert float(t.total) == pytest.approx(32 * (per_layer + 2 * 5e-6))
    assert roofline.bottleneck(t) == "memory"


def test_launch_overhead_dominates_tiny_kernels():
    t = roofline.run(table(0, 0, 1e3, 1e3, kernels=50), EX, EFF, bandwidth=2e12, weight_bytes=2.0)
    assert roofline.bottleneck(t) == "overhead"
    assert float(t.overhead) == pytest.approx(50 * 5e-6)


def test_dequantization_adds_vector_work_inside_the_gemm():
    ex = Execution(compute="fp16", tensor_rate=100e12, vector_rate=10e12, stored="int4", weight_bytes=0.5,
                   act_bytes=2.0, kv_bytes=2.0, dequant=True, notes=())
    w = 1e6
    t = roofline.run(table(w, 0.0, 0.0, 0.0), ex, EFF, bandwidth=2e12, weight_bytes=0.5)
    assert float(t.compute) == pytest.approx(2 * w / (10e12 * 0.25))


def test_two_four_sparsity_doubles_weight_gemm_rate_and_halves_bytes():
    ex = EX
    assert roofline.weight_bytes_per_element(ex, True, 0.5) == pytest.approx(2 * 0.5 + 1 / 8)
    f = 2 * 8192**3
    dense = roofline.run(table(8192**2, f, 0, 0), ex, EFF, bandwidth=2e12, weight_bytes=2.0)
    sparse = roofline.run(table(8192**2, f, 0, 0), ex, EFF, bandwidth=2e12, weight_bytes=1.125, tensor_speedup=2)
    assert float(sparse.compute) == pytest.approx(float(dense.compute) / 2)


def test_unstructured_sparsity_only_compresses_when_smaller():
    assert roofline.weight_bytes_per_element(EX, False, 0.9) == pytest.approx(0.1 * 2 + 1 / 8)
    assert roofline.weight_bytes_per_element(EX, False, 0.01) == 2.0


def test_columns_match_scalars():
    cols = roofline.run(roofline.OpTable(("op",), np.array([1.0]), np.array([[1e6, 2e6]]),
                                         np.array([[1e9, 4e9]]), np.array([[4096.0, 4096.0]]), np.zeros((1, 2)),
                                         np.array([[1e6, 1e6]]), np.array([1.0])),
                        EX, EFF, bandwidth=2e12, weight_bytes=2.0)
    one = roofline.run(table(2e6, 4e9, 0, 1e6), EX, EFF, bandwidth=2e12, weight_bytes=2.0)
    assert cols.total[1] == pytest.approx(float(one.total))


@pytest.mark.parametrize("compute,dequant", [("fp32", False), ("fp16", True)])
def test_no_tile_penalty_off_tensor_cores_or_in_weight_only_kernels(compute, dequant):
    # a batch-1 GEMV (M = 1): fp32 CUDA-core math and W4A16 kernels pay F / (R * eta), no (1 + M_1/2 / M)
    ex = Execution(compute=compute, tensor_rate=100e12, vector_rate=10e12, stored="fp16", weight_bytes=2.0,
                   act_bytes=2.0, kv_bytes=2.0, dequant=dequant, notes=())
    f = 2 * 4096**2
    t = roofline.run(table(0, f, 0, 0, rows=1.0), ex, EFF, bandwidth=2e12, weight_bytes=2.0)
    assert float(t.compute) == pytest.approx(f / (100e12 * 0.5))
    tensor = roofline.run(table(0, f, 0, 0, rows=1.0), EX, EFF, bandwidth=2e12, weight_bytes=2.0)
    assert float(tensor.compute) == pytest.approx(f * (1 + 64) / (100e12 * 0.5))  # fp16 tensor cores at M = 1


def test_tensor_share_scales_the_matrix_rate_only():
    from dataclasses import replace
    f = 2 * 4096**3
    op = table(4096**2, f, 1e9, 2 * 4096**2 * 2)
    full = roofline.run(op, EX, EFF, bandwidth=2e12, weight_bytes=2.0)
    share = roofline.run(op, replace(EX, tensor_share=0.8), EFF, bandwidth=2e12, weight_bytes=2.0)
    tensor = f / (100e12 * 0.5 * 4096 / (4096 + 64))
    # the GEMM's tensor term runs at 0.8 of the rate; its vector FLOP (1e9 at 10e12 x 0.25) do not change
    assert float(share.compute) - float(full.compute) == pytest.approx(tensor / 0.8 - tensor)
