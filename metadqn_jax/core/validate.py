"""The checks every configuration runs on construction, and the error they raise.

Static settings are frozen dataclasses (hashed into ``jit``) that validate themselves when
built and raise one :class:`ConfigError` (a ``ValueError``) naming the field and the allowed
range — before anything is traced or compiled. The traced hyper-parameters are checked by
:func:`metadqn_jax.core.hparams.check_hparams` with the same :func:`in_range`.

This module imports no JAX (only numpy); :class:`ConfigError` itself lives in
:mod:`metadqn_jax.core.errors`, which imports nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metadqn_jax.core.errors import ConfigError

__all__ = ["ConfigError", "require", "positive_int", "nonneg_int", "boolean", "in_range"]


def require(ok: bool, field: str, allowed: str, value: Any) -> None:
    """Raises :class:`ConfigError` ``"<field> must be <allowed>, got <value>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field} must be {allowed}, got {value!r}")


def positive_int(name: str, value: Any) -> None:
    """Raises :class:`ConfigError` unless ``value`` is an int (not a bool) ``> 0``."""
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0,
            name, "a positive integer", value)


def nonneg_int(name: str, value: Any) -> None:
    """Raises :class:`ConfigError` unless ``value`` is an int (not a bool) ``>= 0``."""
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0,
            name, "an integer >= 0", value)


def boolean(name: str, value: Any) -> None:
    """``value`` must be ``True`` or ``False`` (YAML's true / false)."""
    require(isinstance(value, bool), name, "true or false", value)


def in_range(name: str, value: Any, low: float, high: float, *, low_open=False, high_open=False) -> None:
    """Checks ``low (<|<=) value (<|<=) high`` for a scalar or every element of an array."""
    arr = np.asarray(value, dtype=np.float64)
    ok = bool(np.all(np.isfinite(arr)))
    ok = ok and bool(np.all(arr > low) if low_open else np.all(arr >= low))
    ok = ok and bool(np.all(arr < high) if high_open else np.all(arr <= high))
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    shown = (value.item() if hasattr(value, "item") else value) if arr.ndim == 0 else arr.tolist()
    require(ok, name, f"in {lo}{low}, {high}{hi}", shown)
