"""Few-shot evaluation on held-out sinusoid tasks: fine-tune on K support points with plain SGD
(:func:`metadqn_jax.meta.gradient.adapt`) and measure the MSE on a dense grid."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metadqn_jax.core.networks import MLP
from metadqn_jax.core import stats
from metadqn_jax.meta import gradient as meta
from metadqn_jax.regression.checks import check_eval_args, check_positive_int, is_int
from metadqn_jax.regression.model import mse_loss, regressor_from_params
from metadqn_jax.regression.tasks import RegressionBatch, SinusoidTasks

# A task's fine-tuning counts as diverged when its grid MSE is non-finite or above this
# (targets are bounded by |A| <= 5, so an MSE of 100 means predictions off by ~10 everywhere).
DIVERGED_MSE = 100.0


def adapt_and_predict(
    params,
    tasks: tuple[jax.Array, jax.Array],
    key: jax.Array,
    shots: int,
    steps: Sequence[int] = (0, 1, 10),
    inner_lr: float = 0.01,
    *,
    grid_points: int = 100,
    family: SinusoidTasks | None = None,
    model: MLP | None = None,
) -> tuple[RegressionBatch, jax.Array, jax.Array]:
    """Fine-tunes ``params`` on ``shots`` support points of each task and predicts on the grid.

    Uses :func:`metadqn_jax.meta.gradient.adapt` with plain SGD at ``inner_lr``, vmapped over tasks.

    Args:
      params: (meta-)parameters of the regressor.
      tasks: ``(amplitude [n], phase [n])``.
      key: PRNG key for the support points.
      shots: support points per task.
      steps: inner-step counts to report (0 = no adaptation).
      inner_lr: SGD step size.
      grid_points: size of the dense grid over ``x_range``.
      family: the task family (default :class:`SinusoidTasks`).
      model: the regressor (default: rebuilt from ``params``).

    Returns:
      ``(support, grid, predictions)``: support ``(x, y)`` each ``[n, shots, 1]``, grid
      ``[grid_points, 1]`` and predictions ``[len(steps), n, grid_points]``.
    """
    steps = check_eval_args(tasks, shots, steps, inner_lr, grid_points)
    family = family or SinusoidTasks()
    model = model or regressor_from_params(params)
    grid = family.grid(grid_points)
    support = family.sample_data(key, tasks, shots)
    preds = _predict_program(model, steps, float(inner_lr))(params, support, grid)
    return support, grid, preds


def evaluate(
    params,
    tasks: tuple[jax.Array, jax.Array],
    key: jax.Array,
    shots: int | Sequence[int],
    steps: Sequence[int] = (1, 5, 10),
    inner_lr: float = 0.01,
    *,
    grid_points: int = 100,
    family: SinusoidTasks | None = None,
    model: MLP | None = None,
) -> dict[int, dict[int, dict[str, float]]]:
    """Few-shot evaluation: MSE on a dense grid after ``steps`` inner SGD steps.

    For each K in ``shots`` every task gets K support points (key ``fold_in(key, K)``, so the
    same ``key`` gives the same support sets to every method being compared); ``params`` is
    fine-tuned on them with :func:`metadqn_jax.meta.gradient.adapt` (plain SGD, ``inner_lr``) and the
    MSE against the true function is measured on ``grid_points`` evenly spaced inputs over
    ``x_range``. The whole evaluation of one K is one jitted program vmapped over tasks.

    Args:
      params: (meta-)parameters of the regressor.
      tasks: held-out tasks ``(amplitude [n], phase [n])``, e.g. from
        :meth:`SinusoidTasks.eval_tasks`.
      key: PRNG key for the support points.
      shots: K (an int) or several Ks.
      steps: numbers of inner steps to report (each ≥ 0; 0 = the unadapted prior).
      inner_lr: SGD step size of the fine-tuning.
      grid_points: points of the evaluation grid.
      family: the task family (default :class:`SinusoidTasks`).
      model: the regressor (default: rebuilt from ``params``).

    Returns:
      ``{K: {step: stats}}`` with ``stats`` a dict of Python numbers over the ``n`` tasks:
      ``"mean"``, ``"ci95"`` (half-width of ``[ci_low, ci_high]``, the 95 % bootstrap
      interval over tasks), ``"ci_low"``, ``"ci_high"``, ``"iqm"``, ``"std"`` (``ddof=1``),
      ``"median"``, ``"n_diverged"`` (tasks whose fine-tuning blew up: MSE non-finite or
      > :data:`DIVERGED_MSE`; such tasks make the mean non-finite or huge, by design: they
      are reported, never dropped) and ``"n"``.
    """
    shot_list = [shots] if is_int(shots) else list(shots)
    if not shot_list:
        raise ValueError("shots must be a positive int or a non-empty sequence of them")
    for s in shot_list:
        check_positive_int("shots", s)
    steps = check_eval_args(tasks, shot_list[0], steps, inner_lr, grid_points)
    family = family or SinusoidTasks()
    model = model or regressor_from_params(params)
    grid = family.grid(grid_points)
    program = _predict_program(model, steps, float(inner_lr))
    out: dict[int, dict[int, dict[str, float]]] = {}
    for k in shot_list:
        support = family.sample_data(jax.random.fold_in(key, k), tasks, k)
        preds = program(params, support, grid)  # [S, n, g]
        truth = family.function(tasks, grid[None])[..., 0]  # [n, g]
        sq_err = (preds - truth[None]) ** 2
        mse = np.asarray(jnp.mean(sq_err, axis=-1), dtype=np.float64)  # [S, n]
        out[int(k)] = {}
        for i, s in enumerate(steps):
            out[int(k)][int(s)] = _summary(mse[i])
    return out


def _summary(mse: np.ndarray) -> dict[str, float]:
    """Mean with its 95 % interval over tasks (:func:`metadqn_jax.core.stats.summarize_runs`: a
    bootstrap over the tasks, each one independent run), IQM, std (``ddof=1``), median and
    diverged count of ``mse [n]`` (float64), as Python numbers."""
    n = mse.shape[0]
    s = stats.summarize_runs(stats.as_runs(mse[:, None], "tb"))
    with np.errstate(invalid="ignore", over="ignore"):
        std = float(mse.std(ddof=1)) if n > 1 else 0.0
    return {
        "mean": float(s.mean[0]),
        "ci95": float(s.ci95[0]),
        "ci_low": float(s.ci_low[0]),
        "ci_high": float(s.ci_high[0]),
        "iqm": float(s.iqm[0]),
        "std": std,
        "median": float(np.median(np.where(np.isnan(mse), np.inf, mse))),  # NaN ranks as +inf
        "n_diverged": int(np.sum(~np.isfinite(mse) | (mse > DIVERGED_MSE))),
        "n": int(n),
    }


@functools.lru_cache(maxsize=32)
def _predict_program(model: MLP, steps: tuple[int, ...], inner_lr: float):
    """Cached jitted ``(params, support [n, k, 1], grid [g, 1]) -> preds [len(steps), n, g]``."""
    loss_fn = mse_loss(model)
    inner_opt = optax.sgd(inner_lr)

    def one_task(params, support, grid):
        outs = []
        for s in steps:
            adapted, _ = meta.adapt(params, loss_fn, support, inner_opt=inner_opt, num_steps=s)
            outs.append(model.apply(adapted, grid)[:, 0])
        return jnp.stack(outs)

    @jax.jit
    def program(params, support, grid):
        preds = jax.vmap(one_task, in_axes=(None, 0, None))(params, support, grid)
        return jnp.swapaxes(preds, 0, 1)

    return program
