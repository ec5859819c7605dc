"""Argument checks of the sinusoid regression: each raises one ``ValueError`` naming the argument."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def is_int(v) -> bool:
    """True for a Python or numpy integer (``bool`` excluded)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_positive_int(name: str, v) -> None:
    """Raises ``ValueError("<name> must be a positive int, got <v>")`` unless ``v`` is an int > 0."""
    if not is_int(v) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def check_positive_float(name: str, v) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``v`` is a finite real number > 0."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    if not math.isfinite(float(v)) or float(v) <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")


def check_eval_args(tasks, shots, steps, inner_lr, grid_points) -> tuple[int, ...]:
    """Checks the arguments of an evaluation; returns ``steps`` as a tuple of ints (each >= 0)."""
    check_positive_int("shots", shots)
    check_positive_float("inner_lr", inner_lr)
    check_positive_int("grid_points", grid_points)
    steps = (steps,) if is_int(steps) else tuple(steps)
    if not steps or any(not is_int(s) or s < 0 for s in steps):
        raise ValueError(f"steps must be a non-empty sequence of ints >= 0, got {steps!r}")
    if (
        not isinstance(tasks, (tuple, list))
        or len(tasks) != 2
        or jnp.ndim(tasks[0]) != 1
        or jnp.shape(tasks[0]) != jnp.shape(tasks[1])
    ):
        raise ValueError("tasks must be a pair (amplitude [n], phase [n]) of 1-D arrays")
    return tuple(int(s) for s in steps)
