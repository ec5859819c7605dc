"""How the library compiles its programs: :func:`jit` is ``jax.jit`` with the compiler options in
force (:func:`compile_options`), so that a run can trade running speed for compilation speed.

XLA's default CPU pipeline optimises hard; for tiny programs (smoke tests, ``--quick`` runs,
the test suite) compilation then dominates. :func:`fast_options` (optimisation level 0, no
expensive LLVM passes, no fusion emitters) compiles such programs faster and runs large ones
slower (figures: BENCHMARKS.md, "The cost of a result"). Options change float
rounding, so a run and its resume must compile alike (``run.fast_compile`` of the commands).

>>> from metadqn_jax.core.compile import compile_options, fast_options, jit
>>> with compile_options(fast_options()):
...     f = jit(lambda x: x + 1)      # compiled with the fast options
>>> int(f(1))
2
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax

__all__ = ["jit", "compile_options", "current_options", "fast_options"]

_options: dict[str, Any] = {}  # in force now (compile_options)


def current_options() -> dict[str, Any]:
    """The compiler options :func:`jit` uses now (``{}``: XLA's defaults)."""
    return dict(_options)


@contextlib.contextmanager
def compile_options(options: Mapping[str, Any] | None) -> Iterator[None]:
    """Within the block, :func:`jit` builds programs that compile with ``options`` (``None`` or
    ``{}``: XLA's defaults), in every thread (a command's worker threads too); the options in
    force before come back afterwards."""
    global _options
    old, _options = _options, dict(options or {})
    try:
        yield
    finally:
        _options = old


def jit(fun: Callable | None = None, **kwargs: Any) -> Callable:
    """``jax.jit(fun, **kwargs)`` with :func:`current_options` as its ``compiler_options`` (any
    given in ``kwargs`` on top). Usable as a decorator."""
    if fun is None:
        return functools.partial(jit, **kwargs)
    options = {**current_options(), **(kwargs.pop("compiler_options", None) or {})}
    return jax.jit(fun, compiler_options=options or None, **kwargs)


@functools.cache
def fast_options() -> dict[str, Any]:
    """Compiler options that compile small programs fast on this backend: XLA's CPU backend at
    optimisation level 0, without its expensive LLVM passes and fusion emitters (the options this
    backend does not know are left out; ``{}`` on a backend that knows none)."""
    wanted = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
              "xla_cpu_use_fusion_emitters": False}
    known = {}
    for name, value in wanted.items():
        try:
            jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(1.0).compile()
        except Exception:  # noqa: BLE001 - an option this XLA / backend does not know
            continue
        known[name] = value
    return known
