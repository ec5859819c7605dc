"""Supervised few-shot sinusoid regression (Finn et al. 2017, section 5.1) on the generic meta core.

Everything gradient-based goes through :mod:`metadqn_jax.meta.gradient`: meta-training calls
:func:`metadqn_jax.meta.gradient.batched_meta_gradient` and evaluation fine-tunes with
:func:`metadqn_jax.meta.gradient.adapt`. This module only adds the task family, the regressor, the
MSE loss, the ``lax.scan``-ned meta-training loop and the evaluation protocol.

Task family (:class:`SinusoidTasks`): ``y = A sin(x - φ)`` with ``A ~ U[0.1, 5.0]``,
``φ ~ U[0, π]`` and inputs ``x ~ U[-5, 5]``.

Algorithms (:data:`REGRESSION_ALGORITHMS`):

* ``"maml"`` / ``"fomaml"`` / ``"reptile"``: the outer rules of :mod:`metadqn_jax.meta.gradient`.
  Reptile adapts on ``support ∪ query`` (as in the Reptile paper) and feeds ``θ − θ'`` to the
  meta-optimiser.
* ``"pretrained"``: the paper's "pretrained on all tasks" baseline: one network fitted with
  plain MSE to the pooled ``support ∪ query`` points of the sampled tasks. It is exactly
  ``meta_gradient("fomaml", ..., num_steps=0)`` with query ``support ∪ query``, which is how it
  is implemented (no separate gradient code).

Typical use::

    cfg = RegressionConfig(algorithm="maml", num_iterations=70_000)
    trainer = make_meta_train(cfg)
    state, metrics = trainer.run(jax.random.key(0))
    tasks = SinusoidTasks().eval_tasks(seed=1234, n=1000)
    stats = evaluate(state.params, tasks, jax.random.key(7), shots=(5, 10))
    stats[5][1]["mean"]  # 5-shot MSE after one inner SGD step
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metadqn_jax.meta import gradient as meta
from metadqn_jax.core.networks import MLP

REGRESSION_ALGORITHMS: tuple[str, ...] = ("maml", "fomaml", "reptile", "pretrained")
_OPTIMIZERS = ("sgd", "adam")
# fold_in tags that keep the training stream and the held-out evaluation stream apart
_TRAIN_TAG = 0
_EVAL_TAG = 1


# --------------------------------------------------------------------------------------
# Task family
# --------------------------------------------------------------------------------------


class RegressionBatch(NamedTuple):
    """Few-shot data of ``n`` tasks (a pytree; leaves gain a task axis)."""

    x: jax.Array  # [n, k, 1] float32 inputs
    y: jax.Array  # [n, k, 1] float32 targets


@dataclasses.dataclass(frozen=True)
class SinusoidTasks:
    """The sinusoid task family ``y = A sin(x − φ)``.

    A *task* is a pair ``(amplitude, phase)`` of arrays with a leading task axis ``[n]``.
    All sampling is a pure function of the PRNG key: the same key gives identical tasks
    and data, different keys give (almost surely) different ones.

    Attributes:
      amp_range: ``(low, high)`` of the uniform amplitude distribution.
      phase_range: ``(low, high)`` of the uniform phase distribution.
      x_range: ``(low, high)`` of the uniform input distribution (also the evaluation grid).
    """

    amp_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def __post_init__(self) -> None:
        for name in ("amp_range", "phase_range", "x_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name} must satisfy low < high, got {(lo, hi)}")

    def sample_tasks(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """Samples ``n`` tasks.

        Args:
          key: PRNG key.
          n: number of tasks (static, > 0).

        Returns:
          ``(amplitude [n], phase [n])``, float32.
        """
        _check_positive_int("n", n)
        k_amp, k_phase = jax.random.split(key)
        amp = jax.random.uniform(k_amp, (n,), minval=self.amp_range[0], maxval=self.amp_range[1])
        phase = jax.random.uniform(
            k_phase, (n,), minval=self.phase_range[0], maxval=self.phase_range[1]
        )
        return amp, phase

    def function(self, tasks: tuple[jax.Array, jax.Array], x: jax.Array) -> jax.Array:
        """The true targets ``A sin(x − φ)``.

        Args:
          tasks: ``(amplitude [n], phase [n])``.
          x: inputs ``[n, k, 1]`` (or anything broadcasting against ``[n, 1, 1]``,
            e.g. a shared grid ``[1, g, 1]``).

        Returns:
          ``y`` with the broadcast shape of ``x`` and ``[n, 1, 1]``.
        """
        amp, phase = tasks
        return amp[:, None, None] * jnp.sin(x - phase[:, None, None])

    def sample_data(
        self, key: jax.Array, tasks: tuple[jax.Array, jax.Array], k: int
    ) -> RegressionBatch:
        """Samples ``k`` input/target pairs per task (``x ~ U[x_range]``).

        Args:
          key: PRNG key.
          tasks: ``(amplitude [n], phase [n])``.
          k: points per task (static, > 0).

        Returns:
          :class:`RegressionBatch` ``(x [n, k, 1], y [n, k, 1])``; unpacks as ``x, y``.
        """
        _check_positive_int("k", k)
        n = tasks[0].shape[0]
        x = jax.random.uniform(key, (n, k, 1), minval=self.x_range[0], maxval=self.x_range[1])
        return RegressionBatch(x, self.function(tasks, x))

    def sample_support_query(
        self, key: jax.Array, n: int, k_support: int, k_query: int
    ) -> tuple[tuple[jax.Array, jax.Array], RegressionBatch, RegressionBatch]:
        """Samples ``n`` tasks with disjoint (independently drawn) support and query sets.

        Args:
          key: PRNG key.
          n: number of tasks.
          k_support: support points per task (the K of K-shot).
          k_query: query points per task.

        Returns:
          ``(tasks, support [n, k_support, 1], query [n, k_query, 1])``.
        """
        k_tasks, k_data = jax.random.split(key)
        tasks = self.sample_tasks(k_tasks, n)
        data = self.sample_data(k_data, tasks, k_support + k_query)
        support = jax.tree.map(lambda a: a[:, :k_support], data)
        query = jax.tree.map(lambda a: a[:, k_support:], data)
        return tasks, support, query

    def eval_tasks(self, seed: int, n: int) -> tuple[jax.Array, jax.Array]:
        """Held-out evaluation tasks from their own seed.

        The key is ``fold_in(key(seed), 1)``, while meta-training draws from
        ``fold_in(key(train_seed), 0)`` (:func:`make_meta_train`), so the evaluation stream never
        coincides with a training stream, whichever seeds are chosen.

        Args:
          seed: evaluation seed (same seed ⇒ identical tasks).
          n: number of tasks.

        Returns:
          ``(amplitude [n], phase [n])``.
        """
        return self.sample_tasks(jax.random.fold_in(jax.random.key(seed), _EVAL_TAG), n)

    def grid(self, num_points: int = 100) -> jax.Array:
        """A dense evaluation grid ``[num_points, 1]`` over ``x_range``."""
        _check_positive_int("num_points", num_points)
        return jnp.linspace(self.x_range[0], self.x_range[1], num_points)[:, None]


# --------------------------------------------------------------------------------------
# Model and loss
# --------------------------------------------------------------------------------------


def make_regressor(hidden: Sequence[int] = (40, 40)) -> MLP:
    """The paper's regressor: a ReLU MLP ``[..., 1] -> [..., 1]`` with ``hidden`` widths."""
    hidden = tuple(int(h) for h in hidden)
    if not hidden or any(h <= 0 for h in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden}")
    return MLP(features=hidden + (1,))


