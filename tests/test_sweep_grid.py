"""Grid parsing, units and shards of `rolevec sweep`."""

from __future__ import annotations

import pytest

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.sweep_grid import (
    build_units,
    parse_alphas,
    parse_interventions,
    parse_layers,
    parse_positions,
    parse_shard,
    pending,
    shard_units,
)


def test_parse_layers_range_and_list():
    assert parse_layers("4:26:2", 30) == list(range(4, 26, 2))
    assert parse_layers("6,12, 18", 30) == [6, 12, 18]
    assert parse_layers("0:3,10", 30) == [0, 1, 2, 10]


@pytest.mark.parametrize("spec", ["10:10", "", " , "])
def test_parse_layers_empty_grid(spec):
    with pytest.raises(RoleVecError, match="empty grid"):
        parse_layers(spec, 30)


@pytest.mark.parametrize("spec", ["4:40:2", "30", "-1"])
def test_parse_layers_outside_model(spec):
    with pytest.raises(RoleVecError, match=r"valid: 0\.\.29"):
        parse_layers(spec, 30)


@pytest.mark.parametrize("spec", ["a:b", "4:26:0", "1:2:3:4", "x"])
def test_parse_layers_malformed(spec):
    with pytest.raises(RoleVecError, match="--layers"):
        parse_layers(spec, 30)


def test_parse_alphas():
    assert parse_alphas("0.5,1,2,4,8") == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert parse_alphas("-2, 2,2") == [-2.0, 2.0]


@pytest.mark.parametrize("spec", ["1,nan", "inf", "NaN,2", "-inf"])
def test_parse_alphas_refuses_non_finite(spec):
    with pytest.raises(RoleVecError, match="not finite"):
        parse_alphas(spec)


@pytest.mark.parametrize("spec", ["", ",", "x"])
def test_parse_alphas_bad(spec):
    with pytest.raises(RoleVecError, match="--alphas"):
        parse_alphas(spec)


def test_parse_positions_and_interventions():
    assert parse_positions("-1,-2", 2) == [-1, -2]
    with pytest.raises(RoleVecError, match=r"valid: -2\.\.1"):
        parse_positions("-3", 2)
    with pytest.raises(RoleVecError, match="empty"):
        parse_positions("", 2)
    assert parse_interventions("add,ablate") == ["add", "ablate"]
    with pytest.raises(RoleVecError, match="valid: add, ablate, add\\+ablate"):
        parse_interventions("add,steer")


@pytest.mark.parametrize("spec", ["3/2", "0/2", "1/0", "1", "a/b", "-1/2"])
def test_parse_shard_bad(spec):
    with pytest.raises(RoleVecError, match="--shard"):
        parse_shard(spec)


def test_parse_shard_ok():
    assert parse_shard(None) == (1, 1)
    assert parse_shard("2/3") == (2, 3)


def _keys(units):
    return [p.key("validation") for u in units for p in u.points]


def test_units_cover_the_grid_once():
    units = build_units(["chemist", "nurse"], [4, 8], [-1, -2], [1.0, 0.0, 4.0], ["add", "ablate"],
                        ["mmlu_a", "mmlu_b"])
    keys = _keys(units)
    assert len(keys) == len(set(keys))
    # base per task + persona per role + add (alpha 0 dropped) + ablate (alpha ignored)
    assert len(keys) == 2 + 2 + 2 * 2 * 2 * 2 + 2 * 2 * 2
    add = [u for u in units if u.kind == "add"]
    assert all(len(u.points) == 4 and len({p.layer for p in u.points}) == 1 for u in add)


def test_shards_are_deterministic_disjoint_and_complete():
    units = build_units(["chemist", "nurse", "lawyer"], [4, 8, 12], [-1], [1.0, 2.0], ["add", "ablate"],
                        ["mmlu_a"])
    parts = [_keys(shard_units(units, (i, 4))) for i in range(1, 5)]
    assert sorted(k for p in parts for k in p) == sorted(_keys(units))
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert parts == [_keys(shard_units(units, (i, 4))) for i in range(1, 5)]


def test_pending_skips_done_points():
    units = build_units(["chemist"], [4], [-1], [1.0, 2.0], ["add"], ["mmlu_a"], persona=False)
    done = {"validation|base|mmlu_a", "validation|chemist|add|l4|p-1|a1"}
    left = pending(units, done, "validation")
    assert _keys(left) == ["validation|chemist|add|l4|p-1|a2"]
    assert pending(units, set(_keys(units)), "validation") == []
