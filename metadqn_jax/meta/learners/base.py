"""What every meta-learner is: a :class:`Learner`, a tuple of pure functions over task parameters
(each typed by a ``Protocol``, as optax types its ``GradientTransformation``).

* ``MetaParams = {"net": Q-network params, [learner-specific entries: "enc", "dec", ...]}`` — what
  meta-training learns;
* ``TaskParams = {"net": Q-network params, "ctx": float32 [context_dim]}`` — the parameters of the
  Q-network a learner acts with on one task; ``ctx`` has size 0 for learners without a context.
  Test-time fine-tuning (:mod:`metadqn_jax.fewshot`) treats them as an ordinary DQN's parameters;
* ``Support = (Transition [S], mask [S] bool)`` — a task's support set; ``mask`` marks the valid
  transitions (a buffer holding fewer than ``S`` is padded at the front). A query batch has the
  same form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, Union

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax.core import losses
from metadqn_jax.core.networks import QNetwork, make_q_network
from metadqn_jax.core.types import Transition
from metadqn_jax.meta.gradient import MetaMetrics

MetaParams = dict[str, Any]
TaskParams = dict[str, Any]
Support = tuple[Transition, jax.Array]  # (Transition [S], mask [S] bool)
# a query batch, or a function of the adapted TaskParams returning one (a rollout of the adapted policy)
Query = Union[Support, Callable[[TaskParams], Support]]


class InitFn(Protocol):
    def __call__(self, key: jax.Array) -> MetaParams:
        """Fresh meta-parameters."""


class UnadaptedFn(Protocol):
    def __call__(self, meta_params: MetaParams) -> TaskParams:
        """The task parameters before any data (``ctx = 0``)."""


class AdaptFn(Protocol):
    def __call__(self, meta_params: MetaParams, target_params: MetaParams, support: Support, hp: Any) -> TaskParams:
        """The learner's adaptation to one task's support (``hp``: :class:`~metadqn_jax.meta.MetaHParams`)."""


class QValuesFn(Protocol):
    def __call__(self, task_params: TaskParams, obs: jax.Array) -> jax.Array:
        """``obs [..., *obs_shape]`` -> float32 ``[..., num_actions]``."""


class MetaGradFn(Protocol):
    def __call__(self, meta_params: MetaParams, target_params: MetaParams, support: Support, query: Query,
                 hp: Any) -> tuple[MetaParams, MetaMetrics]:
        """The meta-gradient of one task (like ``meta_params``) and its losses. A callable
        ``query`` is called on the ``stop_gradient`` of the adapted parameters, so the adaptation
        is shared with the meta-gradient."""


class TDLossFn(Protocol):
    def __call__(self, task_params: TaskParams, target_net: Any, batch: Support, hp: Any) -> tuple[jax.Array, Any]:
        """The masked DQN TD loss (shape ``()``) of ``batch`` and its aux
        (:class:`~metadqn_jax.core.losses.TDAux`); the target network bootstraps with the task's context."""


class MaskFn(Protocol):
    def __call__(self, task_params: TaskParams) -> Any:
        """A pytree of Python bools like ``task_params``: True where the inner steps change it."""


class OnlineStartFn(Protocol):
    def __call__(self, meta_params: MetaParams, support: Support) -> Any:
        """The statistics (leaves ``[...]``) of the task's transitions so far."""


class OnlineUpdateFn(Protocol):
    def __call__(self, meta_params: MetaParams, stats: Any, transition: Transition) -> Any:
        """``stats [*batch]`` after one more transition each (``transition`` leaves ``[*batch, ...]``)."""


class OnlineTaskParamsFn(Protocol):
    def __call__(self, meta_params: MetaParams, stats: Any) -> TaskParams:
        """Task parameters with ``ctx [*batch, context_dim]`` read out of ``stats [*batch]``."""


class OnlineContext(NamedTuple):
    """The O(1)-per-step form of a context learner, for acting *while* inferring the task.

    ``stats`` is any pytree with leaves ``[*batch, ...]`` for a batch shape ``[*batch]`` (e.g. one
    entry per environment); for the context learner ``stats = (sum of embeddings [..., embed_dim],
    count [...])`` and ``z = ContextEncoder.readout(*stats)`` equals the batch encoder on the same
    transitions (:func:`~metadqn_jax.meta.learners.context.encoder_sums`).
    """

    start: OnlineStartFn
    update: OnlineUpdateFn
    task_params: OnlineTaskParamsFn


