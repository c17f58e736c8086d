"""Pictures of a study: every evaluated point (infeasible ones grey), the Pareto front and its knee, in
2-D or 3-D, as a PNG (matplotlib) or an interactive HTML page (plotly) whose points show their design."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dse.errors import UserInputError
from dse.objectives import Objectives


def plot(points: pd.DataFrame, front: pd.DataFrame, objectives: Objectives, knee: int | None, path: str,
         title: str, params: list[str]) -> None:
    """Write the plot to `path` (.png or .html), over the first two or three objectives."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".html"):
        raise UserInputError("--plot", path, "a file name ending in .png (matplotlib) or .html (plotly)")
    if len(objectives.objectives) < 2:
        raise UserInputError("--plot", path, "a study with two or three objectives (this one has one)")
    axes = objectives.metrics[:3]
    if any(a not in points for a in axes):
        raise UserInputError("--plot", path, "a study with evaluated trials (none has the objectives' metrics yet: "
                             "run `dse run` first)")
    points = points.dropna(subset=axes)  # a point whose rules broke has no metrics to draw
    feasible = points["feasible"].astype(bool) & objectives.feasible(points)
    shown = _in_view(points, feasible, axes)
    points, feasible = points[shown], feasible[shown]
    hidden = f"; {int((~shown).sum())} more beyond the axes" if not shown.all() else ""
    try:
        if suffix == ".png":
            _png(points, feasible, front, knee, axes, path, title, hidden)
        else:
            _html(points, feasible, front, knee, axes, path, title, params, hidden)
    except OSError as exc:
        raise UserInputError("--plot", path, f"a writable file ({exc.strerror})") from None


def _in_view(points: pd.DataFrame, feasible: pd.Series, axes: list[str]) -> pd.Series:
    """Every feasible point, and the infeasible ones within a decade of the feasible points' range on
    every axis (for an axis that is not all positive: within one range's width of it), so that a few
    far-off infeasible points (a saturated queue's TTFT of 10^10 s) do not squeeze the front into a corner."""
    keep = pd.Series(True, index=points.index)
    if not feasible.any():
        return keep
    for a in axes:
        values = pd.to_numeric(points[a], errors="coerce")
        lo, hi = values[feasible].min(), values[feasible].max()
        if lo > 0:
            lo, hi = lo / 10.0, hi * 10.0
        else:
            lo, hi = lo - (hi - lo), hi + (hi - lo)
        keep &= values.between(lo, hi)
    return keep | feasible


def _png(points, feasible, front, knee, axes, path, title, hidden="") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    three = len(axes) == 3
    fig = plt.figure(figsize=(7.5, 6) if three else (7, 5))
    ax = fig.add_subplot(projection="3d" if three else None)
    wide = [_wide(points[a]) for a in axes]
    # 3-D axes have no reliable log scale: a wide axis is drawn in log10 with ticks labelled in its unit
    logged = [w and three for w in wide]

    def coords(frame):
        values = [pd.to_numeric(frame[a], errors="coerce") for a in axes]
        return [np.log10(v) if lg else v for v, lg in zip(values, logged, strict=True)]

    def scatter(frame, **kw):
        if len(frame):
            ax.scatter(*coords(frame), **kw)

    scatter(points[~feasible], color="0.75", s=10, label=f"infeasible ({int((~feasible).sum())}{hidden})")
    scatter(points[feasible], color="tab:blue", s=12, alpha=0.6, label=f"feasible ({int(feasible.sum())})")
    if not three and len(front):
        ax.step(front[axes[0]], front[axes[1]], where="post", color="tab:red", lw=1, alpha=0.6)
    scatter(front, color="tab:red", s=30, edgecolor="black", linewidth=0.4, label=f"Pareto front ({len(front)})",
            zorder=3)
    if knee is not None:
        scatter(front.iloc[[knee]], color="gold", marker="*", s=260, edgecolor="black", label="knee", zorder=4)
    for setter, name in zip((ax.set_xlabel, ax.set_ylabel, getattr(ax, "set_zlabel", None)), axes, strict=False):
        setter(name, labelpad=10 if three else 4)
    for a, is_wide, is_logged in zip("xyz", wide, logged, strict=False):
        if is_logged:
            axis = getattr(ax, f"{a}axis")
            axis.set_major_locator(MultipleLocator(1))  # one tick per decade
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{10 ** v:.3g}"))
        elif is_wide:
            getattr(ax, f"set_{a}scale")("log")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    if not three:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _wide(column: pd.Series) -> bool:
    """Whether an axis spans decades of positive values and is better read on a log scale."""
    values = pd.to_numeric(column, errors="coerce").dropna()
    return bool(len(values)) and bool((values > 0).all()) and values.max() / values.min() > 20


def _html(points, feasible, front, knee, axes, path, title, params, hidden="") -> None:
    import plotly.graph_objects as go

    three = len(axes) == 3
    trace = go.Scatter3d if three else go.Scatter
    shown = [c for c in params if c in points.columns]

    def add(fig, frame, name, marker):
        if not len(frame):
            return
        coords = dict(zip("xyz", [frame[a] for a in axes], strict=False))
        text = ["<br>".join(f"{c}: {row[c]}" for c in shown) for _, row in frame.iterrows()]
        fig.add_trace(trace(**coords, mode="markers", name=name, marker=marker, text=text,
                            hovertemplate="%{text}<extra>" + name + "</extra>"))

    fig = go.Figure()
    add(fig, points[~feasible], f"infeasible ({int((~feasible).sum())}{hidden})", dict(color="lightgrey", size=4))
    add(fig, points[feasible], f"feasible ({int(feasible.sum())})", dict(color="steelblue", size=4, opacity=0.6))
    add(fig, front, f"Pareto front ({len(front)})", dict(color="crimson", size=7, line=dict(width=1, color="black")))
    if knee is not None:
        add(fig, front.iloc[[knee]], "knee", dict(color="gold", size=12, symbol="diamond",
                                                  line=dict(width=1, color="black")))
    scales = {f"{a}axis": dict(title=name, type="log" if _wide(points[name]) else "linear")
              for a, name in zip("xyz", axes, strict=False)}
    if three:
        fig.update_layout(scene=scales)
    else:
        fig.update_layout(**scales)
    fig.update_layout(title=title, template="plotly_white")
    fig.write_html(path, include_plotlyjs=True)


__all__ = ["plot"]
