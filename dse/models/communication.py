"""Collective communication in the alpha-beta model (Hockney 1994; Thakur, Rabenseifner & Gropp 2005,
"Optimization of Collective Communication Operations in MPICH"), flat and hierarchical, with a fixed
cost per collective as NCCL models it.

A message of n bytes over a link costs alpha + n / beta. For p ranks (Thakur et al. 2005, section 4;
Patarasuk & Yuan 2009 for the ring all-reduce; Sanders, Speck & Traeff 2009 for the double binary tree
NCCL uses), plus alpha0 once per collective of more than one rank:

    ring all-reduce      alpha0 + 2(p-1)/p * n / beta + 2(p-1) alpha
    tree all-reduce      alpha0 + 2(p-1)/p * n / beta + 2 log2(p) alpha   (pipelined double binary tree)
    all-gather           alpha0 + (p-1)/p * n / beta + (p-1) alpha        (n: the gathered size)
    reduce-scatter       alpha0 + (p-1)/p * n / beta + (p-1) alpha        (n: the size before scattering)
    all-to-all           alpha0 + (p-1)/p * n / beta + (p-1) alpha        (n: what one rank sends in all)
    point-to-point       alpha0 + n / beta + alpha

The fixed cost alpha0 (`base`, s) is NCCL's own latency model (src/graph/tuning.cc, ncclTopoTuneModel,
NCCL 2.30.7): the time of a collective is baseLatencies[algorithm][protocol] (6.6 us for Ring/LL, once
per collective: kernel start and the ranks' synchronisation) plus nsteps x hwLatencies[link][algorithm]
[protocol] (0.6 us per NVLink step for Ring/LL, 1.0 over PCIe), nsteps = 2(p-1) for an all-reduce and
p-1 for an all-gather or reduce-scatter. A point-to-point send is one NCCL kernel too, so it pays the
fixed cost once (tuning.cc models no send/recv latency; a 1 KB sendrecv over H800 NVLink measures
3.7 us, NVIDIA/nccl issue #1984, against 6.6 + 0.9 us here, so for sends this is an upper bound); an
all-to-all is one grouped launch of p-1 sends, so it pays it once as well.
`bandwidth` is one direction of one rank's link (B/s) and `latency` the per-step alpha (s). Every
function takes numbers or numpy columns and gives zero for one rank.

Hierarchy (NCCL's intra-node then inter-node scheme; Jeaugey 2019, "Massively Scale Your Deep Learning
Training with NCCL 2.4"): a group of p ranks of which k share a node runs the collective as a
reduce-scatter inside the node over the scale-up link, the collective over p/k nodes on 1/k of the
data, each GPU over its own share of the node's NICs (k rings in parallel), and an all-gather inside
the node. k = p is a group inside one node, k = 1 one GPU per node. The whole is one NCCL collective,
so it pays the fixed cost once (tuning.cc adds baseLatencies once and the intra- and inter-node steps
after it).

Serving engines do the tensor-parallel all-reduces of a step with their own kernel instead
(`engine_allreduce_time`): vLLM's custom all-reduce, each rank reading its peers' buffers over NVLink
peer-to-peer inside the step's CUDA graph, one kernel with one flag barrier, no ring steps.
"""
from __future__ import annotations

import numpy as np


def fixed_cost(ranks, base):
    """The per-collective cost alpha0, paid by any group of more than one rank (NCCL tuning.cc:
    latencies[coll][a][p] starts at baseLatencies[a][p])."""
    return np.where(np.asarray(ranks) > 1, base, 0.0)


def ring_allreduce_time(nbytes, ranks, bandwidth, latency, base):
    """Ring all-reduce: 2(n-1)/n of the buffer crosses each link in 2(n-1) steps (Patarasuk & Yuan
    2009, "Bandwidth optimal all-reduce algorithms"), after the fixed cost. Zero for a single rank."""
    return 2.0 * (ranks - 1) / ranks * nbytes / bandwidth + 2.0 * (ranks - 1) * latency + fixed_cost(ranks, base)


def tree_allreduce_time(nbytes, ranks, bandwidth, latency, base):
    """Pipelined double-binary-tree all-reduce (Sanders et al. 2009; NCCL 2.4): the ring's bandwidth
    term with a latency term logarithmic in the ranks, after the fixed cost."""
    return 2.0 * (ranks - 1) / ranks * nbytes / bandwidth + 2.0 * np.log2(ranks) * latency + fixed_cost(ranks, base)


def allreduce_time(nbytes, ranks, bandwidth, latency, base):
    """The faster of ring and tree, as NCCL's tuner picks per message size."""
    return np.minimum(ring_allreduce_time(nbytes, ranks, bandwidth, latency, base),
                      tree_allreduce_time(nbytes, ranks, bandwidth, latency, base))


def allgather_time(nbytes, ranks, bandwidth, latency, base):
    """Ring all-gather of a buffer of `nbytes` in all (each rank holds 1/ranks of it)."""
    return (ranks - 1) / ranks * nbytes / bandwidth + (ranks - 1) * latency + fixed_cost(ranks, base)


def reduce_scatter_time(nbytes, ranks, bandwidth, latency, base):
    """Ring reduce-scatter of a buffer of `nbytes` per rank; each rank ends with 1/ranks, reduced."""
    return allgather_time(nbytes, ranks, bandwidth, latency, base)


def alltoall_time(nbytes, ranks, bandwidth, latency, base):
    """All-to-all in which each rank sends `nbytes` in all, 1/ranks of it to each rank (its own
    share stays): (ranks-1)/ranks of it crosses its link, one message per peer, in one launch."""
    return (ranks - 1) / ranks * nbytes / bandwidth + (ranks - 1) * latency + fixed_cost(ranks, base)


