"""Divergence: the error a trainer raises when a loss, gradient norm or parameter becomes
non-finite, and the search for the first bad step in a chunk of per-step diagnostics (shared by
meta-training, :mod:`metadqn_jax.driver`, and the sinusoid regression, :mod:`metadqn_jax.regression`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["DivergenceError", "first_divergence"]


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss, gradient norm or parameter.

    Attributes:
      step: the first bad step (meta-steps taken when it happened, counted like
        ``row["meta_step"]``; for other trainers the unit is in ``unit``).
      quantity: what was non-finite first at that step: ``"query_loss"``, ``"grad_norm"`` or
        ``"meta_params"`` (meta-training; checked in that order), or the trainer's own names.
      value: its value (``nan``, ``inf`` or ``-inf``; ``nan`` for parameters).
      detail: the message without the hint, e.g. ``"meta-training diverged at meta-step 40:
        query_loss is inf"`` (for callers that print their own hint).

    ``str()`` is one line: ``detail`` followed by ``hint`` in parentheses.
    """

    def __init__(self, step: int, quantity: str, value: float, *, what: str = "meta-training",
                 unit: str = "meta-step", hint: str = "set allow_divergence=True to keep going"):
        self.step, self.quantity, self.value = int(step), str(quantity), float(value)
        self.what, self.unit, self.hint = what, unit, hint
        if quantity.endswith("params"):
            state = f"{quantity} not all finite"
        else:
            state = f"{quantity} is {self.value!r}"
        self.detail = f"{what} diverged at {unit} {self.step}: {state}"
        super().__init__(f"{self.detail} ({hint})" if hint else self.detail)

    def __reduce__(self):  # picklable (keyword-only arguments)
        return _divergence_error, (self.step, self.quantity, self.value, self.what, self.unit, self.hint)


def _divergence_error(step, quantity, value, what, unit, hint):
    return DivergenceError(step, quantity, value, what=what, unit=unit, hint=hint)


def first_divergence(checks: dict[str, Any], start_step: int) -> tuple[int, str, float] | None:
    """The first bad step of a chunk of per-step diagnostics, or ``None`` if every step is fine.

    Args:
      checks: ordered ``{quantity: per-step array [n]}``: float arrays are bad where non-finite,
        bool arrays (``*_finite`` flags, reported as the quantity without ``_finite``) where
        ``False``; at one step the first bad quantity in this order is reported.
      start_step: steps taken before the chunk (step ``i`` of the chunk is ``start_step + i + 1``).

    Returns:
      ``(step, quantity, value)`` (``value``: the non-finite value, ``nan`` for a flag).
    """
    bad = {}
    for name, v in checks.items():
        v = np.asarray(v).reshape(-1)
        bad[name] = ~v if v.dtype == bool else ~np.isfinite(v)
    any_bad = np.logical_or.reduce(list(bad.values()))
    if not any_bad.any():
        return None
    i = int(np.argmax(any_bad))
    for name, b in bad.items():
        if b[i]:
            if name.endswith("_finite"):
                return start_step + i + 1, name[: -len("_finite")], math.nan
            return start_step + i + 1, name, float(np.asarray(checks[name]).reshape(-1)[i])
    raise AssertionError("unreachable")
