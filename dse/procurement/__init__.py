"""Procurement answers (DESIGN.md 4.2, `dse report`): recommendations from a study's front, their
sensitivity to the uncertain inputs with flip points, metric intervals, and the report as JSON,
Markdown or HTML."""
from dse.procurement.build import build

__all__ = ["build"]
