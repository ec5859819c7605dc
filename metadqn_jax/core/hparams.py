"""Traced hyper-parameters: ``NamedTuple`` pytrees of float32 arrays (a sweep over them is one
``vmap``; changing them never recompiles), built and checked here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from metadqn_jax.core.validate import in_range

# field -> (low, high, low_open, high_open): the allowed range of each hyper-parameter
Rules = dict[str, tuple[float, float, bool, bool]]


def check_hparams(hp: NamedTuple, rules: Rules) -> None:
    """Checks every field of ``hp`` named in ``rules`` (a scalar, or an array ``[M]`` of a
    sweep's rows: every element) against its range; traced values (inside ``jit``) are skipped,
    they were checked where they were made.

    Raises:
      ConfigError: ``"<HParams class>.<field> must be in [low, high], got <value>"``.
    """
    for name, (low, high, low_open, high_open) in rules.items():
        value = getattr(hp, name)
        if hasattr(value, "aval") and not hasattr(value, "__array__"):
            continue  # a tracer: checked where it was made
        in_range(f"{type(hp).__name__}.{name}", value, low, high, low_open=low_open, high_open=high_open)


def as_hparams(cls, **values) -> Any:
    """``cls(**values)`` with every value as a float32 array (a number: shape ``()``; a list
    of a sweep's rows: ``[M]``)."""
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
