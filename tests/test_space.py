"""Spaces: domains, derived values, rules, enumeration and the safe expression language."""
from __future__ import annotations

import numpy as np
import pytest

from dse.errors import StudyFileError, UnknownNameError
from dse.space import Expr, parse_space


def _space(raw):
    return parse_space(raw, "s.toml", {"mode": "serve", "workload": "llama-3-8b"}, {"heads": 32})


def test_enumeration_derived_values_and_rules():
    space = _space({"param": {"tp": {"pow2": [1, 8]}, "replicas": {"int": [1, 3]},
                              "precision": {"choices": ["bf16", "fp8"]}},
                    "derived": {"gpus": "tp * replicas"},
                    "rule": [{"name": "small", "require": "gpus <= 8 and precision in ['fp8']"}]})
    assert space.size == 4 * 3 * 2
    points = space.complete(space.rows(np.arange(space.size)))
    # named choices vary slowest (one evaluate_many group per run of indices), then the numbers in order
    assert points["precision"].tolist()[:12] == ["bf16"] * 12
    assert points["tp"].tolist()[:6] == [1, 1, 1, 2, 2, 2] and set(points["tp"]) == {1, 2, 4, 8}
    assert (points["gpus"] == points["tp"] * points["replicas"]).all()
    broken = space.broken_rules(points)["small"]
    assert (~broken).sum() == len(points[(points["gpus"] <= 8) & (points["precision"] == "fp8")])


@pytest.mark.parametrize("text", ["__import__('os')", "tp.real", "open('x')", "[t for t in tp]", "lambda: 1"])
def test_expressions_are_never_code(text):
    with pytest.raises(StudyFileError):
        Expr.parse(text, "rule")


def test_expressions_work_on_columns():
    e = Expr.parse("heads % tp == 0 and not tp > 4", "r")
    assert e({"heads": 32, "tp": np.array([1, 3, 8])}).tolist() == [True, False, False]


@pytest.mark.parametrize(("raw", "text"), [
    ({"param": {"tpp": {"pow2": [1, 8]}}}, "Did you mean 'tp'"),
    ({"param": {"tp": {"pow2": [1, 6]}}}, "powers of two"),
    ({"param": {"tp": {"int": [4, 1]}}}, "low <= high"),
    ({"param": {"tp": {"range": [1, 4]}}}, "key"),
    ({"param": {"batch": {"int": [0, 4]}}}, "batch"),
    ({"param": {"tp": {"pow2": [1, 8]}}, "rule": [{"require": "tq > 1"}]}, "Did you mean 'tp'"),
    ({"param": {"hardware": {"choices": ["h100"]}, "tp": {"choices": [1, "2"]}}}, "one type"),
])
def test_bad_spaces_name_the_field(raw, text):
    with pytest.raises((StudyFileError, UnknownNameError), match="s.toml") as err:
        _space(raw)
    assert text in str(err.value)


@pytest.mark.parametrize("rule", ["hardware + 1 > 0", "hardware > 1", "[1, 2]"])
def test_a_rule_that_is_not_true_or_false_per_point_is_refused(rule):
    space = _space({"param": {"hardware": {"choices": ["h100-sxm", "a100-sxm-80gb"]}, "tp": {"pow2": [1, 2]}},
                    "rule": [{"name": "odd", "require": rule}]})
    points = space.complete(space.rows(np.arange(space.size)))
    with pytest.raises(StudyFileError, match="odd"):
        space.broken_rules(points)


def test_powers_are_computed_in_floats():
    # integer powers of integers would grow without bound; in floats they overflow to inf at once
    e = Expr.parse("tp ** tp ** tp ** tp > 1", "r")
    assert e({"tp": np.array([1.0, 8.0])}).tolist() == [False, True]
