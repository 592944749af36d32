"""Package names imported on first use (PEP 562), so that ``ppl --help`` does not import JAX."""

from __future__ import annotations

import importlib
import sys
import types


def lazy_exports(package: str, exports: dict):
    """``(__getattr__, __dir__)`` for a package whose ``exports`` map a name to the submodule
    that defines it. A name equal to its submodule's (``judges.bradley_terry``, the model) stays
    the name, not the submodule, after that submodule is imported: the package's class is set to
    one that looks such names up first, as an eager ``from .mod import name`` would bind them."""
    def getattr_(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def dir_():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    same = frozenset(name for name, mod in exports.items() if name == mod)
    if same:
        class Package(types.ModuleType):
            def __getattribute__(self, name):
                if name in same:
                    return getattr(importlib.import_module(f"{package}.{name}"), name)
                return super().__getattribute__(name)

        sys.modules[package].__class__ = Package
    return getattr_, dir_
