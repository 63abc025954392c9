"""Prompt loaders: shipped sets, user JSON/JSONL files, the authors' split format, sampling, hashing."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED

from rolevec_lmeval import prompts as P
from rolevec_lmeval.errors import RoleVecError

AUTHORS = SHARED / "role-vectors-paper"


def test_roles_index_has_29_paper_roles_and_4_history_roles():
    assert len(P.all_roles()) == 33
    assert len(P.all_roles(paper_only=True)) == 29
    assert {"historian", "archivist"} <= set(P.all_roles()) - set(P.all_roles(paper_only=True))


def test_resolve_roles():
    assert P.resolve_roles("all") == P.all_roles()
    assert P.resolve_roles("paper") == P.all_roles(paper_only=True)
    assert P.resolve_roles(" chemist, lawyer ,chemist") == ["chemist", "lawyer"]
    assert P.resolve_roles(["pirate"], known=["pirate"]) == ["pirate"]
    with pytest.raises(RoleVecError, match=r"--roles alchemist .*valid values: all, paper.*chemist"):
        P.resolve_roles("chemist,alchemist")
    with pytest.raises(RoleVecError, match="--roles"):
        P.resolve_roles(" , ")


def test_shipped_sets_are_jsonl_with_instructions():
    base = P.load_prompt_set(None, P.BASE)
    assert len(base) >= 512 and all(isinstance(p, str) and p.strip() for p in base)
    assert len(P.load_prompt_set(None, "chemist")) >= 128
    assert P.find_prompt_file(P.DATA_DIR, "chemist").name == "chemist.jsonl"
    assert P.prompt_set_name(None) == P.prompt_set_name(P.DATA_DIR) == "rolevec"


def test_user_json_and_jsonl_files(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"instruction": "one"}\n\n{"instruction": "two", "x": 1}\n')
    (tmp_path / "b.json").write_text(json.dumps([{"instruction": "one", "category": None}, "two"]))
    assert P.load_prompt_file(tmp_path / "a.jsonl") == ["one", "two"]
    assert P.load_prompt_file(tmp_path / "b.json") == ["one", "two"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ("[]", "has no prompts"),
        ('{"instruction": "ok"}\n{"prompt": "no field"}\n', r"record 1 has no non-empty 'instruction'"),
        ('[{"instruction": ""}]', "record 0"),
        ('{"instruction": "ok"\n', "not valid JSON"),
    ],
)
def test_bad_prompt_files(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(RoleVecError, match=match):
        P.load_prompt_file(path)


def test_missing_files_and_dirs(tmp_path):
    with pytest.raises(RoleVecError, match="does not exist"):
        P.load_prompt_file(tmp_path / "nope.jsonl")
    with pytest.raises(RoleVecError, match=r"no prompt file for 'chemist' .*chemist.jsonl"):
        P.load_prompt_set(tmp_path, "chemist")
    with pytest.raises(RoleVecError, match="is not a directory"):
        P.load_prompt_set(tmp_path / "nope", "chemist")


def test_available_roles_of_a_user_dir(tmp_path):
    for name in ("pirate.jsonl", "chemist.json", "base.jsonl", "notes.txt"):
        (tmp_path / name).write_text('{"instruction": "x"}\n')
    assert P.available_roles(tmp_path) == ["chemist", "pirate"]
    assert P.available_roles(None) == P.all_roles()


@pytest.mark.skipif(not AUTHORS.is_dir(), reason="authors' data not available")
def test_authors_split_directory_is_read_in_place():
    assert P.available_roles(AUTHORS) == P.all_roles()  # only target_train_<role>.json count
    assert P.find_prompt_file(AUTHORS, P.BASE).name == "base_train.json"
    chemist = P.load_prompt_set(AUTHORS, "chemist")
    assert len(chemist) == 128 and all(isinstance(p, str) for p in chemist)


def test_sampling_is_seeded_per_name_and_keeps_file_order():
    items = [f"p{i}" for i in range(50)]
    a = P.sample_prompts(items, 10, 0, "chemist")
    assert a == P.sample_prompts(items, 10, 0, "chemist")
    assert a != P.sample_prompts(items, 10, 1, "chemist") and a != P.sample_prompts(items, 10, 0, "lawyer")
    assert a == sorted(a, key=items.index)
    assert P.sample_prompts(items, None, 0, "x") == items and P.sample_prompts(items, 50, 0, "x") == items
    with pytest.raises(RoleVecError, match=r"'chemist' has 50 prompts, fewer than --n 64; pass --n 50"):
        P.sample_prompts(items, 64, 0, "chemist")
    with pytest.raises(RoleVecError, match="--n 0"):
        P.sample_prompts(items, 0, 0, "chemist")


def test_prompt_sha256_is_order_sensitive_and_stable():
    h = P.prompt_sha256(["a", "b"])
    assert h == P.prompt_sha256(("a", "b")) and len(h) == 64
    assert h != P.prompt_sha256(["b", "a"]) and h != P.prompt_sha256(["a\nb"])
