"""Analysis, selection and index.json of `rolevec sweep` on synthetic records."""

from __future__ import annotations

import json

import pytest

from rolevec_lmeval.sweep_select import analyse, index_entry, persona_row, select, write_index

IN, OFF = ["mmlu_a"], ["mmlu_b"]
BASE_IN, BASE_OFF = "0" * 20 + "1" * 20, "0" * 10 + "1" * 30  # 50% / 75%


def rec(kind="steer", role="chemist", layer=4, alpha=1.0, position=-1, iv="add", in_bits=BASE_IN,
        off_bits=BASE_OFF, split="validation"):
    key = f"{split}|{role}|{kind}|{iv}|l{layer}|p{position}|a{alpha:g}"
    return {"key": key, "kind": kind, "role": role, "task": "", "layer": layer, "position": position,
            "alpha": alpha, "intervention": iv, "method": "raw", "in_tasks": IN, "off_tasks": OFF,
            "split": split, "model_slug": "m", "dtype": "float32",
            "correct": {"mmlu_a": in_bits, "mmlu_b": off_bits}}


def base(task, bits, split="validation"):
    return {"key": f"{split}|base|{task}", "kind": "base", "task": task, "split": split,
            "correct": {task: bits}}


def flip(bits, n, to="1"):
    """Turn the first n characters that differ from ``to`` into ``to``."""
    out, left = list(bits), n
    for i, c in enumerate(out):
        if left and c != to:
            out[i], left = to, left - 1
    return "".join(out)


def records(*steer):
    return [base("mmlu_a", BASE_IN), base("mmlu_b", BASE_OFF), *steer]


def test_analyse_deltas_and_pvalues():
    df = analyse(records(rec(in_bits=flip(BASE_IN, 10)), rec(kind="persona", iv="")))
    row = df[df["kind"] == "steer"].iloc[0]
    assert row["acc_in"] == pytest.approx(0.75) and row["base_in"] == pytest.approx(0.5)
    assert row["delta_in"] == pytest.approx(0.25) and row["gained_in"] == 10 and row["lost_in"] == 0
    assert row["p_in"] < 0.01 and row["delta_off"] == 0 and row["n_off"] == 40
    assert persona_row(df, "chemist")["delta_in"] == 0


def test_unevaluated_questions_are_left_out_of_the_pairing():
    df = analyse(records(rec(off_bits="-" * 20 + BASE_OFF[20:])))
    assert df.iloc[0]["n_off"] == 20 and df.iloc[0]["base_off"] == 1.0


def test_holm_is_applied_over_the_roles_grid():
    df = analyse(records(*(rec(alpha=a, in_bits=flip(BASE_IN, 8)) for a in (1, 2, 3))))
    assert df["p_in_holm"].tolist() == pytest.approx([min(1, 3 * df["p_in"].iloc[0])] * 3)


def test_selection_respects_the_off_domain_tolerance():
    good = rec(alpha=2, in_bits=flip(BASE_IN, 6))
    better_but_hurts = rec(alpha=4, in_bits=flip(BASE_IN, 9), off_bits=flip(BASE_OFF, 1, "0"))  # -2.5 pts
    df = analyse(records(good, better_but_hurts))
    assert select(df, tolerance=1.0)["chemist"]["alpha"] == 2
    assert select(df, tolerance=3.0)["chemist"]["alpha"] == 4


def test_ties_go_to_the_smaller_abs_alpha_then_layer():
    df = analyse(records(*(rec(alpha=a, layer=layer, in_bits=flip(BASE_IN, 5))
                           for a in (8, -1, 2) for layer in (12, 4))))
    pick = select(df)["chemist"]
    assert (pick["alpha"], pick["layer"]) == (-1, 4)


def test_ablate_loses_ties_but_wins_when_better():
    add = rec(alpha=6, in_bits=flip(BASE_IN, 2))
    tie = records(add, rec(iv="ablate", alpha=0.0, in_bits=flip(BASE_IN, 2)))
    assert select(analyse(tie))["chemist"]["intervention"] == "add"
    better = records(add, rec(iv="ablate", alpha=0.0, in_bits=flip(BASE_IN, 3)))
    assert select(analyse(better))["chemist"]["intervention"] == "ablate"


def test_test_split_is_never_used_for_selection():
    val = rec(alpha=1, in_bits=flip(BASE_IN, 2))
    test = rec(alpha=8, in_bits=flip(BASE_IN, 20), split="test")
    df = analyse(records(val, test) + [base("mmlu_a", BASE_IN, "test"), base("mmlu_b", BASE_OFF, "test")])
    assert select(df)["chemist"]["alpha"] == 1
    assert select(analyse([base("mmlu_a", BASE_IN, "test"), base("mmlu_b", BASE_OFF, "test"), test])) == {}


def test_no_point_within_tolerance_selects_nothing():
    df = analyse(records(rec(off_bits=flip(BASE_OFF, 5, "0"))))
    assert select(df) == {}


def test_missing_base_is_reported():
    from rolevec_lmeval.errors import RoleVecError

    with pytest.raises(RoleVecError, match="no unsteered"):
        analyse([base("mmlu_a", BASE_IN), rec()])


def test_index_is_merged_and_read_back_by_the_store(tmp_path):
    from rolevec_lmeval.store import VectorStore

    (tmp_path / "index.json").write_text(json.dumps({"roles": {"nurse": {"layer": 3, "alpha": 1}}}))
    df = analyse(records(rec(layer=7, alpha=2, in_bits=flip(BASE_IN, 6)), rec(kind="persona", iv="")))
    row = select(df)["chemist"]
    entry = index_entry(row, persona_row(df, "chemist"), {"out": "x"})
    write_index(tmp_path / "index.json", {"chemist": entry})
    store = VectorStore(tmp_path)
    assert store.recommended("nurse") == {"layer": 3, "alpha": 1}
    got = store.recommended("chemist")
    assert (got["layer"], got["position"], got["alpha"], got["intervention"], got["method"]) == \
        (7, -1, 2.0, "add", "raw")
    assert got["validation"]["delta_in"] == pytest.approx(0.15) and got["validation"]["n_in"] == 40
    assert "persona_delta_in" in got["validation"]