def regressor_from_params(params) -> MLP:
    """Rebuilds the :class:`MLP` whose ``init`` produced ``params`` (widths from kernel shapes)."""
    layers = params["params"]
    n = len(layers)
    return MLP(features=tuple(int(layers[f"dense_{i}"]["kernel"].shape[1]) for i in range(n)))


def mse_loss(model: MLP) -> meta.LossFn:
    """The regression task loss for :mod:`metadqn_jax.meta.gradient`.

    Args:
      model: the regressor.

    Returns:
      ``loss_fn(params, batch) -> (mse, ())`` where ``batch = (x [k, 1], y [k, 1])`` and
      ``mse = mean((model(x) − y)²)`` (a scalar).
    """

    def loss_fn(params, batch):
        x, y = batch
        return jnp.mean((model.apply(params, x) - y) ** 2), ()

    return loss_fn


# --------------------------------------------------------------------------------------
# Meta-training
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RegressionConfig:
    """Meta-training hyper-parameters (defaults: the MAML paper's sinusoid settings).

    Attributes:
      algorithm: ``"maml"``, ``"fomaml"``, ``"reptile"`` or ``"pretrained"``.
      hidden: hidden widths of the ReLU MLP (paper: 40-40).
      shots: K, support points per task during meta-training (paper: 10).
      query_shots: query points per task (paper: K again).
      meta_batch: tasks per meta-iteration (paper: 25).
      inner_steps: inner optimiser steps (paper: 1; ignored by ``"pretrained"``).
      inner_lr: inner learning rate α (paper: 0.01).
      inner_optimizer: ``"sgd"`` or ``"adam"`` (second-order MAML through Adam uses
        ``eps_root=1e-8``, see :mod:`metadqn_jax.meta.gradient`).
      meta_lr: outer learning rate (paper: Adam 1e-3).
      meta_optimizer: ``"adam"`` or ``"sgd"`` (SGD with Reptile = the paper's ε-update).
      num_iterations: meta-iterations (paper: up to 70,000).
      chunk_size: iterations per jitted ``lax.scan`` call (progress is reported between chunks).
      seed: training seed (draws from ``fold_in(key(seed), 0)``).
    """

    algorithm: str = "maml"
    hidden: tuple[int, ...] = (40, 40)
    shots: int = 10
    query_shots: int = 10
    meta_batch: int = 25
    inner_steps: int = 1
    inner_lr: float = 0.01
    inner_optimizer: str = "sgd"
    meta_lr: float = 1e-3
    meta_optimizer: str = "adam"
    num_iterations: int = 70_000
    chunk_size: int = 5_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in REGRESSION_ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {REGRESSION_ALGORITHMS}, got {self.algorithm!r}"
            )
        hidden = tuple(self.hidden) if isinstance(self.hidden, Sequence) else None
        if not hidden or any(not _is_int(h) or h <= 0 for h in hidden):
            raise ValueError(
                f"hidden must be a non-empty sequence of positive ints, got {self.hidden!r}"
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        for name in ("shots", "query_shots", "meta_batch", "num_iterations", "chunk_size"):
            _check_positive_int(name, getattr(self, name))
        if not _is_int(self.inner_steps) or self.inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {self.inner_steps!r}")
        for name in ("inner_lr", "meta_lr"):
            _check_positive_float(name, getattr(self, name))
        for name in ("inner_optimizer", "meta_optimizer"):
            if getattr(self, name) not in _OPTIMIZERS:
                raise ValueError(
                    f"{name} must be one of {_OPTIMIZERS}, got {getattr(self, name)!r}"
                )
        if not _is_int(self.seed):
            raise ValueError(f"seed must be an int, got {self.seed!r}")


class MetaTrainState(NamedTuple):
    """The meta-training carry (a pytree)."""

    params: Any  # flax params of the regressor (meta-parameters θ)
    opt_state: Any  # meta-optimiser state
    key: jax.Array  # PRNG key of the task stream
    step: jax.Array  # shape=() int32: meta-iterations done


class TrainMetrics(NamedTuple):
    """Per-iteration diagnostics, averaged over the meta-batch (leaves ``[iterations]``)."""

    pre_adapt_loss: jax.Array  # support MSE at θ
    post_adapt_loss: jax.Array  # support MSE after the inner steps
    query_loss: jax.Array  # query MSE at the adapted parameters


class MetaTrainer(NamedTuple):
    """What :func:`make_meta_train` returns.

    Attributes:
      config: the validated configuration.
      model: the regressor.
      init: ``init(key) -> MetaTrainState``.
      train_chunk: jitted ``train_chunk(state, length) -> (state, TrainMetrics [length])``
        (``length`` static; each distinct value compiles once).
      run: ``run(key=None, callback=None) -> (state, TrainMetrics [num_iterations])``: the
        Python loop over chunks; ``callback(step, chunk_metrics)`` runs after each chunk.
    """

    config: RegressionConfig
    model: MLP
    init: Callable[[jax.Array], MetaTrainState]
    train_chunk: Callable[..., tuple[MetaTrainState, TrainMetrics]]
    run: Callable[..., tuple[MetaTrainState, TrainMetrics]]


def _make_opt(name: str, lr: float, *, second_order: bool = False) -> optax.GradientTransformation:
    if name == "sgd":
        return optax.sgd(lr)
    return optax.adam(lr, eps_root=1e-8 if second_order else 0.0)


def make_meta_train(config: RegressionConfig) -> MetaTrainer:
    """Builds the jitted, chunked meta-training loop for ``config``.

    One meta-iteration samples ``meta_batch`` tasks with ``shots`` support and ``query_shots``
    query points each, computes the meta-gradient with
    :func:`metadqn_jax.meta.gradient.batched_meta_gradient` and applies the meta-optimiser. A chunk of
    iterations is one ``lax.scan`` inside one ``jit``; all Python work happens here, outside.

    Args:
      config: a :class:`RegressionConfig` (validated on construction).

    Returns:
      A :class:`MetaTrainer`.
    """
    if not isinstance(config, RegressionConfig):
        raise ValueError(f"config must be a RegressionConfig, got {type(config).__name__}")
    cfg = config
    family = SinusoidTasks()
    model = make_regressor(cfg.hidden)
    loss_fn = mse_loss(model)
    meta_opt = _make_opt(cfg.meta_optimizer, cfg.meta_lr)
    inner_opt = _make_opt(cfg.inner_optimizer, cfg.inner_lr, second_order=cfg.algorithm == "maml")
    if cfg.algorithm == "pretrained":
        # plain MSE on the pooled points == first-order meta-gradient with zero inner steps
        algorithm, num_steps = "fomaml", 0
    else:
        algorithm, num_steps = cfg.algorithm, cfg.inner_steps

    def init(key: jax.Array) -> MetaTrainState:
        k_init, k_stream = jax.random.split(key)
        params = model.init(k_init, jnp.zeros((1, 1), jnp.float32))
        return MetaTrainState(params, meta_opt.init(params), k_stream, jnp.zeros((), jnp.int32))

    def one_iteration(state: MetaTrainState, _) -> tuple[MetaTrainState, TrainMetrics]:
        key, k_batch = jax.random.split(state.key)
        _, support, query = family.sample_support_query(
            k_batch, cfg.meta_batch, cfg.shots, cfg.query_shots
        )
        pooled = jax.tree.map(lambda s, q: jnp.concatenate([s, q], axis=1), support, query)
        if cfg.algorithm == "pretrained":
            support, query = pooled, pooled
        grads, m = meta.batched_meta_gradient(
            algorithm,
            state.params,
            loss_fn,
            support,
            query,
            inner_opt=inner_opt,
            num_steps=num_steps,
            reptile_batch=pooled if cfg.algorithm == "reptile" else None,
        )
        updates, opt_state = meta_opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = TrainMetrics(
            m.pre_adapt_loss.mean(), m.post_adapt_loss.mean(), m.query_loss.mean()
        )
        return MetaTrainState(params, opt_state, key, state.step + 1), metrics

    def _train_chunk(state: MetaTrainState, length: int) -> tuple[MetaTrainState, TrainMetrics]:
        return jax.lax.scan(one_iteration, state, None, length=length)

    train_chunk = jax.jit(_train_chunk, static_argnums=1)

    def run(
        key: jax.Array | None = None,
        callback: Callable[[int, TrainMetrics], None] | None = None,
    ) -> tuple[MetaTrainState, TrainMetrics]:
        if key is None:
            key = jax.random.fold_in(jax.random.key(cfg.seed), _TRAIN_TAG)
        state = init(key)
        chunks = []
        done = 0
        while done < cfg.num_iterations:
            length = min(cfg.chunk_size, cfg.num_iterations - done)
            state, m = train_chunk(state, length)
            done += length
            chunks.append(m)
            if callback is not None:
                callback(done, m)
        metrics = jax.tree.map(lambda *xs: jnp.concatenate(xs), *chunks)
        return state, metrics

    return MetaTrainer(cfg, model, init, train_chunk, run)


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


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
    steps = _check_eval_args(tasks, shots, steps, inner_lr, grid_points)
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
      ``"mean"``, ``"ci95"`` (``1.96·std/sqrt(n)``, std with ``ddof=1``), ``"std"``,
      ``"median"``, ``"n_diverged"`` (tasks whose fine-tuning blew up: MSE non-finite or
      > :data:`DIVERGED_MSE`; such tasks make the mean non-finite or huge, by design: they
      are reported, never dropped) and ``"n"``.
    """
    shot_list = [shots] if _is_int(shots) else list(shots)
    if not shot_list:
        raise ValueError("shots must be a positive int or a non-empty sequence of them")
    for s in shot_list:
        _check_positive_int("shots", s)
    steps = _check_eval_args(tasks, shot_list[0], steps, inner_lr, grid_points)
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


# A task's fine-tuning counts as diverged when its grid MSE is non-finite or above this
# (targets are bounded by |A| <= 5, so an MSE of 100 means predictions off by ~10 everywhere).
DIVERGED_MSE = 100.0


def _summary(mse: np.ndarray) -> dict[str, float]:
    """Mean, 95% CI (1.96·std/sqrt(n), ddof=1), median and diverged count of ``mse [n]``."""
    n = mse.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        std = float(mse.std(ddof=1)) if n > 1 else 0.0
        mean = float(mse.mean())
    return {
        "mean": mean,
        "ci95": 1.96 * std / math.sqrt(n),
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


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_positive_int(name: str, v) -> None:
    if not _is_int(v) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def _check_positive_float(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    if not math.isfinite(float(v)) or float(v) <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")


def _check_eval_args(tasks, shots, steps, inner_lr, grid_points) -> tuple[int, ...]:
    _check_positive_int("shots", shots)
    _check_positive_float("inner_lr", inner_lr)
    _check_positive_int("grid_points", grid_points)
    steps = (steps,) if _is_int(steps) else tuple(steps)
    if not steps or any(not _is_int(s) or s < 0 for s in steps):
        raise ValueError(f"steps must be a non-empty sequence of ints >= 0, got {steps!r}")
    if (
        not isinstance(tasks, (tuple, list))
        or len(tasks) != 2
        or jnp.ndim(tasks[0]) != 1
        or jnp.shape(tasks[0]) != jnp.shape(tasks[1])
    ):
        raise ValueError("tasks must be a pair (amplitude [n], phase [n]) of 1-D arrays")
    return tuple(int(s) for s in steps)
