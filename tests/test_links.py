"""Tensor parallelism on every accelerator deployed that way: the link a group of n really has
(links.toml), against arithmetic written out here."""
import pytest

import dse
from dse.catalog import registry
from dse.modes.setup import scale_up_link, tp_link

GB = 1e9
L, H = 32, 4096  # Llama-3-8B layers and hidden size


def dev(name):
    return registry("hardware").get(name, "hardware")


@pytest.mark.parametrize("name,tp,per_direction", [
    ("l40s", 2, 64 * GB / 2), ("l40s", 8, 64 * GB / 2), ("l4", 4, 64 * GB / 2),  # PCIe Gen4 x16 via the host
    ("mi300x", 2, 1 * 64 * GB), ("mi300x", 4, 3 * 64 * GB), ("mi300x", 8, 7 * 64 * GB),  # (n-1) x 64 GB/s
    ("mi325x", 4, 3 * 64 * GB), ("gaudi2", 8, 7 * 37.5 * GB), ("gaudi3", 2, 75 * GB),  # 3 RoCE ports per peer
    ("a100-pcie-80gb", 2, 600 * GB / 2), ("a100-pcie-80gb", 4, 64 * GB / 2),  # bridge pair, then PCIe
    ("h100-nvl", 2, 600 * GB / 2), ("h100-pcie", 8, 128 * GB / 2), ("h200-nvl", 4, 900 * GB / 2),
    ("tpu-v5e", 8, 400 * GB / 2), ("tpu-v5p", 4, 1200 * GB / 2),
    ("mi250x", 2, 4 * 50 * GB), ("mi250x", 4, 1 * 50 * GB), ("mi250x", 8, 1 * 50 * GB)])  # slowest ring hop
def test_group_bandwidth(name, tp, per_direction):
    bw, latency, largest = tp_link(dev(name), float(tp))
    assert float(bw) == pytest.approx(per_direction, rel=1e-12)
    assert largest is None if name.startswith("tpu") else tp <= largest  # ICI spans hosts: no server bound


def test_node_devices_keep_their_fabric_and_pcie_cards_gain_one():
    assert scale_up_link(dev("h100-sxm"))[0] == pytest.approx(450 * GB)  # NVLink 4, per direction
    assert scale_up_link(dev("l40s"))[0] == pytest.approx(32 * GB)
    assert scale_up_link(dev("tpu-v4")) == (None, 0.0, 0.0)  # nothing says how they connect
    assert scale_up_link(dev("mi250x"))[0] == pytest.approx(50 * GB)  # an 8-GCD ring: one IF link per direction


def test_l40s_tp_all_reduce_over_pcie_by_hand():
    b = 16
    m = dse.evaluate(workload="llama-3-8b", hardware="l40s", mode="serve", scheduler="static", tp=4, batch=b,
                     input_len=512, output_len=128)
    # two ring all-reduces per layer of b tokens x hidden in fp16: 2(n-1)/n of the buffer at 32 GB/s, after
    # NCCL's 6.6 us fixed cost and 2(n-1) PCIe steps of 1.0 us (tuning.cc Ring/LL)
    ring = 6.6e-6 + 2 * 3 * 1.0e-6 + 2 * 3 / 4 * b * H * 2 / (32 * GB)
    assert m["communication_time_s"] == pytest.approx(2 * L * ring, rel=1e-12)


def test_l40s_tp2_all_reduce_of_8_kib_pays_nccl_pcie_latency():
    """NCCL's model over PCIe (tuning.cc, NCCL 2.30.7): 6.6 us once + 2 x 1.0 us steps + bytes over 32 GB/s."""
    from dse.models.communication import ring_allreduce_time

    bw, latency, _ = tp_link(dev("l40s"), 2.0)
    base = scale_up_link(dev("l40s"))[2]
    assert ring_allreduce_time(8192, 2, bw, latency, base) == pytest.approx(
        6.6e-6 + 2 * 1.0e-6 + 2 * 1 / 2 * 8192 / (32 * GB), rel=1e-12)


