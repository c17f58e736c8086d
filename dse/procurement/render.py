"""A procurement report as Markdown (charts written beside it as PNG files) or as one self-contained
HTML page (charts embedded), from the object `build` returns."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from dse.errors import UserInputError
from dse.procurement import text
from dse.procurement.charts import front_png, tornado_png
from dse.procurement.roles import ROLES
from dse.study import Study


def _sections(report: dict) -> list[tuple[str, list[str], list[list[str]] | None]]:
    """(heading, paragraphs, table rows with a header first, or None) for each part of the report."""
    objectives = [o["metric"] for o in report["objectives"]]
    recs = report["recommendations"]
    out = []
    if recs.get("cheapest") is None:
        out.append(("Recommendations", ["No feasible design: " + "; ".join(report["notes"])], None))
        return out
    out.append(("Recommendations", [text.recommendation(r, recs[r], objectives) for r in ROLES], None))
    interval = [["recommendation", *objectives]]
    for role in ROLES:
        span = report["uncertainty"].get(role, {})
        interval.append([role, *(f"{text.value(m, span[m][0])} .. {text.value(m, span[m][1])}" if m in span else
                                 text.value(m, recs[role]["metrics"].get(m, "-")) for m in objectives)])
    out.append(("Uncertainty", ["Each recommendation's objectives with every uncertain input that concerns it at its "
                                "better and at its worse catalog end."], interval))
    flips = [text.flip(e, recs[e["recommendation"]]) for e in report["sensitivity"] if e["flips_at"] is not None]
    out.append(("What would change the answer", flips or ["No recommendation changes inside the catalog ranges "
                                                          "of the inputs varied."], None))
    rows = [["recommendation", "input", "low", "high", "metric", "at low", "at high", "flips at"]]
    for e in report["sensitivity"]:
        rows.append([e["recommendation"], e["input"], text.number(e["low"]), text.number(e["high"]), e["metric"],
                     text.value(e["metric"], e["metric_low"]), text.value(e["metric"], e["metric_high"]),
                     text.number(e["flips_at"])])
    out.append(("Sensitivity", [], rows))
    runners = [["#", "design", "objectives"]] + [[str(i + 1), text.design(r), text.metrics(r, objectives)]
                                                 for i, r in enumerate(report["runners_up"])]
    out.append(("Runners-up", ["The next best compromises on the front after the recommendations."], runners))
    if report.get("robust_front") is not None:
        robust = [["design", "objectives (pessimistic case)"]] + [[text.design(r), text.metrics(r, objectives)]
                                                                   for r in report["robust_front"]]
        out.append(("Robust front", ["Designs that no other dominates with every input at its worse end."], robust))
    imp = report["importance"].get("front", {})
    if imp:
        out.append(("Parameter importance", ["PED-ANOVA importance (Optuna) of each parameter for reaching the "
                                             "front among the feasible trials."],
                    [["parameter", "importance"], *([k, f"{v:.3f}"] for k, v in imp.items())]))
    rows = [["input", "value", "low", "high", "source or note"]]
    for a in report["assumptions"]:
        rows.append([a["input"], str(a.get("value", "")), str(a.get("low", "")), str(a.get("high", "")),
                     a.get("source") or a.get("note", "")])
    out.append(("Assumptions", [], rows))
    return out


def charts(report: dict, study: Study) -> dict[str, bytes]:
    """The report's pictures, PNG bytes by name ("front", "tornado"), those that can be drawn."""
    drawn = {"front": front_png(study), "tornado": tornado_png(report)}
    return {k: v for k, v in drawn.items() if v is not None}


def markdown(report: dict, pictures: dict[str, bytes], path: str) -> None:
    """Write the report as Markdown to `path`, its `charts` beside it (`path` stem + .front.png, ...)."""
    target = Path(path)
    lines = [f"# {report['study']}", "", report["question"], "",
             f"{report['evaluated']} trials; objectives: " + ", ".join(f"{o['direction']} {o['metric']}"
                                                                     for o in report["objectives"]), ""]
    for name, data in pictures.items():
        image = target.with_suffix(f".{name}.png")
        _write(image, data, "--md")
        lines += [f"![{name}]({image.name})", ""]
    for heading, paragraphs, rows in _sections(report):
        lines += [f"## {heading}", ""]
        lines += [f"- {p}" if heading in ("Recommendations", "What would change the answer") else p
                  for p in paragraphs]
        if rows:
            lines += ["", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows[1:]]
        lines.append("")
    _write(target, "\n".join(lines).encode(), "--md")


CAPTIONS = {"front": "Pareto front", "tornado": "Sensitivity (tornado)"}


def html_page(report: dict, pictures: dict[str, bytes], path: str) -> None:
    """Write the report as one HTML page with its `charts` embedded."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report['study'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "text-align:left}th{background:#f0f0f0}img{max-width:100%}li{margin:4px 0}</style></head><body>",
             f"<h1>{e(report['study'])}</h1><p>{e(report['question'])}</p>",
             f"<p>{report['evaluated']} trials; objectives: " +
             e(", ".join(f"{o['direction']} {o['metric']}" for o in report["objectives"])) + "</p>"]
    figures = [f"<figure><img alt='{CAPTIONS[name]}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
               f"<figcaption>{CAPTIONS[name]}</figcaption></figure>" for name, data in pictures.items()]
    sections = _sections(report)
    for i, (heading, paragraphs, rows) in enumerate(sections):
        if i == 1:  # the charts right after the recommendations
            parts += figures
        parts.append(f"<h2>{e(heading)}</h2>")
        if paragraphs:
            parts.append("<ul>" + "".join(f"<li>{e(p)}</li>" for p in paragraphs) + "</ul>")
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in rows[0]) + "</tr>" +
                         "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:]) +
                         "</table>")
    if len(sections) < 2:
        parts += figures
    parts.append("</body></html>")
    _write(Path(path), "".join(parts).encode(), "--html")


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UserInputError(option, str(path), f"a writable file ({exc.strerror or exc})") from None
