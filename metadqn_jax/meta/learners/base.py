"""What every meta-learner is: a :class:`Learner`, a tuple of pure functions over task parameters.

``TaskParams = {"net": Q-network params, "ctx": float32 [context_dim]}`` — the parameters of the
Q-network a learner acts with on one task; ``ctx`` has size 0 for learners without a context.
Test-time fine-tuning (:mod:`metadqn_jax.fewshot`) treats them as an ordinary DQN's parameters.
``Support = (Transition [S], mask [S] bool)``: a task's support set; ``mask`` marks the valid
transitions (a buffer holding fewer than ``S`` is padded at the front).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax.core import losses
from metadqn_jax.core.networks import QNetwork, make_q_network


class OnlineContext(NamedTuple):
    """The O(1)-per-step form of a context learner, for acting *while* inferring the task.

    ``stats`` is any pytree with leaves ``[*batch, ...]`` for a batch shape ``[*batch]`` (e.g. one
    entry per environment); for the context learner ``stats = (sum of embeddings [..., embed_dim],
    count [...])`` and ``z = ContextEncoder.readout(*stats)`` equals the batch encoder on the same
    transitions (:func:`~metadqn_jax.meta.learners.context.encoder_sums`).
    """

    start: Callable  # (meta_params, Support) -> stats [] of the task's transitions so far
    update: Callable  # (meta_params, stats [*batch], Transition [*batch]) -> stats, one more transition each
    task_params: Callable  # (meta_params, stats [*batch]) -> TaskParams with ctx [*batch, context_dim]


class Learner(NamedTuple):
    """The pure functions that define one meta-learning algorithm (build one with
    :func:`metadqn_jax.meta.learners.make_learner`)."""

    init: Callable  # (key) -> meta_params {"net": ..., [learner-specific entries]}
    unadapted: Callable  # (meta_params) -> TaskParams, the policy before any data (ctx = 0)
    adapt: Callable  # (meta_params, target_params, Support, hp: MetaHParams) -> TaskParams
    q_values: Callable  # (TaskParams, obs [..., *obs_shape]) -> float32 [..., num_actions]
    meta_grad: Callable  # (meta_params, target_params, Support, query, hp) -> (grads, gradient.MetaMetrics)
    #   grads: like meta_params; query: (Transition [Q], mask [Q]) or a function of the adapted
    #   TaskParams returning one (called on their stop_gradient; the adaptation is then shared
    #   with the meta-gradient)
    td_loss: Callable  # (TaskParams, target_net, (Transition [B], mask [B]), hp) -> (shape=() loss, aux)
    online: OnlineContext | None = None  # the O(1) acting-while-inferring form, where the learner has one
    adapt_mask: Callable | None = None  # (TaskParams) -> pytree of Python bools like TaskParams: True
    #   where ``adapt``'s inner gradient steps change the parameters (the whole network, its head
    #   for ANIL, CAVIA's context); None: the learner adapts by inference, not gradient steps


class TaskQ(NamedTuple):
    """The Q-network side that every learner shares: task parameters, Q-values, TD loss."""

    net: QNetwork
    init: Callable  # (key) -> Q-network params (the "net" entry of meta_params)
    unadapted: Callable  # (meta_params) -> TaskParams with ctx = 0 of the network's dtype
    q_values: Callable  # (TaskParams, obs [..., *obs_shape]) -> [..., num_actions]
    td_loss: Callable  # (TaskParams, target_net, (Transition, mask), hp) -> (loss, aux)
    model_loss: Callable | None = None  # (TaskParams, (Transition, mask)) -> shape=() loss; None:
    #   the network has no model head (cfg.model_loss = 0)


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
