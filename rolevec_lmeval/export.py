"""``rolevec export --format gguf``: a role vector as a llama.cpp control vector.

llama.cpp (``common_control_vector_load_one`` + ``build_cvec``) reads 1-D F32 tensors ``direction.<k>``,
``k >= 1``, and adds ``strength * direction.<k>`` to the **output** of its 0-based block ``k`` at every token
position. rolevec steers the **input** of block ``l``, which is the output of block ``l - 1``, so

    our block-input layer l  ==  llama.cpp direction.<l - 1>     (l = 2 .. n_layers - 1)

Layers 0 (embeddings) and 1 (output of block 0) cannot be expressed: llama.cpp never steers there.
Each tensor holds ``alpha * d_l`` (the raw or centred direction for that layer), so ``--control-vector FILE``
(strength 1) reproduces ``rolevec_hf`` with ``intervention=add`` on the same layers.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolevec_lmeval.errors import RoleVecError

if TYPE_CHECKING:
    from rolevec_lmeval.vectors import RoleVector

ARCH = "controlvector"
FORMATS = ("gguf",)
FIRST_EXPORTABLE = 2  # block-input layer 2 == llama.cpp direction.1 (direction.0 is rejected by llama.cpp)


def llamacpp_index(layer: int) -> int:
    """Our block-input layer -> the ``k`` of llama.cpp's ``direction.<k>``."""
    return layer - 1


def parse_layers(text: str | int | None, n_layers: int, name: str = "layers", low: int = 0) -> list[int]:
    """``"12"``, ``"8-12"`` (inclusive), ``"8,10,12"`` -> sorted unique ints in ``low..n_layers-1``."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()] if text is not None else []
    if not parts:
        raise RoleVecError(f"{name} is empty; give e.g. 12, 8-12 or 8,10,12 (valid: {low}..{n_layers - 1})")
    out: set[int] = set()
    for part in parts:
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise RoleVecError(f"{name}={text!r} is not valid; give e.g. 12, 8-12 or 8,10,12")
        first, last = int(m[1]), int(m[2] or m[1])
        if first > last:
            raise RoleVecError(f"{name}: range {part!r} is empty (write low-high)")
        for layer in range(first, last + 1):
            if not low <= layer < n_layers:
                raise RoleVecError(f"{name}: layer {layer} is out of range; valid: {low}..{n_layers - 1}")
            out.add(layer)
    return sorted(out)


def export_gguf(
    vec: RoleVector,
    path: str | os.PathLike,
    layers: list[int],
    alpha: float,
    position: int = -1,
    method: str = "raw",
    model_hint: str = "",
    overwrite: bool = False,
) -> Path:
    """Write ``alpha * direction(l)`` for each block-input layer ``l`` as ``direction.<l-1>``; atomic."""
    import gguf
    import numpy as np

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass --overwrite to replace it)")
    if not layers:
        raise RoleVecError("layers is empty; give at least one layer")
    if alpha != alpha or alpha in (float("inf"), float("-inf")):
        raise RoleVecError(f"alpha={alpha!r} must be finite")
    for layer in layers:
        if not FIRST_EXPORTABLE <= layer < vec.n_layers:
            raise RoleVecError(
                f"layer={layer} cannot be exported; valid: {FIRST_EXPORTABLE}..{vec.n_layers - 1} "
                "(llama.cpp steers block outputs 1.., i.e. our block inputs 2..)"
            )
    hint = model_hint or str(vec.meta.get("model_type") or vec.meta.get("model_slug") or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".gguf", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, ARCH)  # sets general.architecture = "controlvector"
        if hint:
            writer.add_string(f"{ARCH}.model_hint", hint)
        writer.add_uint32(f"{ARCH}.layer_count", len(layers))
        writer.add_string("general.name", f"rolevec {vec.role}")
        writer.add_string("rolevec.role", vec.role)
        if vec.meta.get("model"):
            writer.add_string("rolevec.model", str(vec.meta["model"]))
        writer.add_float32("rolevec.alpha", float(alpha))
        writer.add_int32("rolevec.position", int(position))
        writer.add_string("rolevec.method", method)
        writer.add_array("rolevec.layers", [int(x) for x in layers])
        writer.add_string("rolevec.layer_convention", "direction.<k> = rolevec block-input layer k+1")
        for layer in sorted(layers):
            d = vec.direction(layer, position, method).detach().float() * float(alpha)  # [d_model]
            writer.add_tensor(f"direction.{llamacpp_index(layer)}", d.numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_gguf(path: str | os.PathLike) -> tuple[dict[int, Any], dict[str, Any]]:
    """(our block-input layer -> ``[d_model]`` array, scalar/string metadata) of a control-vector file."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    meta = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    if meta.get("general.architecture") != ARCH:
        raise RoleVecError(f"{path} is not a llama.cpp control vector (architecture {ARCH!r} expected)")
    dirs = {}
    for tensor in reader.tensors:
        prefix, _, k = tensor.name.partition(".")
        if prefix == "direction" and k.isdigit():
            dirs[int(k) + 1] = tensor.data.copy()
    return dirs, meta