@pytest.mark.parametrize("name,tp,step", [
    ("a100-pcie-80gb", 2, 0.6e-6), ("a100-pcie-80gb", 4, 1.0e-6),  # NVLink bridge pair, then PCIe (tuning.cc)
    ("h200-nvl", 4, 0.6e-6), ("t4", 8, 1.0e-6), ("mi325x", 8, 1.38e-6),  # MI300X's rccl-tests figure
    ("mi250x", 8, 0.0), ("gaudi2", 8, 0.0), ("tpu-v5e", 8, 0.0)])  # nothing sourced: 0, a lower bound
def test_group_latency_per_step(name, tp, step):
    assert float(tp_link(dev(name), float(tp))[1]) == pytest.approx(step, rel=1e-12)


def test_a100_sxm_40gb_pays_nvlink3_as_the_80gb_node_does():
    """HGX A100 40 GB is the same NVSwitch as the DGX A100 node (links.toml names nvlink3): a TP8 decode
    step all-reduces one token's hidden state twice per layer, 6.6 us + 14 x 1.94 us + 2 x 7/8 of 8 KiB
    at 300 GB/s each (fabrics.toml nvlink3)."""
    run = dict(workload="llama-2-7b", mode="serve", scheduler="static", tp=8, batch=1, input_len=128, output_len=128)
    forty, eighty = (dse.evaluate(hardware=h, **run) for h in ("a100-sxm-40gb", "a100-sxm-80gb"))
    per_token = 2 * L * (6.6e-6 + 14 * 1.94e-6 + 2 * 7 / 8 * H * 2 / (300 * GB))
    assert forty["communication_time_s"] == pytest.approx(per_token, rel=1e-12)
    assert eighty["communication_time_s"] == pytest.approx(per_token, rel=1e-12)


@pytest.mark.parametrize("name,tp", [("l40s", 4), ("mi300x", 2), ("l4", 8), ("gaudi3", 8), ("a100-pcie-80gb", 2)])
def test_tp_is_accepted_and_shortens_the_step(name, tp):
    one = dse.evaluate(workload="llama-3-8b", hardware=name, mode="serve", batch=32, input_len=512, output_len=128)
    many = dse.evaluate(workload="llama-3-8b", hardware=name, mode="serve", batch=32, input_len=512, output_len=128,
                        tp=tp)
    assert many["gpus"] == tp and many["itl_s"] < one["itl_s"]


@pytest.mark.parametrize("tp,links", [(2, 4), (8, 1)])
def test_mi250x_tp_all_reduce_by_hand(tp, links):
    """A GCD pair runs over its package's 4 Infinity Fabric links, an 8-GCD ring at the pace of its
    single-link hops between packages: 50 GB/s per link per direction (AMD ROCm MI250 docs)."""
    b = 16
    m = dse.evaluate(workload="llama-3-8b", hardware="mi250x", mode="serve", scheduler="static", tp=tp, batch=b,
                     input_len=512, output_len=128)
    # two ring all-reduces per layer of b tokens x hidden in fp16, no published latency (alpha = 0)
    ring = 2 * (tp - 1) / tp * b * H * 2 / (links * 50 * GB)
    assert m["communication_time_s"] == pytest.approx(2 * L * ring, rel=1e-12)


def test_mi250x_tp_beyond_the_node_is_refused():
    with pytest.raises(dse.UserInputError, match="at most 8: the largest group of mi250x"):
        dse.evaluate(workload="llama-3-8b", hardware="mi250x", mode="serve", tp=16, gpus_per_node=16)


@pytest.mark.parametrize("table", [{}, {"2": "200"}, {"1": None}, {"16": None}, {"2": None}])
def test_ring_table_needs_sourced_sizes_up_to_the_server(table):
    from dse.catalog.loader import _ring_table
    from dse.errors import CatalogFileError

    cited = {"value": 200, "unit": "GB/s", "source": "s", "date": "2025"}
    rows = {k: cited if v is None else v for k, v in table.items()}
    assert _ring_table({"ring_bandwidth": {"2": cited, "8": cited}}, 8, "t") == ((2, 200 * GB), (8, 200 * GB))
    with pytest.raises(CatalogFileError):
        _ring_table({"ring_bandwidth": rows}, 8, "t")


