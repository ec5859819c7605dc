"""Cheaper XLA compilation for the tests' own programs (imported by the test modules): the
library's fast-compile options (:func:`metadqn_jax.core.compile.fast_options`; semantics
unchanged, every comparison in a test is between programs built with the same options)."""

from __future__ import annotations

import functools

import jax

from metadqn_jax.core.compile import fast_options

FAST_COMPILE = fast_options()
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
