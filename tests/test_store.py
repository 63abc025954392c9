from __future__ import annotations

import json

import pytest
from conftest import random_vectors

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.store import VectorStore, model_slug, shipped_vectors_root


def test_roles_load_and_unknown_role_lists_available(tmp_path):
    random_vectors(tmp_path, "chemist", 4, 8)
    random_vectors(tmp_path, "lawyer", 4, 8)
    store = VectorStore(tmp_path)
    assert store.roles() == ["chemist", "lawyer"]
    assert store.load("lawyer").role == "lawyer"
    with pytest.raises(RoleVecError, match="role='pilot' is unknown.*available: chemist, lawyer"):
        store.load("pilot")


def test_single_file_store_and_index(tmp_path):
    file = random_vectors(tmp_path, "chemist", 4, 8)
    assert VectorStore(file).roles() == ["chemist"]
    assert VectorStore(tmp_path).recommended("chemist") == {}
    (tmp_path / "index.json").write_text(json.dumps({"roles": {"chemist": {"layer": 2, "alpha": 1.5}}}))
    assert VectorStore(file).recommended("chemist") == {"layer": 2, "alpha": 1.5}
    (tmp_path / "index.json").write_text("{oops")
    with pytest.raises(RoleVecError, match="index.json is not valid JSON"):
        VectorStore(tmp_path).index()


def test_bad_paths(tmp_path):
    with pytest.raises(RoleVecError, match="does not exist"):
        VectorStore(tmp_path / "nope")
    (tmp_path / "v.pt").write_bytes(b"x")
    with pytest.raises(RoleVecError, match="must be a .safetensors file"):
        VectorStore(tmp_path / "v.pt")


def test_model_slug():
    assert model_slug("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert model_slug("/models/My Model/") == "my-model"
    assert shipped_vectors_root().name in ("vectors", "_vectors")
