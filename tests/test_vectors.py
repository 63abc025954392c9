from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.vectors import RoleVector


def make(role="chemist", shape=(3, 4, 8)) -> RoleVector:
    d = torch.randn(*shape)
    return RoleVector(role, d, d - 1, ["a", "b", "c"][: shape[0]], {"model_slug": "m", "n_prompts": 128})


def test_save_load_roundtrip_is_symmetric(tmp_path):
    vec = make()
    path = vec.save(tmp_path / "chemist.safetensors")
    back = RoleVector.load(path)
    assert back.role == "chemist"
    assert torch.equal(back.directions, vec.directions) and torch.equal(back.centered, vec.centered)
    assert back.position_tokens == ["a", "b", "c"]
    assert back.meta["model_slug"] == "m" and back.meta["n_prompts"] == 128 and "tool_version" in back.meta
    assert back.save(tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_direction_indexing_and_errors():
    vec = make()
    assert torch.equal(vec.direction(2, -1), vec.directions[2, 2])
    assert torch.equal(vec.direction(1, 0, "centered"), vec.centered[0, 1])
    with pytest.raises(RoleVecError, match=r"layer=4 is out of range; valid: 0..3"):
        vec.direction(4)
    with pytest.raises(RoleVecError, match=r"position=3 is out of range"):
        vec.direction(0, 3)
    with pytest.raises(RoleVecError, match="method='mean'.*raw, centered"):
        vec.direction(0, 0, "mean")


def test_rejects_nan_wrong_shape_and_dtype():
    with pytest.raises(RoleVecError, match="NaN or inf"):
        RoleVector("r", torch.tensor([[[float("nan")]]]))
    with pytest.raises(RoleVecError, match=r"\[n_positions, n_layers, d_model\]"):
        RoleVector("r", torch.zeros(4, 8))
    with pytest.raises(RoleVecError, match="float32"):
        RoleVector("r", torch.zeros(1, 2, 3, dtype=torch.float64))


def test_truncated_and_foreign_files_give_one_clear_error(tmp_path):
    path = make().save(tmp_path / "chemist.safetensors")
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(RoleVecError, match="truncated or corrupt"):
        RoleVector.load(tmp_path / "trunc.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(RoleVecError, match="truncated or corrupt"):
        RoleVector.load(tmp_path / "garbage.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(RoleVecError, match="not a rolevec file"):
        RoleVector.load(tmp_path / "other.safetensors")
    save_file(
        {"directions": torch.full((1, 2, 3), float("inf"))},
        str(tmp_path / "inf.safetensors"),
        metadata={"rolevec": json.dumps({"role": "x"})},
    )
    with pytest.raises(RoleVecError, match="inf.safetensors.*NaN or inf"):
        RoleVector.load(tmp_path / "inf.safetensors")


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.torch as st

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(OSError):
        make().save(tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_refuses_overwrite_when_asked(tmp_path):
    path = make().save(tmp_path / "x.safetensors")
    with pytest.raises(FileExistsError, match="--overwrite"):
        make().save(path, overwrite=False)
