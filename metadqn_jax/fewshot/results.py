"""What a few-shot evaluation returns: every run's greedy return at every budget, kept with its
named axes, and its summary (mean, IQM and 95 % intervals that resample whole tasks and
meta-training seeds: :mod:`metadqn_jax.core.stats`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from metadqn_jax.core.stats import as_runs, summarize_runs

__all__ = ["FewShotResult", "summarize", "by_task"]


class FewShotResult(NamedTuple):
    """Greedy returns of every run at every budget, and their summary (:mod:`metadqn_jax.core.stats`).

    ``returns`` keeps the named axes ``[meta_seed, task, adapt_seed, budget]``
    (:data:`metadqn_jax.core.stats.AXES`); the intervals resample whole tasks (and meta-training
    seeds), never the adaptation seeds of one task. Results read back from JSON may lack
    ``returns`` and the interval bounds (``None``).
    """

    budgets: tuple[int, ...]
    returns: np.ndarray | None  # [meta_seed, task, adapt_seed, budget] float64
    mean: np.ndarray  # [budget]
    ci95: np.ndarray  # [budget], half-width of [ci_low, ci_high]
    ci_low: np.ndarray | None = None  # [budget], 95 % interval of the mean (bootstrap over tasks)
    ci_high: np.ndarray | None = None
    iqm: np.ndarray | None = None  # [budget], interquartile mean of the per-task means
    iqm_low: np.ndarray | None = None  # [budget], its 95 % interval
    iqm_high: np.ndarray | None = None


def summarize(budgets, returns, axes: str = "mtsb") -> FewShotResult:
    """A :class:`FewShotResult` of ``returns`` (axes named by ``axes``, see
    :func:`metadqn_jax.core.stats.as_runs`; e.g. ``"tsb"`` for ``[task, adapt_seed, budget]``):
    mean, IQM and 95 % intervals per budget from :func:`metadqn_jax.core.stats.summarize_runs`."""
    runs = as_runs(returns, axes)
    if runs.shape[-1] != len(budgets):
        raise ValueError(f"returns have {runs.shape[-1]} budgets, expected {len(budgets)}")
    s = summarize_runs(runs)
    return FewShotResult(tuple(budgets), runs, s.mean, s.ci95, s.ci_low, s.ci_high, s.iqm, s.iqm_low, s.iqm_high)


def by_task(returns, seeds: int) -> np.ndarray:
    """``[tasks * seeds, B]`` (task-major, as :func:`few_shot_tasks` lays the runs out) ->
    ``[tasks, seeds, B]``."""
    returns = np.asarray(returns)
    return returns.reshape(-1, seeds, returns.shape[-1])