class Learner(NamedTuple):
    """The pure functions that define one meta-learning algorithm (build one with
    :func:`metadqn_jax.meta.learners.make_learner`)."""

    init: InitFn
    unadapted: UnadaptedFn
    adapt: AdaptFn
    q_values: QValuesFn
    meta_grad: MetaGradFn
    td_loss: TDLossFn  # test-time fine-tuning's loss (the TD loss alone, whatever the learner adapts on)
    online: OnlineContext | None = None  # the O(1) acting-while-inferring form, where the learner has one
    adapt_mask: MaskFn | None = None  # what ``adapt``'s inner gradient steps change (the whole network,
    #   its head for ANIL, CAVIA's context); None: the learner adapts by inference, not gradient steps


class ModelLossFn(Protocol):
    def __call__(self, task_params: TaskParams, batch: Support) -> jax.Array:
        """The model head's masked mean squared error (shape ``()``) on ``batch``."""


class TaskQ(NamedTuple):
    """The Q-network side that every learner shares: task parameters, Q-values, TD loss."""

    net: QNetwork
    init: Callable[[jax.Array], Any]  # (key) -> Q-network params (the "net" entry of meta_params)
    unadapted: UnadaptedFn  # ctx = 0 of the network's dtype
    q_values: QValuesFn
    td_loss: TDLossFn
    model_loss: ModelLossFn | None = None  # None: the network has no model head (cfg.model_loss = 0)


def task_q(cfg, num_actions: int, obs_shape: tuple[int, ...], context_dim: int, *, model: bool = False) -> TaskQ:
    """The Q-network ``Q(s, ·[, ctx])`` of ``cfg`` (``hidden``, ``activation``, ``dueling``) and its DQN TD loss
    (``double``, ``huber``, discount ``hp.gamma``; the target network evaluates the bootstrap
    with the online task's context). ``context_dim = 0``: no context input. ``model=True``: the
    network also has a model head predicting, for each action, the reward and state change
    ``[1 + obs_dim]`` (:func:`model_error`), and ``TaskQ.model_loss`` is its masked mean squared
    error (summed over the outputs)."""
    obs_dim = int(np.prod(obs_shape))
    net = make_q_network(num_actions, cfg.hidden, dueling=cfg.dueling, context_dim=context_dim,
                         activation=cfg.activation, model_outputs=1 + obs_dim if model else 0)
    zeros_ctx = jnp.zeros((context_dim,), jnp.float32)

    def init(key):
        return net.init(key, jnp.zeros(obs_shape, jnp.float32), zeros_ctx if context_dim else None,
                        with_model=model)

    def unadapted(params):
        # the context takes the network's dtype (float64 networks stay float64, e.g. in tests)
        return {"net": params["net"], "ctx": zeros_ctx.astype(jax.tree.leaves(params["net"])[0].dtype)}

    def q_values(tp, obs):
        return net.apply(tp["net"], obs, tp["ctx"] if context_dim else None)

    def td_loss(tp, target_net, batch, hp) -> tuple[jax.Array, Any]:
        transitions, mask = batch
        target = {"net": target_net, "ctx": tp["ctx"]}
        return losses.td_loss(tp, target, transitions, q_values, hp.gamma,
                              double=cfg.double, huber=cfg.huber, mask=mask)

    def model_loss(tp, batch) -> jax.Array:
        transitions, mask = batch
        _, pred = net.apply(tp["net"], transitions.obs, tp["ctx"] if context_dim else None, with_model=True)
        err = model_error(pred, transitions)
        w = mask.astype(err.dtype)
        return ((err ** 2).sum(-1) * w).sum() / jnp.maximum(w.sum(), 1.0)

    return TaskQ(net, init, unadapted, q_values, td_loss, model_loss if model else None)


def model_error(pred: jax.Array, transitions) -> jax.Array:
    """The model head's error ``[B, 1 + obs_dim]`` on a batch: its prediction for the action taken
    (``pred [B, num_actions, 1 + obs_dim]``) minus the transition's reward and state change
    ``next_obs - obs`` (the pre-reset observation, so an episode's last step counts too)."""
    obs = transitions.obs.reshape(transitions.obs.shape[:1] + (-1,)).astype(pred.dtype)
    nxt = transitions.next_obs.reshape(obs.shape).astype(pred.dtype)
    target = jnp.concatenate([transitions.reward.astype(pred.dtype)[:, None], nxt - obs], -1)
    taken = jnp.take_along_axis(pred, transitions.action.astype(jnp.int32)[:, None, None], axis=1)[:, 0]
    return taken - target
