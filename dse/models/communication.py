"""Collective communication in the alpha-beta model (Hockney 1994; Thakur, Rabenseifner & Gropp 2005,
"Optimization of Collective Communication Operations in MPICH"), flat and hierarchical.

A message of n bytes over a link costs alpha + n / beta. For p ranks (Thakur et al. 2005, section 4;
Patarasuk & Yuan 2009 for the ring all-reduce; Sanders, Speck & Traeff 2009 for the double binary tree
NCCL uses):

    ring all-reduce      2(p-1)/p * n / beta + 2(p-1) alpha
    tree all-reduce      2(p-1)/p * n / beta + 2 log2(p) alpha   (pipelined double binary tree)
    all-gather           (p-1)/p * n / beta + (p-1) alpha        (n: the gathered size)
    reduce-scatter       (p-1)/p * n / beta + (p-1) alpha        (n: the size before scattering)
    all-to-all           (p-1)/p * n / beta + (p-1) alpha        (n: what one rank sends in all)
    point-to-point       n / beta + alpha

`bandwidth` is one direction of one rank's link (B/s) and `latency` the per-step alpha (s). Every
function takes numbers or numpy columns and gives zero for one rank.

Hierarchy (NCCL's intra-node then inter-node scheme; Jeaugey 2019, "Massively Scale Your Deep Learning
Training with NCCL 2.4"): a group of p ranks of which k share a node runs the collective as a
reduce-scatter inside the node over the scale-up link, the collective over p/k nodes on 1/k of the
data, each GPU over its own share of the node's NICs (k rings in parallel), and an all-gather inside
the node. k = p is a group inside one node, k = 1 one GPU per node.
"""
from __future__ import annotations

import numpy as np


def ring_allreduce_time(nbytes, ranks, bandwidth, latency):
    """Ring all-reduce: 2(n-1)/n of the buffer crosses each link in 2(n-1) steps (Patarasuk & Yuan
    2009, "Bandwidth optimal all-reduce algorithms"). Zero for a single rank."""
    return 2.0 * (ranks - 1) / ranks * nbytes / bandwidth + 2.0 * (ranks - 1) * latency


def tree_allreduce_time(nbytes, ranks, bandwidth, latency):
    """Pipelined double-binary-tree all-reduce (Sanders et al. 2009; NCCL 2.4): the ring's bandwidth
    term with a latency term logarithmic in the ranks."""
    return 2.0 * (ranks - 1) / ranks * nbytes / bandwidth + 2.0 * np.log2(ranks) * latency


def allreduce_time(nbytes, ranks, bandwidth, latency):
    """The faster of ring and tree, as NCCL's tuner picks per message size."""
    return np.minimum(ring_allreduce_time(nbytes, ranks, bandwidth, latency),
                      tree_allreduce_time(nbytes, ranks, bandwidth, latency))


def allgather_time(nbytes, ranks, bandwidth, latency):
    """Ring all-gather of a buffer of `nbytes` in all (each rank holds 1/ranks of it)."""
    return (ranks - 1) / ranks * nbytes / bandwidth + (ranks - 1) * latency


def reduce_scatter_time(nbytes, ranks, bandwidth, latency):
    """Ring reduce-scatter of a buffer of `nbytes` per rank; each rank ends with 1/ranks, reduced."""
    return allgather_time(nbytes, ranks, bandwidth, latency)


def alltoall_time(nbytes, ranks, bandwidth, latency):
    """All-to-all in which each rank sends `nbytes` in all, 1/ranks of it to each rank (its own
    share stays): (ranks-1)/ranks of it crosses its link, one message per peer."""
    return (ranks - 1) / ranks * nbytes / bandwidth + (ranks - 1) * latency


def p2p_time(nbytes, bandwidth, latency):
    """One point-to-point message."""
    return nbytes / bandwidth + latency


def hierarchical_allreduce(nbytes, ranks, per_node, intra_bw, intra_lat, inter_bw, inter_lat):
    """All-reduce over `ranks` ranks of which `per_node` share a node: reduce-scatter inside the node,
    all-reduce of 1/k of the data across the p/k nodes (k rings in parallel, one per GPU's NIC share),
    all-gather inside the node: 2(k-1)/k n/B_intra + allreduce(n/k, p/k, B_inter)."""
    k = np.minimum(per_node, ranks)
    return (2.0 * allgather_time(nbytes, k, intra_bw, intra_lat)
            + allreduce_time(nbytes / k, ranks / k, inter_bw, inter_lat))


def hierarchical_allgather(nbytes, ranks, per_node, intra_bw, intra_lat, inter_bw, inter_lat):
    """All-gather (or reduce-scatter) of `nbytes` over the same hierarchy: across nodes on 1/k of the
    data, then inside the node."""
    k = np.minimum(per_node, ranks)
    return allgather_time(nbytes, k, intra_bw, intra_lat) + allgather_time(nbytes / k, ranks / k, inter_bw, inter_lat)


def hierarchical_alltoall(nbytes, ranks, per_node, intra_bw, intra_lat, inter_bw, inter_lat):
    """All-to-all where each rank sends `nbytes` in all, 1/p to each rank: (k-1)/p of it to node peers
    over the scale-up link and (p-k)/p to other nodes over its NIC share, the two at once."""
    k = np.minimum(per_node, ranks)
    return np.maximum((k - 1) / ranks * nbytes / intra_bw + (k - 1) * intra_lat,
                      (ranks - k) / ranks * nbytes / inter_bw + (ranks - k) * inter_lat)
