"""Configuration: static settings (frozen dataclasses, hashed into ``jit``) apart from
traced hyper-parameters (``NamedTuple`` pytrees of arrays: a sweep over them is one ``vmap``
and changing them never recompiles).

Every dataclass validates itself on construction and raises one ``ValueError`` that names
the field and the allowed range — before anything is traced or compiled.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent."""


def require(ok: bool, field: str, allowed: str, value: Any) -> None:
    """Raises :class:`ConfigError` ``"<field> must be <allowed>, got <value>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field} must be {allowed}, got {value!r}")


def positive_int(name: str, value: Any) -> None:
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0,
            name, "a positive integer", value)


def nonneg_int(name: str, value: Any) -> None:
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0,
            name, "an integer >= 0", value)


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


def check_hparams(hp: NamedTuple, rules: dict[str, tuple]) -> None:
    """Validates concrete hyper-parameters (scalars or arrays, e.g. a vmapped sweep)."""
    for name, (low, high, low_open, high_open) in rules.items():
        value = getattr(hp, name)
        if hasattr(value, "aval") and not hasattr(value, "__array__"):
            continue  # a tracer: checked where it was made
        in_range(f"{type(hp).__name__}.{name}", value, low, high, low_open=low_open, high_open=high_open)


def as_hparams(cls, **values) -> Any:
    """Builds a traced-hyper-parameter NamedTuple with float32 leaves."""
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
