"""Statistics of evaluation returns: the ONE place every table, verdict, plot and JSON of the
package takes its means and intervals from (few-shot evaluation, the paired comparison with a
baseline, the CLI's verdict line, ``metadqn dqn`` and the sinusoid regression).

A claim about *new tasks* is a claim about the distribution of tasks (and of meta-training
runs), so the unit of resampling is a whole task (and a whole meta-training seed), never one
adaptation run: the adaptation seeds of one task share that task (at budget 0 they even return
the same value), and counting them as independent samples makes intervals too narrow. Returns
are kept with the named axes :data:`AXES` ``[meta_seed, task, adapt_seed, budget]`` and
summarised by a percentile bootstrap (Efron & Tibshirani 1993; the protocol of Agarwal et al.
2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice") for a crossed
design, since every meta-training seed is evaluated on the same test tasks: draw meta-training
seeds with replacement and, once per resample, tasks with replacement, the same tasks for every
drawn seed (resampling tasks within each seed independently would average the task effect over
the seeds and narrow the interval; ``tests/test_stats.py`` shows it); each task's adaptation
seeds are averaged first. The interquartile mean (IQM) and the
probability of improvement (same paper) use the same resampling. Everything is deterministic
(the resampling indices come from a fixed seed).

Example::

    >>> import numpy as np
    >>> runs = np.random.default_rng(0).normal(size=(1, 20, 3, 4))   # [meta seed, task, seed, budget]
    >>> s = summarize_runs(runs)
    >>> s.mean.shape, s.ci_low.shape, s.iqm.shape
    ((4,), (4,), (4,))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

AXES: tuple[str, ...] = ("meta_seed", "task", "adapt_seed", "budget")
N_BOOT = 2000  # bootstrap resamples
CI_METHOD = (f"percentile bootstrap, 95 %, {N_BOOT} resamples of meta-training seeds and whole tasks, crossed "
             "(the same resampled tasks for every resampled seed, as every seed is evaluated on the same test "
             "tasks); adaptation seeds of a task are averaged first, never resampled")


class Summary(NamedTuple):
    """Per-budget summary of returns ``[meta_seed, task, adapt_seed, budget]`` (every field ``[B]``, float64)."""

    mean: np.ndarray  # mean over meta seeds, tasks and adaptation seeds
    ci_low: np.ndarray  # 95 % interval of the mean (whole tasks resampled)
    ci_high: np.ndarray
    iqm: np.ndarray  # interquartile mean of the per-(meta seed, task) means
    iqm_low: np.ndarray  # its 95 % interval
    iqm_high: np.ndarray

    @property
    def ci95(self) -> np.ndarray:
        """Half-width of the mean's interval, for ``mean ± ci95`` tables (the interval itself,
        ``[ci_low, ci_high]``, may be asymmetric)."""
        return (self.ci_high - self.ci_low) / 2.0


def as_runs(returns, axes: str = "mtsb") -> np.ndarray:
    """``returns`` as float64 ``[meta_seed, task, adapt_seed, budget]``.

    Args:
      returns: an array whose axes ``axes`` names, in the order ``m`` (meta-training seed), ``t``
        (task), ``s`` (adaptation seed), ``b`` (budget); ``m``, ``t`` and ``s`` may be left out
        (size 1): e.g. ``"tb"`` for ``[task, budget]``, ``"tsb"``, ``"mtsb"``.

    Raises:
      ValueError: ``axes`` is not such a string or does not match ``returns.ndim``.
    """
    x = np.asarray(returns, np.float64)
    order = [c for c in "mtsb" if c in axes]
    if not axes.endswith("b") or list(axes) != order:
        raise ValueError(f"axes must be a subsequence of 'mtsb' ending in 'b', got {axes!r}")
    if x.ndim != len(axes):
        raise ValueError(f"returns with axes {axes!r} must have {len(axes)} dimensions, got shape {x.shape}")
    for i, c in enumerate("mtsb"):
        if c not in axes:
            x = np.expand_dims(x, i)
    return x


def task_means(runs) -> np.ndarray:
    """``[M, T, S, B] -> [M, T, B]``: each task's mean over its adaptation seeds (float64)."""
    return np.asarray(runs, np.float64).mean(axis=2)


