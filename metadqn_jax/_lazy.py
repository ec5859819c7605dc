"""PEP 562 lazy exports for a package ``__init__``: names are imported from their modules on
first access, so importing the package (e.g. for ``metadqn --help``) imports no JAX."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package named ``package``.

    Args:
      package: the package's ``__name__``.
      exports: public name -> module that defines it.

    Returns:
      The two module-level functions; ``__getattr__`` caches each name in the package's
      namespace after its first import (later accesses are plain attribute lookups), and raises
      ``AttributeError`` for names not in ``exports`` (submodules are found by the import system).
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