def test_training_tp_group_gets_its_own_link():
    """Train mode gives a TP group of consecutive GCDs the link serve gives it: the sequence-parallel
    all-gathers and reduce-scatters move (n-1)/n of the same buffer, over 4 links for a pair and over
    one link per direction for 8 GCDs, so TP8 traffic takes (7/8 / 50) / (1/2 / 200) = 7x TP2's."""
    def tp_comm(tp):
        return dse.evaluate(workload="llama-3-8b", hardware="mi250x", mode="train", tp=tp, gpus=tp, batch=4,
                            micro_batch=4, seq_len=2048)["tp_comm_time_s"]
    assert tp_comm(8) / tp_comm(2) == pytest.approx((7 / 8 / 50) / (1 / 2 / 200), rel=1e-12)


@pytest.mark.parametrize("scheduler", ["static", "continuous"])
def test_bridge_latency_per_group_in_a_population(scheduler):
    """A population mixing TP2 (within the NVLink bridge, 0.6 us steps) and TP4 (over PCIe, 1.0 us) gives
    each point the latency of its own group, as one point at a time does: batch 1, 8 KiB per all-reduce,
    the bridge's 300 GB/s and PCIe Gen4's 32 GB/s per direction."""
    pts = [dict(workload="llama-3-8b", hardware="a100-pcie-80gb", mode="serve", scheduler=scheduler, tp=tp, batch=1,
                input_len=512, output_len=128) for tp in (2, 4)]
    got = dse.evaluate_many(pts)["communication_time_s"]
    nbytes = H * 2
    tp2 = 6.6e-6 + 2 * 0.6e-6 + 2 * 1 / 2 * nbytes / (300 * GB)
    tp4 = 6.6e-6 + 6 * 1.0e-6 + 2 * 3 / 4 * nbytes / (32 * GB)
    assert list(got) == pytest.approx([2 * L * tp2, 2 * L * tp4], rel=1e-12)


# --- training over the links a group really has ---------------------------------------------------------

ETA, INTERFERENCE = 0.70, 0.3  # calibrated collective efficiency and overlap interference (dse.models.calibration)
LLAMA8B = dict(workload="llama-3-8b", mode="train", precision="bf16")


def test_h200_nvl_bridges_are_joined_by_nothing_in_the_catalog():
    """links.toml: H200 NVL cards sit in 4-way NVLink bridges (900 GB/s per GPU, 450 a direction) and
    accelerators.toml gives the card no PCIe host link, so nothing joins two bridges: a group of 8 has
    no bandwidth (None, never 0 that would read as free), the largest group is one bridge."""
    assert tp_link(dev("h200-nvl"), 8.0)[0] is None
    bw, _, largest = tp_link(dev("h200-nvl"), None)
    assert (float(bw), largest) == (900 * GB / 2, 4)
    assert scale_up_link(dev("h200-nvl"))[0] == 900 * GB / 2


def test_h200_nvl_training_past_one_bridge_is_refused():
    """The reviewer's repro: 8 H200 NVL trained with free communication (dp_comm_time_s 0.0)."""
    with pytest.raises(dse.UserInputError) as info:
        dse.evaluate(**LLAMA8B, hardware="h200-nvl", gpus=8, batch=64, micro_batch=1, seq_len=4096, zero=1)
    msg = str(info.value)
    assert msg.startswith("gpus = 8 is not allowed: at most 4 in one node") and "no PCIe host link" in msg
    assert "\n" not in msg


def test_h200_nvl_zero3_inside_one_bridge_by_hand():
    """ZeRO-3 over 4 bridged H200 NVL: per micro-batch, gather the 2 B weights twice and reduce-scatter
    the gradients, 3 rings of 3/4 of the weights at 450 GB/s x 0.70, each NCCL's 6.6 us fixed cost and 3
    NVLink steps of 0.6 us (links.toml [collective_latency]); hidden under the compute but for 0.3 of it
    (interference)."""
    w = registry("workloads").get("llama-3-8b", "w")
    from dse.models import transformer
    params = transformer.parameters(w)
    m = dse.evaluate(**LLAMA8B, hardware="h200-nvl", gpus=4, batch=8, micro_batch=1, seq_len=4096, zero=3)
    traffic = 2 * 3 * (3 / 4 * params * 2 / (450 * GB * ETA) + 6.6e-6 + 3 * 0.6e-6)  # 2 micro-batches per step
    assert traffic < m["compute_time_s"]
    assert m["dp_comm_time_s"] == pytest.approx(INTERFERENCE * traffic, rel=1e-9)


