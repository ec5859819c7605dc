"""Cheaper XLA compilation for the tests' own programs (imported by the test modules)."""

from __future__ import annotations

import functools

import jax


def _fast_compile_options() -> dict:
    """Cheaper XLA compilation for the test programs (semantics unchanged; every comparison
    in a test is between programs built with the same options). Falls back to the defaults
    where this XLA does not know an option."""
    opts = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
            "xla_cpu_use_fusion_emitters": False}
    try:
        jax.jit(lambda x: x + 1, compiler_options=opts).lower(1.0).compile()
    except Exception:  # noqa: BLE001 — an unknown option on another XLA version / backend
        return {}
    return opts


FAST_COMPILE = _fast_compile_options()
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
