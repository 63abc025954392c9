from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from conftest import random_vectors, tiny_model

from rolevec_lmeval.cli import main
from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.export import export_gguf, llamacpp_index, parse_layers, read_gguf
from rolevec_lmeval.interventions import Steering, find_blocks, steering
from rolevec_lmeval.vectors import RoleVector


@pytest.fixture
def vec(tmp_path) -> RoleVector:
    return RoleVector.load(random_vectors(tmp_path, "chemist", 6, 16, slug="tiny-llama"))


def test_gguf_read_back_with_gguf_reader(vec, tmp_path):
    out = export_gguf(vec, tmp_path / "chemist.gguf", [2, 3, 5], alpha=2.5, position=0, method="centered")
    reader = gguf.GGUFReader(str(out))
    meta = {name: f.contents() for name, f in reader.fields.items()}
    assert meta["general.architecture"] == "controlvector"
    assert meta["controlvector.model_hint"] == "tiny-llama"
    assert meta["controlvector.layer_count"] == 3
    assert meta["rolevec.role"] == "chemist" and meta["rolevec.layers"] == [2, 3, 5]
    assert meta["rolevec.alpha"] == 2.5 and meta["rolevec.method"] == "centered"
    assert [t.name for t in reader.tensors] == ["direction.1", "direction.2", "direction.4"]
    for t, layer in zip(reader.tensors, [2, 3, 5], strict=True):
        assert t.tensor_type == gguf.GGMLQuantizationType.F32 and list(t.shape) == [16]
        expected = 2.5 * vec.direction(layer, 0, "centered").numpy()
        np.testing.assert_allclose(t.data, expected, rtol=1e-6)
    dirs, meta2 = read_gguf(out)
    assert sorted(dirs) == [2, 3, 5] and meta2["rolevec.position"] == 0


def test_llamacpp_convention_reproduces_rolevec_steering():
    """llama.cpp adds direction.<k> to the OUTPUT of 0-based block k; that must equal our add at input k+1."""
    model = tiny_model("llama")
    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    d, layer, alpha = torch.randn(64), 2, 3.0
    k = llamacpp_index(layer)
    with torch.no_grad(), steering(model, [Steering(d, layer, alpha)]):
        ours = model(ids).logits
    block = find_blocks(model)[k]
    handle = block.register_forward_hook(lambda m, a, out: (out[0] + alpha * d, *out[1:])
                                         if isinstance(out, tuple) else out + alpha * d)
    with torch.no_grad():
        theirs = model(ids).logits
    handle.remove()
    torch.testing.assert_close(ours, theirs)


def test_unexportable_layers_and_bad_values(vec, tmp_path):
    for layer in (0, 1, 6):
        with pytest.raises(RoleVecError, match=r"layer=\d cannot be exported; valid: 2\.\.5"):
            export_gguf(vec, tmp_path / "x.gguf", [layer], 1.0)
    with pytest.raises(RoleVecError, match="alpha=nan must be finite"):
        export_gguf(vec, tmp_path / "x.gguf", [2], float("nan"))
    export_gguf(vec, tmp_path / "x.gguf", [2], 1.0)
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_gguf(vec, tmp_path / "x.gguf", [2], 1.0)
    export_gguf(vec, tmp_path / "x.gguf", [3], 1.0, overwrite=True)
    assert sorted(read_gguf(tmp_path / "x.gguf")[0]) == [3]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_parse_layers():
    assert parse_layers("12", 30) == [12]
    assert parse_layers("8-10, 3", 30) == [3, 8, 9, 10]
    assert parse_layers(7, 30) == [7]
    with pytest.raises(RoleVecError, match="layer 30 is out of range; valid: 0..29"):
        parse_layers("28-30", 30)
    with pytest.raises(RoleVecError, match="layers='a' is not valid"):
        parse_layers("a", 30)
    with pytest.raises(RoleVecError, match="range '9-8' is empty"):
        parse_layers("9-8", 30)
    with pytest.raises(RoleVecError, match="layers is empty"):
        parse_layers("", 30)


def test_read_gguf_refuses_other_files(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_tensor("token_embd.weight", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(RoleVecError, match="not a llama.cpp control vector"):
        read_gguf(tmp_path / "m.gguf")


def test_cli_export_explicit_and_from_index(tmp_path, capsys):
    random_vectors(tmp_path, "chemist", 6, 16)
    out = tmp_path / "c.gguf"
    rc = main(["export", "--format", "gguf", "--vectors", str(tmp_path), "--role", "chemist",
               "--layers", "2-3", "--alpha", "4", "--out", str(out), "--model-hint", "llama"])
    assert rc == 0
    assert "2->direction.1, 3->direction.2" in capsys.readouterr().out
    dirs, meta = read_gguf(out)
    assert sorted(dirs) == [2, 3] and meta["controlvector.model_hint"] == "llama"

    rc = main(["export", "--vectors", str(tmp_path), "--role", "chemist", "--out", str(out)])
    assert rc == 2 and "--layers is required for role='chemist'" in capsys.readouterr().err
    (tmp_path / "index.json").write_text(json.dumps({"roles": {"chemist": {"layer": 4, "alpha": 1.5}}}))
    rc = main(["export", "--vectors", str(tmp_path), "--role", "chemist", "--out", str(out), "--overwrite"])
    assert rc == 0
    dirs, meta = read_gguf(out)
    assert sorted(dirs) == [4] and meta["rolevec.alpha"] == 1.5
    rc = main(["export", "--vectors", str(tmp_path), "--role", "chemist", "--layers", "1", "--alpha", "1",
               "--out", str(tmp_path / "d.gguf")])
    assert rc == 2 and "layers: layer 1 is out of range; valid: 2..5" in capsys.readouterr().err


def test_export_a_shipped_vector_if_present(tmp_path):
    from rolevec_lmeval.embedded import EMBEDDED_SLUG
    from rolevec_lmeval.store import VectorStore, shipped_vectors_root

    path = shipped_vectors_root() / EMBEDDED_SLUG
    roles = VectorStore(path).roles() if path.is_dir() else []
    if not roles:
        pytest.skip("no shipped vectors for the embedded model yet")
    vec = VectorStore(path).load(roles[0])
    out = export_gguf(vec, tmp_path / "v.gguf", list(range(2, vec.n_layers)), 1.0)
    dirs, meta = read_gguf(out)
    assert sorted(dirs) == list(range(2, vec.n_layers))
    assert meta["controlvector.layer_count"] == vec.n_layers - 2
    assert all(d.shape == (vec.d_model,) for d in dirs.values())
