"""Exhaustive sweeps: the exact front equals the hand-computed one, the JSON contract, bounded chunks."""
from __future__ import annotations

import json

import pytest
from study_fixtures import TINY, hand_front, tiny_points, write_tiny

from dse.cli import main
from dse.errors import EmptySpaceError
from dse.studyfile import load
from dse.sweep import sweep


@pytest.mark.parametrize(("chunk", "workers"), [(1 << 16, 1), (5, 1), (7, 2)])
def test_sweep_front_is_the_hand_computed_one(tmp_path, chunk, workers):
    result = sweep(load(write_tiny(tmp_path)), chunk=chunk, workers=workers)
    points = tiny_points()
    assert (result.space_size, result.evaluated) == (42, len(points)) == (42, 35)
    assert result.feasible == sum(m["feasible"] and m["tokens_per_s"] <= 6000 for _, m in points)
    assert {(r.hardware, int(r.batch), int(r.tp)) for r in result.front.itertuples()} == hand_front(points)


def test_sweep_json_contract_and_front_ratio(tmp_path, capsys):
    path = write_tiny(tmp_path)
    assert main(["sweep", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"study", "objectives", "evaluated", "front", "space_size", "feasible", "seconds"} <= set(out)
    assert (out["study"], out["space_size"], out["evaluated"]) == ("tiny", 42, 35)
    assert all(set(item) == {"params", "metrics"} for item in out["front"])
    assert main(["run", str(path), "--trials", "42"]) == 0
    assert "of the exact front from `dse sweep`" in capsys.readouterr().out
    assert main(["front", str(path), "--json"]) == 0
    ratio = json.loads(capsys.readouterr().out)["hypervolume_ratio"]
    assert 0 < ratio <= 1 + 1e-12


def test_fully_infeasible_space_names_the_constraint(tmp_path):
    spec = load(write_tiny(tmp_path, TINY.replace("tokens_per_s <= 6000", "tokens_per_s <= 1")))
    with pytest.raises(EmptySpaceError, match="tokens_per_s <= 1"):
        sweep(spec)


def test_real_range_without_grid_is_not_enumerable(tmp_path):
    text = TINY.replace("[space.param.tp]\npow2 = [1, 2]", "[space.param.tp]\npow2 = [1, 2]\n"
                        "[space.param.qps]\nfloat = [0.5, 2.0]")
    with pytest.raises(EmptySpaceError, match="points = N"):
        sweep(load(write_tiny(tmp_path, text)))


def test_dask_sweep_front_equals_the_single_process_front(tmp_path, capsys):
    """Chunks evaluated on a Dask LocalCluster of two worker processes, each reduced to its own front
    there and merged here: the same front, point for point, as one process enumerating the space."""
    text = (TINY.replace('["h100-sxm", "a100-sxm-80gb", "l4"]', '["h100-sxm", "a100-sxm-80gb", "l4", "h200-sxm", '
                         '"mi300x", "l40s"]').replace("pow2 = [1, 64]", "pow2 = [1, 512]")
            .replace("pow2 = [1, 2]", "pow2 = [1, 8]"))
    path = write_tiny(tmp_path, text)
    assert main(["sweep", str(path), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(["sweep", str(path), "--json", "--dask", "local:2"]) == 0
    dask = json.loads(capsys.readouterr().out)
    assert alone["space_size"] == 6 * 10 * 4 and len(alone["front"]) > 5
    for key in ("space_size", "evaluated", "feasible", "refused", "hypervolume", "front"):
        assert dask[key] == alone[key], key


def test_bad_dask_address(tmp_path, capsys):
    path = write_tiny(tmp_path)
    for address in ("local:0", "local:two"):
        assert main(["sweep", str(path), "--dask", address]) == 2
        err = capsys.readouterr().err
        assert f"--dask = '{address}'" in err and "local:N" in err and err.count("\n") == 1
