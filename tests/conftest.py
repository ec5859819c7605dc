"""Shared pytest setup: strict numerics so silent broadcasting bugs fail loudly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jax
import pytest

from metadqn_jax.core.compile import compile_options, fast_options

# Implicit rank promotion (e.g. [B] + [B, 1] -> [B, B]) is a classic silent RL bug: raise.
jax.config.update("jax_numpy_rank_promotion", "raise")

# Full float32 matmuls: on a GPU, JAX's default precision uses TF32, and the equality checks
# below (vmapped vs loop, jit vs no jit, incremental vs batch) then fail at float32 tolerances
# (11 of them did on an H200, BENCHMARKS.md §4 "On a GPU"). No effect on the CPU backend.
jax.config.update("jax_default_matmul_precision", "highest")


# Persistent XLA cache shared by every test and the tests' subprocesses: most tests build small
# programs that other tests build too (the same tiny configs), and an identical program then
# compiles once per session instead of once per test.
TEST_COMPILE_CACHE = Path(
    os.environ.get("METADQN_TEST_COMPILE_CACHE", Path(tempfile.gettempdir()) / "metadqn_jax_test_xla")
)
jax.config.update("jax_compilation_cache_dir", str(TEST_COMPILE_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
# The commands' other caches (the oracle's returns) outside the user's home, for every test and
# subprocess
os.environ["METADQN_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "metadqn_jax_test_cache")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a ``metadqn`` subprocess in the tests: the shared XLA cache (every
    compilation cached), CPU only, warnings quiet, no debug mode; ``extra`` on top."""
    env = dict(os.environ)
    env.update(METADQN_COMPILE_CACHE=str(TEST_COMPILE_CACHE), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore", **extra)
    env.pop("METADQN_DEBUG", None)
    return env


@pytest.fixture(scope="module")
def shared_compile_cache():
    """The persistent cache :data:`TEST_COMPILE_CACHE` (on for every test); afterwards the
    in-memory jit caches are cleared (later test modules count jit cache entries, e.g. of
    meta_train)."""
    yield TEST_COMPILE_CACHE
    jax.clear_caches()


@pytest.fixture(scope="session", autouse=True)
def fast_compile():
    """The tests' programs are small: the library compiles them for compilation speed (about
    2.5x faster to compile, the same semantics; core.compile.fast_options). A test that runs long
    programs can opt out with ``with compile_options(None):`` around building them."""
    with compile_options(fast_options()):
        yield