def test_mesh_data_parallel_pair_uses_its_one_peer_link_by_hand():
    """In MI300X's full mesh two data-parallel GPUs share one Infinity Fabric link, 64 GB/s a direction,
    not the 7 links (448 GB/s) of the whole server: ZeRO-3 over 2 ranks moves 3 rings of 1/2 of the
    weights per micro-batch at 64 GB/s x 0.70, one 1.38 us step each (fabrics.toml infinity-fabric);
    communication-bound, so what does not fit under the compute is exposed, and 0.3 of what does."""
    w = registry("workloads").get("llama-3-8b", "w")
    from dse.models import transformer
    params = transformer.parameters(w)
    m = dse.evaluate(**LLAMA8B, hardware="mi300x", gpus=2, batch=2, micro_batch=1, seq_len=1024, zero=3)
    traffic = 3 * (1 / 2 * params * 2 / (64 * GB * ETA) + 1.38e-6)
    window = m["compute_time_s"]
    assert traffic > window
    assert m["dp_comm_time_s"] == pytest.approx(traffic - window + INTERFERENCE * window, rel=1e-9)


def test_consecutive_data_parallel_pair_uses_its_bridge_by_hand():
    """With tp = 1 a data-parallel pair is two neighbouring GPUs: on A100 PCIe they share an NVLink
    bridge, 600 GB/s both ways = 300 GB/s a direction, not the server's PCIe (32 GB/s). ZeRO-3 moves 3
    rings of 1/2 of the weights per micro-batch at 300 GB/s x 0.70, each NCCL's 6.6 us fixed cost and
    one NVLink step of 0.6 us, hidden under the compute but for 0.3 of it."""
    w = registry("workloads").get("llama-3-8b", "w")
    from dse.models import transformer
    params = transformer.parameters(w)
    m = dse.evaluate(**LLAMA8B, hardware="a100-pcie-80gb", gpus=2, batch=2, micro_batch=1, seq_len=1024, zero=3)
    traffic = 3 * (1 / 2 * params * 2 / (300 * GB * ETA) + 6.6e-6 + 0.6e-6)
    assert traffic < m["compute_time_s"]
    assert m["dp_comm_time_s"] == pytest.approx(INTERFERENCE * traffic, rel=1e-9)


def test_mesh_pipeline_send_uses_one_peer_link_by_hand():
    """A pipeline send between two MI300X crosses the one link joining them (64 GB/s a direction):
    2 x (micro-batches + stages - 1) sends of a [seq x hidden] bf16 activation, each a 1.38 us step."""
    m = dse.evaluate(**LLAMA8B, hardware="mi300x", gpus=2, pp=2, batch=4, micro_batch=1, seq_len=4096)
    sends = 2 * (4 + 2 - 1)
    assert m["pp_comm_time_s"] == pytest.approx(sends * (4096 * H * 2 / (64 * GB * ETA) + 1.38e-6), rel=1e-9)


def test_training_node_larger_than_the_server_is_refused():
    """Serve refuses tp past links.toml's server; train refused nothing: a 16-GPU MI300X "node" gave a
    TP16 group a 15-peer mesh (960 GB/s) that no MI300X platform has."""
    with pytest.raises(dse.UserInputError) as info:
        dse.evaluate(workload="llama-2-7b", hardware="mi300x", mode="train", tp=16, gpus=16, gpus_per_node=16,
                     batch=16)
    assert str(info.value).startswith("gpus_per_node = 16 is not allowed: at most 8 in one node: the largest "
                                      "group of mi300x that one server's links join (links.toml)")


def test_ici_groups_span_hosts():
    """TPU v5p's links.toml `gpus` is 4 chips a host, but its ICI torus joins hosts: 8 chips train, and
    serve a tensor-parallel group of 8, as train and serve agree on what a group may span."""
    assert dse.evaluate(**LLAMA8B, hardware="tpu-v5p", gpus=8, batch=8, micro_batch=1, seq_len=2048)["gpus"] == 8
    served = dse.evaluate(workload="llama-3-8b", hardware="tpu-v5p", mode="serve", tp=8, batch=8)
    assert served["gpus"] == 8 and served["communication_time_s"] > 0
