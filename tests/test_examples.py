"""Each reference-tutorial example answers its question; the numbers are checked by hand here."""
import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_every_example_prints_its_answer(name, capsys):
    load(name).main()
    assert len(capsys.readouterr().out.splitlines()) >= 5


def test_roofline_hello_world():
    a = load("roofline_hello_world").answer()
    assert a["batch1"]["bottleneck"] == "overhead"  # launches outweigh compute and memory at batch 1
    assert a["batch1"]["overhead_time_s"] > a["batch1"]["compute_time_s"] + a["batch1"]["memory_time_s"]
    assert a["sweep"][256]["bottleneck"] == "compute"
    assert a["ridges"]["h100"] == pytest.approx(989.5e12 / 3.35e12)
    assert a["highest_ridge"] == "h100" and a["fastest"] == {1: "h100", 256: "h100"}
    assert a["int8_batch1"]["arithmetic_intensity"] == pytest.approx(2 * a["batch1"]["arithmetic_intensity"])


def test_memory_wall():
    a = load("memory_wall").answer()
    assert a["memory_speedup_h100"] == pytest.approx(3.35 / 2.039)
    assert 1.3 < a["speedup_h100"] < 3.35 / 2.039
    assert a["a100"]["bottleneck"] == a["h100"]["bottleneck"] == "memory"
    assert a["crossover"]["a100"] is not None
    assert a["crossover"]["h100"] is None or a["crossover"]["h100"] > a["crossover"]["a100"]


def test_data_wall():
    a = load("data_wall").answer()
    assert a["batch_bytes"] == 256 * 224 * 224 * 3 * 2
    assert a["io_time_s"] == pytest.approx(77.07e6 / 3e9, rel=1e-3)
    for hw, m in a["rows"].items():
        assert m["accelerator_utilization"] == 1.0
        assert a["storage_wall"][hw] == pytest.approx(256 * 224 * 224 * 3 * 2 / m["accelerator_time_s"])
    for m in a["at_half_the_wall"].values():  # storage takes twice the compute time
        assert m["accelerator_utilization"] == pytest.approx(0.5)
        assert m["bottleneck"] == "data"


def test_cpu_workers():
    a = load("cpu_workers").answer()
    t = a["train_256"]
    assert t["cpu_transform_time_s"] == pytest.approx(256 * 500e3 / (8 * 250e6))
    assert t["storage_time_s"] == pytest.approx(256 * 500e3 / 3e9)
    assert t["accelerator_utilization"] == 1.0
    assert t["cpu_workers_needed"] == math.ceil(256 * 500e3 / (250e6 * t["accelerator_time_s"]))
    i = a["infer_256"]
    assert i["bottleneck"] == "data"
    assert i["accelerator_utilization"] == pytest.approx(i["accelerator_time_s"] / (256 * 500e3 / 2e9))
    assert a["self_check"] == pytest.approx(0.5714, abs=1e-4)


def test_serving_capacity():
    a = load("serving_capacity").answer()
    # 10% of the H100's 80 GiB is the runtime's reserve; the engine's library workspaces take 0.13 GiB of the rest
    capacity = 0.9 * 80 * 2**30 - 0.13 * 2**30
    weights = 8_030_261_248 * 2
    kv = 2 * 32 * 8 * 128 * 4096 * 2
    working = 4032 * (2 * 4096 + 2 * 1024 + 2 * 14336) * 2 + 128256 * 4  # one prompt's live tensors + logits
    assert a["kv_per_request"] == kv
    assert a["max_batch"] == (capacity - weights - working) // kv == 113
    assert a["at_max"]["feasible"] and not a["beyond"]["feasible"]
    assert a["at_max"]["kv_cache_bytes"] > 3.5 * a["at_max"]["weights_bytes"]  # 113 x 512 MiB vs 16.06 GB
    # fp8 halves the layers' weights and the KV cache; the embedding and LM head (2 x 128,256 x 4,096) stay
    # 16-bit, as do the prompt's activations (GEMM inputs are quantized inside the kernels)
    outside = 2 * 128_256 * 4_096 + 4_096
    fp8_weights = (8_030_261_248 - outside) * 1 + outside * 2
    assert a["by_precision"]["fp8"] == (capacity - fp8_weights - working) // (kv / 2) == 252
    assert a["all_prompts_in_one_pass"] == (capacity - weights) // (kv + working) == 71


def test_quantization():
    a = load("quantization").answer()
    assert a["saving_vs_fp32"] == pytest.approx(0.875) and a["saving_vs_fp16"] == pytest.approx(0.75)
    assert 1.5 < a["speedup_int4"] < 4.0
    assert "no native int4" in a["int4_fallback_note"]
    assert a["b200_int4"] is None
    assert a["accuracy"]