def _run(args: argparse.Namespace) -> int:
    from rolevec_lmeval.embedded import EMBEDDED_SLUG
    from rolevec_lmeval.store import VectorStore, default_store, shipped_vectors_root

    if args.vectors:
        store = VectorStore(args.vectors)
    elif args.model:
        store = default_store(args.model)
    else:
        path = shipped_vectors_root() / EMBEDDED_SLUG
        store = VectorStore(path) if path.is_dir() else None
    if store is None:
        which = repr(args.model) if args.model else "the embedded model"
        raise RoleVecError(f"no vectors are shipped for {which}; pass --vectors FILE_OR_DIR")
    vec = store.load(args.role)
    rec = store.recommended(args.role)
    layers = args.layers if args.layers is not None else rec.get("layer")
    if layers is None:
        raise RoleVecError(
            f"--layers is required for role={args.role!r} (no recommended config); "
            f"valid: {FIRST_EXPORTABLE}..{vec.n_layers - 1}"
        )
    alpha = args.alpha if args.alpha is not None else rec.get("alpha")
    if alpha is None:
        raise RoleVecError(f"--alpha is required for role={args.role!r} (no recommended config)")
    intervention = rec.get("intervention", "add") if args.layers is None else "add"
    if intervention != "add":
        print(f"rolevec export: note: recommended intervention {intervention!r} is exported as 'add' only")
    position = args.position if args.position is not None else rec.get("position", -1)
    method = args.method or rec.get("method") or "raw"
    layer_list = parse_layers(layers, vec.n_layers, "layers", FIRST_EXPORTABLE)
    out = export_gguf(vec, args.out, layer_list, float(alpha), int(position), method, args.model_hint or "",
                      args.overwrite)
    ks = ", ".join(f"{layer}->direction.{llamacpp_index(layer)}" for layer in layer_list)
    print(f"wrote {out} (role={vec.role}, alpha={float(alpha):g}, layers {ks})")
    print(f"use: llama-cli -m MODEL.gguf --control-vector {out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a role vector for other runtimes (llama.cpp control vector)")
    p.add_argument("--format", choices=FORMATS, default="gguf", help="output format (default: gguf)")
    p.add_argument("--role", required=True, help="role to export, e.g. chemist")
    p.add_argument("--out", required=True, help="output file, e.g. chemist.gguf")
    p.add_argument("--vectors", help="a .safetensors vector file or directory (default: shipped vectors)")
    p.add_argument("--model", help="model whose shipped vectors to use (default: the embedded model)")
    p.add_argument("--layers", help="block-input layers: 12, 8-12 or 8,10,12 (default: recommended layer)")
    p.add_argument("--alpha", type=float, help="multiplier of the raw direction (default: recommended)")
    p.add_argument("--position", type=int, help="post-instruction position (default: recommended or -1)")
    p.add_argument("--method", choices=("raw", "centered"), help="default: recommended or raw")
    p.add_argument("--model-hint", help="controlvector.model_hint (default: from the vector metadata)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run)
