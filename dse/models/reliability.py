"""Failures: checkpoint/restart goodput for training and N+k spares for serving fleets.

A job on G accelerators in n nodes fails at rate G lambda_gpu + n lambda_node (independent
exponential failures), i.e. with mean time between failures M. It writes a checkpoint of delta
seconds every tau seconds of work; a failure costs the restart time R plus, on average, half an
interval of lost work and the checkpoint in flight. To first order (Daly 2006, "A higher order
estimate of the optimum checkpoint interval for restart dumps", FGCS 22, eq. 10 and 37), the wall
time T_w of T_s seconds of work satisfies

    T_w = T_s (1 + delta / tau) + (T_w / M) (R + (tau + delta) / 2),

and the interval that minimises it is Young's tau = sqrt(2 delta M) (Young 1974, "A first order
approximation to the optimum checkpoint interval", CACM 17(9)), less delta in Daly's correction,
capped at M. Goodput is T_s / T_w.

A serving fleet of N replicas keeps k spares so that more than k replicas are down at once with
probability at most `risk`: each replica is down with probability q = lambda R / (1 + lambda R)
(an alternating renewal process with mean up time 1 / lambda and mean repair time R), independently,
so the number down among N + k is binomial (Barlow & Proschan 1965, "Mathematical Theory of
Reliability", ch. 5, k-out-of-n systems).
"""
from __future__ import annotations

import numpy as np
from scipy.special import bdtrc


def failure_rate(gpus, nodes, per_gpu, per_node):
    """Failures per second of a job on `gpus` accelerators in `nodes` nodes."""
    return gpus * per_gpu + nodes * per_node


def checkpoint_interval(write_s, mtbf_s):
    """Young's interval with Daly's first-order correction, sqrt(2 delta M) - delta (Daly 2006, eq. 37
    truncated after its leading terms), kept between delta and M (Daly: tau = M once delta >= 2M)."""
    return np.minimum(np.maximum(np.sqrt(2.0 * write_s * mtbf_s) - write_s, write_s), mtbf_s)


def goodput(write_s, interval_s, restart_s, mtbf_s):
    """Useful work per wall-clock second under checkpoint/restart (0 where failures outpace progress)."""
    lost = 1.0 - (restart_s + (interval_s + write_s) / 2.0) / mtbf_s
    return np.maximum(lost, 0.0) / (1.0 + write_s / interval_s)


def spares_needed(replicas, failure_rate_s, repair_s, risk: float):
    """Fewest spare replicas k with P(more than k of replicas + k are down) <= risk (numbers or columns)."""
    q = failure_rate_s * repair_s / (1.0 + failure_rate_s * repair_s)
    n = np.rint(np.asarray(replicas, dtype=float)).astype(np.int64)
    k = np.zeros_like(n)
    short = bdtrc(k, n + k, q) > risk
    while np.any(short):  # each spare lowers the tail by about a factor (n q); a few steps at most
        k = k + short
        short = bdtrc(k, n + k, q) > risk
    return k.astype(float) if np.ndim(replicas) else float(k)
