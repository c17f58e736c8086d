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