def test_tinyml():
    a = load("tinyml").answer()
    macs = 25 * 5 * 64 * 10 * 4 + 4 * (25 * 5 * 64 * 9 + 25 * 5 * 64 * 64) + 64 * 12
    assert a["macs"] == pytest.approx(macs + 25 * 5 * 64 / 2)  # plus the average pool's additions
    assert a["peak_bound_s"] == pytest.approx(2 * a["macs"] / 256e6)
    assert a["peak_bound_s"] < 0.030 < a["results"]["nrf52840"]["latency_s"]
    assert a["results"]["esp32-s3"]["latency_s"] < 0.030
    assert a["mobilenet"]["feasible"] is False


def test_carbon_geography():
    from dse.catalog import registry
    a = load("carbon_geography").answer()
    us, qc = (registry("regions").get(r, "t") for r in ("us-average", "ca-quebec"))
    f = a["fleet"]
    # same IT load in both places: operational carbon scales by PUE x grid intensity
    assert f["us-average"]["power_w"] == f["ca-quebec"]["power_w"]
    ratio = (qc.get("pue") * qc.get("grid_intensity")) / (us.get("pue") * us.get("grid_intensity"))
    assert f["ca-quebec"]["carbon_operational_kg"] / f["us-average"]["carbon_operational_kg"] == pytest.approx(ratio)
    assert f["us-average"]["overhead_share"] == pytest.approx(1 - 1 / us.get("pue"))
    assert f["us-average"]["carbon_embodied_kg"] == f["ca-quebec"]["carbon_embodied_kg"]
    # 256 GPUs near full activity draw ~1 kW each with their hosts: 30 days is ~190 MWh of IT energy
    it_mwh = f["us-average"]["power_w"] * 720 / 1e6
    assert 150 < it_mwh < 230
    assert 0.85 < a["saved_operational_share"] < 1


def test_serving_budget():
    a = load("serving_budget").answer()
    for _, r in a["best"].iterrows():
        per_gpu_year = r["tco_usd"] / r["fleet_gpus"]
        assert r["gpus_in_budget"] == math.floor(1e6 / per_gpu_year)
        tokens = r["tokens_per_s"] * 365 * 86400
        assert r["cost_per_mtok_usd"] == pytest.approx(r["tco_usd"] / (tokens / 1e6), rel=1e-9)
    assert (a["best_slo"]["itl_s"] <= 0.020).all()
    # the SLA only removes options: the cheapest under it costs at least the unconstrained cheapest
    assert a["best_slo"]["cost_per_mtok_usd"].min() >= a["best"]["cost_per_mtok_usd"].min()


def test_fleet_capstone():
    a = load("fleet_capstone").answer()
    best = a["best"]
    assert best is not None and best["tco_usd"] <= 5e6 and best["carbon_t"] <= 500
    assert best["tco_usd"] == pytest.approx(sum(p["tco_usd"] for p in best["parts"]))
    # 512k generated tokens/s need hundreds of H100s, not the tutorial's 35-50
    assert best["gpus"] > 200
    for d in a["designs"]:
        assert d["itl_s"] <= 0.050
        assert d["gpus"] == sum(p["fleet_gpus"] for p in d["parts"])


def test_parallelism_search():
    a = load("parallelism_search").answer()
    best, seed = a["best"], a["seed_layout"]
    assert (best.tp, best.pp, best.dp) == (4, 4, 4)  # TP inside the node, PP to fit, DP across nodes
    assert best.tp * best.pp * best.dp == 64 and best.feasible
    assert best.memory_per_gpu_bytes <= 80 * 2**30
    # the seed's TP=8 PP=2 DP=4 fits but pays more exposed TP traffic: per layer the same [s x h]
    # all-gathers, (t-1)/t of them per GPU, over half the GEMM work per GPU
    assert seed.feasible and seed.mfu < best.mfu
    assert seed.tp_comm_time_s / best.tp_comm_time_s == pytest.approx((7 / 8) / (3 / 4) * 2, rel=0.05)
    # with TP 1 or 2 and no context parallelism the 8k-token activations fit only when fully recomputed
    ranked = a["ranked"]
    assert set(ranked[(ranked["tp"] <= 2) & ranked["feasible"]]["recompute"]) == {"full"}
    assert a["best_with_cp"].cp > 1 and a["best_with_cp"].mfu >= best.mfu
    # with TP overlap each layer's all-gathers hide under its GEMMs, leaving the interference share
    # (0.3) of the traffic on both layouts, and the seed's layout comes within 3% of the best
    over_best, over_seed = a["overlapped"]
    assert over_best["tp_comm_time_s"] == pytest.approx(0.3 * best.tp_comm_time_s, rel=1e-6)
    assert over_seed["tp_comm_time_s"] == pytest.approx(0.3 * seed.tp_comm_time_s, rel=1e-6)
    assert 1.0 < over_best["tokens_per_s"] / over_seed["tokens_per_s"] < 1.03
