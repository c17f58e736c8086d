"""The shipped catalog: coverage, provenance on every number, and architecture-derived sizes."""
import re

import pytest

from dse.catalog import registry
from dse.models import cnn, transformer

DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@pytest.mark.parametrize("kind, least", [("hardware", 25), ("workloads", 15), ("regions", 15),
                                         ("nodes", 5), ("fabrics", 10)])
def test_catalog_coverage(kind, least):
    assert len(registry(kind)) >= least


def _quantities(kind):
    for item in registry(kind):
        tables = [item.peaks, item.spec] if kind == "hardware" else [item.fields]
        for table in tables:
            yield from ((item.name, key, q) for key, q in table.items())


@pytest.mark.parametrize("kind", ["hardware", "regions", "nodes", "fabrics"])
def test_every_number_has_unit_source_and_date(kind):
    for name, key, q in _quantities(kind):
        assert q.source.strip() and DATE.match(q.date), (name, key)
        assert q.si >= 0 and (q.unit or key == "pue"), (name, key)


def test_required_devices_present(hw):
    for name in ("v100", "a100-sxm-40gb", "a100", "h100", "h100-pcie", "h200", "b200", "gb200", "l4", "l40s",
                 "t4", "mi250x", "mi300x", "mi325x", "tpu-v4", "tpu-v5e", "tpu-v5p", "gaudi2", "gaudi3",
                 "jetson-agx-orin", "nrf52840", "esp32-s3", "stm32h7"):
        hw(name)


def test_h100_datasheet_numbers(hw):
    h100 = hw("h100")
    assert h100.peak("bf16") == pytest.approx(989.5e12)  # dense half of the sparse 1979 TFLOP/s
    assert h100.peak("fp8") == pytest.approx(1979e12)
    assert h100.peak("int4") is None  # Hopper has no int4 tensor cores
    assert h100.memory_bandwidth == pytest.approx(3.35e12)
    assert h100.memory_capacity == 80 * 2**30


def test_every_region_has_its_own_price_source():
    priced = [r for r in registry("regions") if r.get("electricity_price")]
    assert len(priced) >= 15
    assert len({r.get("electricity_price") for r in priced}) >= 12  # not one global rate


def test_nodes_reference_known_accelerators_and_fabrics():
    hardware = {a.name for a in registry("hardware")}
    fabrics = {f.name for f in registry("fabrics")}
    for node in registry("nodes"):
        assert node.accelerator in hardware
        assert node.scale_up in fabrics and node.scale_out in fabrics


@pytest.mark.parametrize("name, published, tol", [
    ("llama-3-8b", 8.03e9, 0.005), ("llama-3-70b", 70.6e9, 0.005), ("llama-2-7b", 6.74e9, 0.005),
    ("llama-2-70b", 69.0e9, 0.005), ("gpt-3-175b", 175e9, 0.01), ("mixtral-8x7b", 46.7e9, 0.005),
    ("llama-3-405b", 405e9, 0.01), ("gpt-j-6b", 6.053e9, 0.005)])
def test_transformer_parameters_match_published_sizes(wl, name, published, tol):
    assert transformer.parameters(wl(name)) == pytest.approx(published, rel=tol)


def test_mixtral_active_parameters(wl):
    # 12.9B active per token (Jiang et al. 2024): the matmul parameters (LM head included) plus the
    # input embedding table
    w = wl("mixtral-8x7b")
    active = transformer.matmul_parameters_per_token(w) + w.vocab * w.hidden
    assert active == pytest.approx(12.9e9, rel=0.01)


@pytest.mark.parametrize("name, params, macs", [("resnet-50", 25.5e6, 4.09e9), ("mobilenet-v2", 3.47e6, 0.30e9),
                                                ("ds-cnn", 22.0e3, 2.66e6), ("vgg-16", 138.3e6, 15.5e9)])
def test_cnn_sizes_from_architecture(wl, name, params, macs):
    w = wl(name)
    assert cnn.parameters(w) == pytest.approx(params, rel=0.01)
    assert cnn.forward_flops(w) / 2 == pytest.approx(macs, rel=0.02)


def test_ds_cnn_layer_arithmetic_by_hand(wl):
    # 49x10 MFCC input, conv 64 @ 10x4 stride 2 -> 25x5x64; four DS blocks of 64; fc 12.
    conv1 = 25 * 5 * 64 * 10 * 4
    ds = 4 * (25 * 5 * 64 * 9 + 25 * 5 * 64 * 64)
    fc = 64 * 12
    pool = 25 * 5 * 64  # global average: one add per element
    assert cnn.forward_flops(wl("ds-cnn")) == 2 * (conv1 + ds + fc) + pool