def p2p_time(nbytes, bandwidth, latency, base):
    """One point-to-point message: one step, one kernel."""
    return nbytes / bandwidth + latency + base


# vLLM's custom all-reduce (csrc/custom_all_reduce.cuh, vllm/distributed/device_communicators/custom_all_reduce.py,
# vllm-project/vllm commits c9eabec and 00d618a): world sizes it supports, the largest message it takes
# (CustomAllreduce max_size default 8192 * 1024 bytes; `should_custom_ar` takes inp_size < max_size), and the
# one-shot limits of its dispatch (2 ranks: always one-shot; up to 4: below 512 KiB; up to 8: below 256 KiB).
ENGINE_AR_RANKS = (2, 4, 6, 8)
ENGINE_AR_MAX_BYTES = 8192 * 1024
ENGINE_AR_ONE_SHOT_BYTES = {4: 512 * 1024, 8: 256 * 1024}


def engine_allreduce_time(nbytes, ranks, bandwidth, latency, base, engine_base, engine_bandwidth):
    """The serving engine's tensor-parallel all-reduce: vLLM's custom all-reduce where it runs, NCCL's ring
    elsewhere (`ring_allreduce_time` over `bandwidth`, with `latency` and `base`).

    It runs (vllm/distributed/device_communicators/custom_all_reduce.py, CustomAllreduce and
    `should_custom_ar`) on 2, 4, 6 or 8 ranks of one node whose links are fully peer-to-peer (NVLink),
    for messages under ENGINE_AR_MAX_BYTES; here, wherever the scale-up fabric has its measured fixed
    cost `engine_base` (s) and peer-read rate `engine_bandwidth` (B/s, one direction of one rank;
    fabrics.toml `engine_allreduce_base` and `engine_allreduce_bandwidth`; 0 means not measured, so NCCL).
    Data movement (csrc/custom_all_reduce.cuh): the one-shot kernel (cross_device_reduce_1stage) has
    every rank read the whole buffer of each of its p-1 peers and sum them, (p-1) n bytes in over its
    link; the two-shot kernel (cross_device_reduce_2stage) reduce-scatters (each rank reads its 1/p of
    every peer's buffer) then all-gathers (reads the p-1 other reduced parts), 2(p-1)/p n bytes in.
    Both synchronise with one flag write to every peer at start and end (start_sync / end_sync), not
    in p-1 steps, so the fixed cost is one figure for every p:

        one-shot   engine_base + (p-1) n / B_engine       p = 2, or p <= 4 and n < 512 KiB, or n < 256 KiB
        two-shot   engine_base + 2(p-1)/p n / B_engine    otherwise"""
    nbytes, ranks = np.asarray(nbytes, dtype=float), np.asarray(ranks, dtype=float)
    one_shot = ((ranks == 2) | ((ranks <= 4) & (nbytes < ENGINE_AR_ONE_SHOT_BYTES[4]))
                | (nbytes < ENGINE_AR_ONE_SHOT_BYTES[8]))
    moved = np.where(one_shot, ranks - 1.0, 2.0 * (ranks - 1.0) / ranks) * nbytes
    runs = np.isin(ranks, ENGINE_AR_RANKS) & (nbytes < ENGINE_AR_MAX_BYTES) & (engine_bandwidth > 0)
    custom = moved / np.where(runs, engine_bandwidth, 1.0) + fixed_cost(ranks, engine_base)
    return np.where(runs, custom, ring_allreduce_time(nbytes, ranks, bandwidth, latency, base))


def hierarchical_allreduce(nbytes, ranks, per_node, intra_bw, intra_lat, inter_bw, inter_lat, base):
    """All-reduce over `ranks` ranks of which `per_node` share a node: reduce-scatter inside the node,
    all-reduce of 1/k of the data across the p/k nodes (k rings in parallel, one per GPU's NIC share),
    all-gather inside the node: 2(k-1)/k n/B_intra + allreduce(n/k, p/k, B_inter), one fixed cost."""
    k = np.minimum(per_node, ranks)
    return (2.0 * allgather_time(nbytes, k, intra_bw, intra_lat, 0.0)
            + allreduce_time(nbytes / k, ranks / k, inter_bw, inter_lat, 0.0) + fixed_cost(ranks, base))


def hierarchical_allgather(nbytes, ranks, per_node, intra_bw, intra_lat, inter_bw, inter_lat, base):
    """All-gather (or reduce-scatter) of `nbytes` over the same hierarchy: across nodes on 1/k of the
    data, then inside the node, one fixed cost."""
    k = np.minimum(per_node, ranks)
    return (allgather_time(nbytes, k, intra_bw, intra_lat, 0.0)
            + allgather_time(nbytes / k, ranks / k, inter_bw, inter_lat, 0.0) + fixed_cost(ranks, base))


def hierarchical_alltoall(nbytes, ranks, per_node, intra_bw, intra_lat, inter_bw, inter_lat, base):
    """All-to-all where each rank sends `nbytes` in all, 1/p to each rank: (k-1)/p of it to node peers
    over the scale-up link and (p-k)/p to other nodes over its NIC share, the two at once, one fixed
    cost."""
    k = np.minimum(per_node, ranks)
    return (np.maximum((k - 1) / ranks * nbytes / intra_bw + (k - 1) * intra_lat,
                       (ranks - k) / ranks * nbytes / inter_bw + (ranks - k) * inter_lat) + fixed_cost(ranks, base))
