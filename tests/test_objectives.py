"""Objectives and outcome constraints: the tiny grammar, violations, NaN, names."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dse.errors import StudyFileError, UnknownNameError
from dse.objectives import NAN_VIOLATION, parse_constraint, parse_objectives


def test_constraints_parse_and_measure_violation():
    c = parse_constraint("itl_s <= 0.05", "f")
    assert (c.metric, c.op, c.bound) == ("itl_s", "<=", 0.05)
    v = c.violation(np.array([0.01, 0.05, 0.1, np.nan]))
    assert v[:2].tolist() == [0, 0] and v[2] == pytest.approx(1.0) and v[3] == NAN_VIOLATION
    feasible = parse_constraint("feasible", "f")
    assert feasible.violation(np.array([1.0, 0.0, np.nan])).tolist() == [0.0, 1.0, NAN_VIOLATION]
    assert parse_constraint("tco_usd<=5e6", "f").bound == 5e6


@pytest.mark.parametrize("text", ["itl_s <= ", "itl_s ~ 3", "__import__('os')", "a <= b", 5, "x <= inf"])
def test_bad_constraints_are_refused(text):
    with pytest.raises(StudyFileError, match="f = "):
        parse_constraint(text, "f")


def test_nan_objective_makes_a_point_infeasible():
    obj = parse_objectives({"objective": [{"metric": "a"}], "constraints": ["b > 1"]}, "f")
    frame = pd.DataFrame({"a": [1.0, np.nan, 2.0], "b": [2, 2, 0], "feasible": [True, True, True]})
    assert obj.feasible(frame).tolist() == [True, False, False]


def test_unknown_metric_gets_a_suggestion():
    obj = parse_objectives({"objective": [{"metric": "itl", "direction": "minimize"}]}, "f")
    with pytest.raises(UnknownNameError, match="Did you mean 'itl_s'"):
        obj.check_metrics({"itl_s": 0.1, "ttft_s": 0.2}, "f")
    with pytest.raises(UnknownNameError, match="maximize"):
        parse_objectives({"objective": [{"metric": "a", "direction": "max"}]}, "f")
