"""Interpreter start-up hook (run from ``rolevec_lmeval_startup.pth``).

lm-eval 0.4.13 has no plugin discovery, so ``--model rolevec_hf`` would not resolve. This module installs a
meta-path finder that waits until ``lm_eval.api.registry`` is imported and then registers ``rolevec_hf``
lazily (a "module:attr" placeholder). It imports neither torch nor lm_eval itself, so interpreters that
never use lm_eval pay only for this file.
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec, PathFinder

REGISTRY_MODULE = "lm_eval.api.registry"
MODEL_NAME = "rolevec_hf"
MODEL_TARGET = "rolevec_lmeval.model:RoleVecLM"


def register(registry_module) -> None:
    """Register ``rolevec_hf`` in an imported ``lm_eval.api.registry`` module."""
    # get_model() imports lm_eval.models (hf, dummy, ...) only while the registry is empty: fill it first.
    import lm_eval.models  # noqa: F401

    registry = registry_module.model_registry
    if MODEL_NAME not in registry:
        registry.register(MODEL_NAME, target=MODEL_TARGET)


class _RegisteringLoader:
    # Duck-typed (no importlib.abc: importing it costs ~20 ms at every interpreter start).
    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):  # get_code, get_source, is_package, ... of the real loader
        return getattr(self._inner, name)

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        self._inner.exec_module(module)
        try:
            register(module)
        except Exception as exc:  # never break lm_eval itself
            print(f"rolevec_lmeval: could not register {MODEL_NAME!r}: {exc}", file=sys.stderr)


class _RegistryFinder:
    def find_spec(self, fullname, path, target=None) -> ModuleSpec | None:
        if fullname != REGISTRY_MODULE:
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    if REGISTRY_MODULE in sys.modules:  # lm_eval imported before us (unusual): register now
        register(sys.modules[REGISTRY_MODULE])
    elif not any(isinstance(f, _RegistryFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegistryFinder())


install()
