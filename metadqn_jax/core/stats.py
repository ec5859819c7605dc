"""Summary statistics of evaluation returns: the ONE place every table, verdict and JSON of
the package takes its means and intervals from (few-shot evaluation, the paired comparison,
``metadqn dqn`` and the sinusoid regression).
"""

from __future__ import annotations

import numpy as np

Z95 = 1.96  # two-sided 95 % quantile of the standard normal


def mean_ci95(samples, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95 % confidence half-width ``1.96 · std(ddof=1) / sqrt(n)`` along ``axis``.

    Args:
      samples: array ``[n, ...]`` (``axis=0``) of independent samples; float64 is used.
      axis: the sample axis.

    Returns:
      ``(mean [...], half_width [...])``; the half-width is 0 when ``n == 1``. NaN or inf
      samples propagate into both (no warning).
    """
    x = np.asarray(samples, np.float64)
    n = x.shape[axis]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = x.mean(axis=axis)
        if n > 1:
            half = Z95 * x.std(axis=axis, ddof=1) / np.sqrt(n)
        else:
            half = np.zeros(mean.shape)
    return mean, half
