"""Meta-training on the sinusoid family: the configuration and the jitted, chunked loop.

Everything gradient-based goes through :mod:`metadqn_jax.meta.gradient`: one meta-iteration is
:func:`metadqn_jax.meta.gradient.batched_meta_gradient` plus the meta-optimiser update.

Algorithms (:data:`REGRESSION_ALGORITHMS`):

* ``"maml"`` / ``"fomaml"`` / ``"reptile"``: the outer rules of :mod:`metadqn_jax.meta.gradient`.
  Reptile adapts on ``support ∪ query`` (as in the Reptile paper) and feeds ``θ − θ'`` to the
  meta-optimiser.
* ``"pretrained"``: the paper's "pretrained on all tasks" baseline: one network fitted with
  plain MSE to the pooled ``support ∪ query`` points of the sampled tasks. It is exactly
  ``meta_gradient("fomaml", ..., num_steps=0)`` with query ``support ∪ query``, which is how it
  is implemented (no separate gradient code).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from metadqn_jax.core.compile import jit
from metadqn_jax.core.divergence import DivergenceError, first_divergence
from metadqn_jax.core.networks import MLP
from metadqn_jax.core.optim import INNER_OPTIMIZERS, inner_optimizer
from metadqn_jax.meta import gradient as meta
from metadqn_jax.regression.checks import check_positive_float, check_positive_int, is_int
from metadqn_jax.regression.model import make_regressor, mse_loss
from metadqn_jax.regression.tasks import TRAIN_TAG, SinusoidTasks

REGRESSION_ALGORITHMS: tuple[str, ...] = (*meta.RULES, "pretrained")


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
        if not hidden or any(not is_int(h) or h <= 0 for h in hidden):
            raise ValueError(
                f"hidden must be a non-empty sequence of positive ints, got {self.hidden!r}"
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        for name in ("shots", "query_shots", "meta_batch", "num_iterations", "chunk_size"):
            check_positive_int(name, getattr(self, name))
        if not is_int(self.inner_steps) or self.inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {self.inner_steps!r}")
        for name in ("inner_lr", "meta_lr"):
            check_positive_float(name, getattr(self, name))
        for name in ("inner_optimizer", "meta_optimizer"):
            if getattr(self, name) not in INNER_OPTIMIZERS:
                raise ValueError(
                    f"{name} must be one of {INNER_OPTIMIZERS}, got {getattr(self, name)!r}"
                )
        if not is_int(self.seed):
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
    params_finite: jax.Array  # bool: every meta-parameter finite after the update (divergence guard)


class TrainChunkFn(Protocol):
    def __call__(self, state: MetaTrainState, length: int) -> tuple[MetaTrainState, TrainMetrics]:
        """``length`` meta-iterations (static) in one jitted ``lax.scan``; metrics ``[length]``."""


class RunFn(Protocol):
    def __call__(self, key: jax.Array | None = None,
                 callback: Callable[[int, TrainMetrics], None] | None = None, *,
                 allow_divergence: bool = False) -> tuple[MetaTrainState, TrainMetrics]:
        """Every meta-iteration, chunk by chunk; metrics ``[num_iterations]``."""


class MetaTrainer(NamedTuple):
    """What :func:`make_meta_train` returns.

    Attributes:
      config: the validated configuration.
      model: the regressor.
      init: ``init(key) -> MetaTrainState``.
      train_chunk: jitted ``train_chunk(state, length) -> (state, TrainMetrics [length])``
        (``length`` static; each distinct value compiles once).
      run: ``run(key=None, callback=None, *, allow_divergence=False) -> (state, TrainMetrics
        [num_iterations])``: the Python loop over chunks; ``callback(step, chunk_metrics)`` runs
        after each chunk. At each chunk edge it checks the chunk's query losses and
        ``params_finite`` flags (computed in the compiled chunk) and raises
        :class:`metadqn_jax.core.divergence.DivergenceError` (``unit="iteration"``, quantity
        ``"query_loss"`` or ``"meta_params"``) for the first non-finite one, before the callback
        sees that chunk; ``allow_divergence=True`` keeps going.
    """

    config: RegressionConfig
    model: MLP
    init: Callable[[jax.Array], MetaTrainState]
    train_chunk: TrainChunkFn
    run: RunFn


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
    meta_opt = inner_optimizer(cfg.meta_optimizer, cfg.meta_lr)
    # second-order MAML differentiates through Adam's sqrt(v): eps_root keeps it finite at v = 0
    inner_opt = inner_optimizer(cfg.inner_optimizer, cfg.inner_lr, eps_root=1e-8 if cfg.algorithm == "maml" else 0.0)
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
        finite = jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]).all()
        metrics = TrainMetrics(
            m.pre_adapt_loss.mean(), m.post_adapt_loss.mean(), m.query_loss.mean(), finite
        )
        return MetaTrainState(params, opt_state, key, state.step + 1), metrics

    def _train_chunk(state: MetaTrainState, length: int) -> tuple[MetaTrainState, TrainMetrics]:
        return jax.lax.scan(one_iteration, state, None, length=length)

    train_chunk = jit(_train_chunk, static_argnums=1)

    def run(
        key: jax.Array | None = None,
        callback: Callable[[int, TrainMetrics], None] | None = None,
        *,
        allow_divergence: bool = False,
    ) -> tuple[MetaTrainState, TrainMetrics]:
        if key is None:
            key = jax.random.fold_in(jax.random.key(cfg.seed), TRAIN_TAG)
        state = init(key)
        chunks = []
        done = 0
        while done < cfg.num_iterations:
            length = min(cfg.chunk_size, cfg.num_iterations - done)
            state, m = train_chunk(state, length)
            if not allow_divergence:  # at the chunk edge: waits for the chunk, fetches 2 x length scalars
                bad = first_divergence({"query_loss": m.query_loss, "meta_params_finite": m.params_finite}, done)
                if bad is not None:
                    raise DivergenceError(*bad, what=f"{cfg.algorithm} meta-training", unit="iteration")
            done += length
            chunks.append(m)
            if callback is not None:
                callback(done, m)
        metrics = jax.tree.map(lambda *xs: jnp.concatenate(xs), *chunks)
        return state, metrics

    return MetaTrainer(cfg, model, init, train_chunk, run)
