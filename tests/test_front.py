"""Pareto extraction, hypervolume and knee point on fronts small enough to check by hand."""
from __future__ import annotations

import pandas as pd
import pytest

from dse import front as fr
from dse.objectives import parse_objectives

OBJ = parse_objectives({"objective": [{"metric": "cost", "direction": "minimize", "reference": 10},
                                      {"metric": "speed", "direction": "maximize", "reference": 0}]}, "test")


def _points(rows):
    return pd.DataFrame(rows, columns=["name", "cost", "speed", "feasible"])


def test_pareto_keeps_only_feasible_non_dominated_points():
    points = _points([("a", 1, 1, True), ("b", 2, 3, True), ("c", 3, 2, True), ("d", 0.5, 9, False),
                      ("e", 4, 4, True)])
    assert fr.pareto(points, OBJ)["name"].tolist() == ["a", "b", "e"]


def test_hypervolume_by_hand():
    front = _points([("a", 1, 1, True), ("b", 2, 3, True), ("e", 4, 4, True)])
    # boxes against (cost 10, speed 0): a 9x1, b adds 8x2, e adds 6x1
    assert fr.hypervolume(front, OBJ) == pytest.approx(9 + 16 + 6)


def test_knee_is_the_compromise():
    front = _points([("a", 1, 1, True), ("b", 2, 9, True), ("e", 10, 10, True)])
    assert fr.knee(front, OBJ) == 1


def test_records_split_params_and_metrics():
    front = _points([("a", 1.0, 2.5, True)])
    assert fr.records(front, ["name"]) == [{"params": {"name": "a"},
                                            "metrics": {"cost": 1, "speed": 2.5, "feasible": True}}]


def test_knee_ignores_points_beyond_the_reference():
    # "z" costs 50, beyond the reference of 10: it would stretch the cost scale and pull the knee to "a"
    front = _points([("a", 1, 1, True), ("b", 2, 6, True), ("c", 9, 9.5, True), ("z", 50, 10, True)])
    values = front[["cost", "speed"]].to_numpy(dtype=float)[:3]
    scaled = (values - values.min(axis=0)) / (values.max(axis=0) - values.min(axis=0))
    scaled[:, 1] = 1 - scaled[:, 1]  # speed is maximised: distance from its best
    expected = int(((scaled ** 2).sum(axis=1)).argmin())
    assert front["name"].iloc[fr.knee(front, OBJ)] == front["name"].iloc[expected] == "b"
