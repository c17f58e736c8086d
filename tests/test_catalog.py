"""The shipped catalog: coverage, provenance on every number, and architecture-derived sizes."""
import re

import pytest

import dse
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


# --- economics assumptions, rental prices, die areas, TPU v2/v3, nodes, regions -------------------------------------

def test_economics_file_loads_with_source_and_date_on_every_key():
    from dse.catalog import economics

    assumptions = economics()
    assert {"hardware_life", "facility_cost", "gpu_failure_rate", "node_failure_rate",
            "checkpoint_bandwidth", "embodied_per_die_area"} <= set(assumptions)
    for key, q in assumptions.items():
        assert q.source.strip() and DATE.match(q.date), key
        assert q.si >= 0, key


def test_economics_values_from_their_sources():
    from dse.catalog import economics

    a = economics()
    assert a["hardware_life"].si == pytest.approx(6 * 365.25 * 86400)      # Microsoft / Alphabet 10-K: 6 years
    assert a["facility_cost"].value == pytest.approx(184.06)               # CBRE H2 2024, USD per kW per month
    # Llama 3 Table 5: 268 GPU-attributed interruptions over 16,384 GPUs x 54 days
    assert a["gpu_failure_rate"].si * 3600 == pytest.approx(268 / (16384 * 54 * 24), rel=1e-3)
    assert a["node_failure_rate"].si * 3600 == pytest.approx(88 / (2048 * 54 * 24), rel=1e-3)
    assert a["checkpoint_bandwidth"].si == pytest.approx(2e12 / 2048, rel=1e-3)  # Tectonic 2 TB/s over 2,048 nodes
    assert a["embodied_per_die_area"].si == pytest.approx(1.6e4)           # 1.6 kg/cm^2 in kg/m^2
    assert a["embodied_per_memory_gb"].si == pytest.approx(0.4 / 1e9)      # kg per byte, not per bit


def test_misspelt_economics_key_is_refused():
    from dse.catalog.loader import _assumptions
    from dse.errors import UnknownNameError

    good = {"value": 6, "unit": "year", "source": "s", "date": "2025"}
    assert _assumptions({"assumptions": {"hardware_life": good}}, "t")["hardware_life"].value == 6
    with pytest.raises(UnknownNameError):
        _assumptions({"assumptions": {"hardware_lifetime": good}}, "t")


def test_economics_key_needs_its_dimension_source_and_date():
    from dse.catalog.loader import _assumptions
    from dse.errors import CatalogFileError

    with pytest.raises(CatalogFileError):
        _assumptions({"assumptions": {"hardware_life": {"value": 6, "unit": "W", "source": "s", "date": "2025"}}}, "t")
    with pytest.raises(CatalogFileError):
        _assumptions({"assumptions": {"hardware_life": {"value": 6, "unit": "year", "date": "2025"}}}, "t")


def test_cloud_price_is_replaced_by_rental_classes(hw):
    for name in ("h100", "a100", "a100-sxm-40gb"):
        spec = hw(name).spec
        assert {"rent_on_demand", "rent_gpu_cloud"} <= set(spec), name
        assert "rent_reserved" in spec, name
    for a in registry("hardware"):
        assert "cloud_price" not in a.spec
    assert hw("h100").get("rent_on_demand") * 3600 == pytest.approx(55.04 / 8)   # AWS p5.48xlarge / 8
    assert hw("a100").spec["rent_reserved"].value == pytest.approx(3.53)          # Azure ND96amsr A100 v4, 1 year


def test_die_areas(hw):
    assert hw("a100").get("die_area") == pytest.approx(826e-6)   # GA100 826 mm^2
    assert hw("h100").get("die_area") == pytest.approx(814e-6)   # GH100 814 mm^2
    assert hw("v100").get("die_area") == pytest.approx(815e-6)   # GV100 815 mm^2


