"""Parallel attention + MLP blocks (GPT-J, Falcon): one tensor-parallel all-reduce and one residual add
per layer, from the workload file's `parallel_block`."""
import dataclasses

import pytest

import dse
from dse.catalog import registry
from dse.errors import DSEError
from dse.models import transformer

FALCON = registry("workloads").get("falcon-180b", "w")  # 80 layers, h 14,848


def test_catalog_marks_gpt_j_and_falcon():
    assert FALCON.parallel_block and registry("workloads").get("gpt-j-6b", "w").parallel_block
    assert not registry("workloads").get("llama-3-70b", "w").parallel_block


def test_one_allreduce_per_layer():
    # 16 decode tokens over TP 8 at 450 GB/s per direction, 2 us a step, 6 us per all-reduce: one ring
    # all-reduce of 16 x h x 2 bytes per layer, where a sequential block pays two
    ring = 2 * 7 / 8 * 16 * 14848 * 2 / 450e9 + 2 * 7 * 2e-6 + 6e-6
    assert transformer.tp_allreduce_time(FALCON, 16.0, 8, 2.0, 450e9, 2e-6, 6e-6) == pytest.approx(80 * ring,
                                                                                                  rel=1e-12)
    sequential = dataclasses.replace(FALCON, parallel_block=False)
    assert transformer.tp_allreduce_time(sequential, 16.0, 8, 2.0, 450e9, 2e-6, 6e-6) == pytest.approx(160 * ring,
                                                                                                       rel=1e-12)


def test_one_residual_add_per_layer():
    table = transformer.pass_ops(FALCON, 4.0, 1.0, 100.0, 1.0, 2.0, 2.0)
    i = table.names.index("residual")
    # one kernel reading the input and both branches' outputs and writing the sum: 4 x h x 2 bytes a token
    assert table.kernels[i] == 1 and table.act_bytes[i] == pytest.approx(4 * 4 * 14848 * 2, rel=1e-12)
    assert table.flops_vector[i] == pytest.approx(4 * 2 * 14848, rel=1e-12)


def test_serving_decode_step_pays_one_allreduce_per_layer():
    # Falcon-180B in fp8 at TP 8 on an H100 node (NVLink 450 GB/s per direction, 0.90 us a step, 6.6 us per
    # all-reduce): a decode step of 16 sequences all-reduces 16 x 14,848 activations in 16 bits once per layer
    m = dse.evaluate(workload="falcon-180b", hardware="h100", mode="serve", precision="fp8", scheduler="static",
                     batch=16, input_len=512, output_len=64, gpus=8, tp=8)
    ring = 2 * 7 / 8 * 16 * 14848 * 2 / 450e9 + 2 * 7 * 0.90e-6 + 6.6e-6
    assert m["communication_time_s"] == pytest.approx(80 * ring, rel=1e-9)


def test_workload_file_field(tmp_path):
    text = ('name = "pb"\nfamily = "transformer"\nlayers = 2\nhidden = 256\nheads = 4\nvocab = 1000\n'
            'parallel_block = {}\n')
    good = tmp_path / "good.toml"
    good.write_text(text.format("true"))
    assert dse.evaluate(workload_file=good, hardware="h100", mode="serve", batch=1)["feasible"]
    bad = tmp_path / "bad.toml"
    bad.write_text(text.format('"yes"'))
    with pytest.raises(DSEError, match="parallel_block"):
        dse.evaluate(workload_file=bad, hardware="h100", mode="serve", batch=1)