def bootstrap_indices(m: int, t: int, n_boot: int = N_BOOT, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Resampling indices for a crossed design (every meta-training seed evaluated on the same
    test tasks): seeds and tasks are drawn independently, and the tasks drawn serve every drawn
    seed, so the task effect shared by all seeds is resampled once, not averaged over seeds.

    Returns:
      ``(seeds [n_boot, m], tasks [n_boot, m, t])``: resample ``i`` takes meta-training seeds
      ``seeds[i]`` (with replacement; all zeros when ``m == 1``) and, for each of them, tasks
      ``tasks[i, j]`` (with replacement), the same for every ``j``.
    """
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, m, size=(n_boot, m)) if m > 1 else np.zeros((n_boot, 1), np.int64)
    tasks = np.broadcast_to(rng.integers(0, t, size=(n_boot, 1, t)), (n_boot, m, t))
    return seeds, tasks


def resample(per_task: np.ndarray, seeds: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    """``per_task [M, T, ...]`` under the indices of :func:`bootstrap_indices`: ``[n_boot, M, T, ...]``."""
    return per_task[seeds[:, :, None], tasks]


def iqm(x, axis: int = 0) -> np.ndarray:
    """Interquartile mean along ``axis``: the mean of the sorted values after trimming
    ``floor(n / 4)`` from each end (``scipy.stats.trim_mean(x, 0.25)``; NaN sorts last)."""
    x = np.sort(np.asarray(x, np.float64), axis=axis)
    n = x.shape[axis]
    k = n // 4
    return np.take(x, np.arange(k, n - k), axis=axis).mean(axis=axis)


def _percentile_interval(boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore"):
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return lo, hi


def _boot_per_task(per_task: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``per_task [M, T, B]`` resampled and flattened: ``[n_boot, M * T, B]``."""
    m, t, b = per_task.shape
    seeds, tasks = bootstrap_indices(m, t, n_boot, seed)
    return resample(per_task, seeds, tasks).reshape(n_boot, m * t, b)


def summarize_runs(runs, *, n_boot: int = N_BOOT, seed: int = 0) -> Summary:
    """Mean, IQM and their 95 % intervals per budget.

    Args:
      runs: returns ``[meta_seed, task, adapt_seed, budget]`` (:func:`as_runs` builds it).
      n_boot, seed: bootstrap resamples and the seed of their indices.

    Returns:
      A :class:`Summary`; with a single (meta seed, task) the intervals have zero width.
      NaN or inf returns propagate into the statistics they enter.
    """
    per_task = task_means(runs)
    m, t, b = per_task.shape
    flat = per_task.reshape(m * t, b)
    with np.errstate(invalid="ignore", over="ignore"):
        mean, q = flat.mean(axis=0), iqm(flat, axis=0)
        if m * t == 1:
            return Summary(mean, mean, mean, q, q, q)
        lo, hi, qlo, qhi = (np.empty(b) for _ in range(4))
        for cols in _budget_chunks(b, n_boot * m * t):  # bounded memory for long curves
            boot = _boot_per_task(per_task[..., cols], n_boot, seed)  # the same draws for every budget
            lo[cols], hi[cols] = _percentile_interval(boot.mean(axis=1))
            qlo[cols], qhi[cols] = _percentile_interval(iqm(boot, axis=1))
    return Summary(mean, lo, hi, q, qlo, qhi)


def _budget_chunks(num_budgets: int, per_budget: int, max_values: int = 2_000_000):
    """Slices of the budget axis whose bootstrap arrays hold at most ``max_values`` numbers
    (a first-episode curve has one "budget" per step: 500 on CartPole)."""
    step = max(1, max_values // max(per_budget, 1))
    return [slice(i, min(i + step, num_budgets)) for i in range(0, num_budgets, step)]


class Paired(NamedTuple):
    """``a`` against ``b`` on the same tasks, per budget (every field ``[B]``)."""

    diff: np.ndarray  # mean of a − b (per-task means, paired by meta seed and task)
    diff_low: np.ndarray  # 95 % interval of that mean difference
    diff_high: np.ndarray
    p_improve: np.ndarray  # probability of improvement P(a > b) (ties count 1/2)
    p_low: np.ndarray  # its 95 % interval
    p_high: np.ndarray

    @property
    def ci95(self) -> np.ndarray:
        """Half-width of the difference's interval (for ``diff ± ci95`` tables)."""
        return (self.diff_high - self.diff_low) / 2.0

    @property
    def significant(self) -> np.ndarray:
        """``bool [B]``: the difference's interval excludes 0."""
        return (self.diff_low > 0) | (self.diff_high < 0)


def _p_improve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Probability of improvement from per-task scores ``a, b [..., M, T, B]``: for each task the
    Mann–Whitney statistic over its meta-seed pairs, ``P(a_m > b_m') + P(=)/2``, averaged over
    tasks (Agarwal et al. 2021). With one meta seed: the fraction of tasks where a beats b."""
    gt = (a[..., :, None, :, :] > b[..., None, :, :, :]).astype(np.float64)
    eq = (a[..., :, None, :, :] == b[..., None, :, :, :]).astype(np.float64)
    per_task = (gt + 0.5 * eq).mean(axis=(-4, -3))  # [..., T, B]
    return per_task.mean(axis=-2)


def paired_compare(runs_a, runs_b, *, n_boot: int = N_BOOT, seed: int = 0) -> Paired:
    """``a − b`` and ``P(a > b)`` on the same tasks, with 95 % intervals from resampling whole tasks.

    Args:
      runs_a, runs_b: returns ``[meta_seed, task, adapt_seed, budget]`` of two inits evaluated on
        the same tasks (same task order; meta seed ``m`` of ``a`` pairs with meta seed ``m`` of
        ``b`` for the difference). The same resampled tasks enter both sides, so the variation
        between tasks, which both share, cancels.

    Raises:
      ValueError: the shapes differ.
    """
    a, b = task_means(runs_a), task_means(runs_b)
    if a.shape != b.shape:
        raise ValueError(f"paired_compare needs returns of the same shape, got {np.shape(runs_a)} and "
                         f"{np.shape(runs_b)}")
    m, t, nb = a.shape
    d = (a - b).reshape(m * t, nb)
    diff, p = d.mean(axis=0), _p_improve(a, b)
    if m * t == 1:
        return Paired(diff, diff, diff, p, p, p)
    seeds, tasks = bootstrap_indices(m, t, n_boot, seed)
    ra, rb = resample(a, seeds, tasks), resample(b, seeds, tasks)  # [n_boot, M, T, B]
    lo, hi = _percentile_interval((ra - rb).reshape(n_boot, m * t, nb).mean(axis=1))
    plo, phi = _percentile_interval(_p_improve(ra, rb))
    return Paired(diff, lo, hi, p, plo, phi)


def performance_profile(runs, thresholds) -> np.ndarray:
    """Fraction of (meta seed, task) pairs whose mean return exceeds each threshold.

    Args:
      runs: returns ``[meta_seed, task, adapt_seed, budget]``.
      thresholds: ``[K]`` return thresholds ``τ``.

    Returns:
      ``[K, B]``: ``P(per-task mean return > τ)`` (Dolan & Moré 2002; Agarwal et al. 2021).
    """
    per_task = task_means(runs)
    flat = per_task.reshape(-1, per_task.shape[-1])
    tau = np.asarray(thresholds, np.float64)
    return (flat[None, :, :] > tau[:, None, None]).mean(axis=1)


class Drop(NamedTuple):
    """The largest drop of an init's mean return from an earlier budget to a later one."""

    earlier: int  # budget index i
    later: int  # budget index j > i
    diff: float  # mean return at j minus at i (paired by meta seed and task; < 0: a drop)
    diff_low: float  # its simultaneous 95 % interval over all budget pairs (whole tasks resampled)
    diff_high: float
    beyond_intervals: bool  # the two means' own 95 % intervals do not overlap (j's wholly below i's)

    @property
    def significant(self) -> bool:
        """The drop is larger than its simultaneous interval: the whole interval is below 0."""
        return self.diff_high < 0


def largest_drop(runs, *, n_boot: int = 10_000, seed: int = 0) -> Drop | None:
    """The most certain fall of an init's mean return from an earlier budget to a later one.

    For every pair of budgets ``i < j`` the paired difference ``mean_j − mean_i`` (per-task
    means, the same resampled whole tasks and meta seeds on both sides, as in
    :func:`paired_compare`) gets a percentile interval that is *simultaneous* over the ``K``
    pairs (Bonferroni: level ``1 − 0.05 / K``), since picking the worst of ``K`` differences
    would otherwise flag noise (an unchanged policy evaluated on fresh episodes at two budgets
    differs by chance). Returns the pair with the lowest upper bound (``None`` with fewer than
    two budgets); ``beyond_intervals`` also says whether the two means' ordinary 95 % intervals
    (:func:`summarize_runs`) fail to overlap, the literal reading of "drops by more than the
    intervals"."""
    per_task = task_means(np.asarray(runs, np.float64))
    m, t, b = per_task.shape
    if b < 2:
        return None
    pairs = [(i, j) for i in range(b) for j in range(i + 1, b)]
    ii, jj = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    flat = per_task.reshape(m * t, b)
    diff = flat[:, jj].mean(axis=0) - flat[:, ii].mean(axis=0)
    if m * t == 1:
        lo = hi = diff
    else:
        boot = _boot_per_task(per_task, n_boot, seed).mean(axis=1)  # [n_boot, B]
        alpha = 100 * 0.05 / len(pairs)
        lo, hi = np.percentile(boot[:, jj] - boot[:, ii], [alpha / 2, 100 - alpha / 2], axis=0)
    k = int(np.lexsort((diff, hi))[0])  # lowest upper bound, then the largest fall
    s = summarize_runs(np.asarray(runs, np.float64), seed=seed)
    i, j = pairs[k]
    return Drop(i, j, float(diff[k]), float(lo[k]), float(hi[k]), bool(s.ci_high[j] < s.ci_low[i]))