def test_tpu_v2_v3_for_patterson_calibration(hw):
    v2, v3 = hw("tpu-v2"), hw("tpu-v3")
    assert v2.device_class == v3.device_class == "datacenter-accel"
    assert v2.get("tdp") == 280 and v3.get("tdp") == 450           # Patterson et al. 2021 Table 4
    assert v3.peak("bf16") == pytest.approx(123e12)                 # Cloud TPU v3 docs
    assert v3.memory_capacity == 32 * 2**30 and v3.memory_bandwidth == pytest.approx(900e9)
    assert v2.peak("bf16") > 0 and v2.memory_capacity == 16 * 2**30


def test_at_least_20_regions_have_their_own_electricity_price():
    priced = [r for r in registry("regions") if r.get("electricity_price")]
    assert len(priced) >= 20
    countries = {r.country for r in priced}
    assert {"US", "CA", "JP"} <= countries or {"US", "CA", "TW"} <= countries
    assert registry("regions").get("ca-quebec", "region").get("electricity_price")


def test_dgx_1v_node(hw):
    node = registry("nodes").get("dgx-1v", "node")
    assert node.accelerator == "v100-sxm2" and node.accelerators == 8
    assert node.get("system_power") == pytest.approx(3500)      # DGX-1 (V100) datasheet, 3,500 W max
    assert node.get("host_power") == pytest.approx(3500 - 8 * hw("v100").get("tdp"))
    assert node.get("purchase_price") == 149000                 # GTC 2017 launch price
    assert registry("fabrics").get(node.scale_up, "fabric").get("bandwidth") == pytest.approx(300e9)


def test_calibration_csvs_have_sources():
    import csv
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "bench" / "calibration"
    for name in ("power.csv", "training_runs.csv"):
        rows = list(csv.DictReader(open(root / name)))
        assert rows, name
        for row in rows:
            assert row["source"].strip() and row["verification"] in ("checked", "unchecked"), row["row_id"]
            float(row["value"])


@pytest.mark.parametrize("name, precision, dense, memory, bandwidth", [
    ("l40", "fp16", 181.05e12, 48 * 2**30, 864e9), ("h20", "fp8", 296e12, 96e9, 4.0e12),
    ("b300", "fp8", 4500e12, 288e9, 8e12), ("gb300", "bf16", 2250e12, 288e9, 8e12),
    ("mi355x", "fp8", 5000e12, 288e9, 8e12), ("tpu-v6e", "bf16", 918e12, 32e9, 1638e9),
    ("trainium2", "fp8", 1299e12, 96 * 2**30, 3e12), ("inferentia2", "bf16", 190e12, 32 * 2**30, 820 * 2**30)])
def test_added_accelerators_datasheet_numbers(hw, name, precision, dense, memory, bandwidth):
    device = hw(name)
    assert device.peak(precision) == pytest.approx(dense)
    assert device.memory_capacity == pytest.approx(memory) and device.memory_bandwidth == pytest.approx(bandwidth)


def test_mi250x_is_one_gcd_as_software_sees_it():
    # ROCm shows each of the package's two GCDs as a GPU with 64 GB of HBM2e: every figure is half the
    # package's 128 GiB, 3.2 TB/s, 383 TFLOP/s fp16 and 47.9 TFLOP/s vector fp32
    gcd = registry("hardware").get("mi250x", "hardware")
    assert gcd.memory_capacity == 64 * 2**30 and gcd.memory_bandwidth == pytest.approx(1.6e12)
    assert gcd.peak("fp16") == pytest.approx(383e12 / 2) and gcd.get("vector_fp32") == pytest.approx(47.9e12 / 2)
    # Llama-2-13B in fp16 (26 GB) fits one GCD; Llama-2-70B (138 GB) needs more than the 128 GiB package
    assert dse.evaluate(workload="llama-2-13b", hardware="mi250x", mode="serve", precision="fp16")["feasible"]
    assert not dse.evaluate(workload="llama-2-70b", hardware="mi250x", mode="serve", precision="fp16", gpus=2,
                            tp=2)["feasible"]
