"""The report's pictures as PNG bytes: the study's front (dse.plot) and a tornado chart per
recommendation (how far each uncertain input, across its catalog range, moves the metric it is
recommended on)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from dse import front as fr
from dse.plot import plot
from dse.procurement.roles import ROLES
from dse.procurement.text import ROLE_TEXT
from dse.study import Study


def front_png(study: Study) -> bytes | None:
    """The front plot of the study's trials (None without a feasible design)."""
    spec = study.spec
    trials = study.trials()
    front = fr.pareto(trials, spec.objectives)
    if front.empty or len(spec.objectives.objectives) < 2:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "front.png")
        plot(trials, front, spec.objectives, fr.knee(front, spec.objectives), path,
             f"{spec.name}: {len(trials)} trials", study.params())
        return Path(path).read_bytes()


def tornado_png(report: dict) -> bytes | None:
    """One horizontal-bar panel per recommendation with sensitivity entries: each input's bar spans
    the recommendation's metric at the input's low and high, relative to the catalog case; a flip
    point inside the range is marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = [r for r in ROLES if any(e["recommendation"] == r for e in report["sensitivity"])]
    if not roles:
        return None
    heights = [max(1, sum(e["recommendation"] == r for e in report["sensitivity"])) for r in roles]
    fig, axes = plt.subplots(len(roles), 1, figsize=(8, 1.2 + 0.45 * sum(heights) + 0.5 * len(roles)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, role in zip(axes[:, 0], roles, strict=True):
        entries = [e for e in report["sensitivity"] if e["recommendation"] == role]
        base = report["recommendations"][role]["metrics"].get(entries[0]["metric"])
        entries.sort(key=lambda e: abs((e["metric_high"] or 0) - (e["metric_low"] or 0)))
        for y, e in enumerate(entries):
            low, high = (100 * ((v or base) / base - 1) if base else 0.0 for v in (e["metric_low"], e["metric_high"]))
            ax.barh(y, low, color="tab:blue", alpha=0.8, label="input at low" if y == 0 else None)
            ax.barh(y, high, color="tab:red", alpha=0.8, label="input at high" if y == 0 else None)
            if e["flips_at"] is not None:
                ax.annotate(f"flips at {e['flips_at']:.4g}", (max(low, high, 0), y), xytext=(4, -3),
                            textcoords="offset points", fontsize=7)
        ax.set_yticks(range(len(entries)), [f"{e['label']} {e['input'].partition(':')[2]}".strip() +
                                            f" [{e['low']:.3g}, {e['high']:.3g}]" for e in entries], fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{ROLE_TEXT[role]}: {entries[0]['metric']} change (%)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tornado.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path.read_bytes()
