"""TD errors and DQN losses.

Per-example maths (rlax style: ``_tm1`` is the time step of the action, ``_t`` the next one);
the caller batches with ``jax.vmap`` or uses :func:`td_loss`, which does it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from metadqn_jax.core.types import Transition


def q_learning_error(
    q_tm1: jax.Array, a_tm1: jax.Array, r_t: jax.Array, discount_t: jax.Array, q_t: jax.Array
) -> jax.Array:
    """TD error ``r + discount * max_a q_t[a] - q_tm1[a_tm1]`` (target held constant)."""
    chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t], [1, 0, 0, 0, 1])
    target = r_t + discount_t * jnp.max(q_t)
    return jax.lax.stop_gradient(target) - q_tm1[a_tm1]


def double_q_learning_error(
    q_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    q_t_value: jax.Array,
    q_t_selector: jax.Array,
) -> jax.Array:
    """Double-DQN TD error: the online net selects ``argmax q_t_selector``, the target evaluates."""
    chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector], [1, 0, 0, 0, 1, 1])
    target = r_t + discount_t * q_t_value[jnp.argmax(q_t_selector)]
    return jax.lax.stop_gradient(target) - q_tm1[a_tm1]


class TDAux(NamedTuple):
    """Diagnostics of a TD loss."""

    td_error: jax.Array  # [batch] float32
    q_mean: jax.Array  # shape=() float32, mean of Q(s, a) over the batch


def td_loss(
    params,
    target_params,
    batch: Transition,
    q_fn: Callable,
    gamma: jax.Array | float,
    *,
    double: bool = True,
    huber: bool = True,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, TDAux]:
    """Mean DQN loss over a batch of transitions.

    Args:
      params: online parameters (differentiated).
      target_params: parameters that evaluate the bootstrap target (held constant).
      batch: ``Transition`` with leaves ``[B, ...]``; ``next_obs`` is the pre-reset observation.
      q_fn: ``q_fn(params, obs [B, ...]) -> [B, num_actions]``.
      gamma: discount (may be traced).
      double: double-DQN target (online net picks the action, target net evaluates it).
      huber: Huber loss (delta 1) instead of squared error (both halved as in optax).
      mask: optional ``[B]`` weights; a masked loss is the mean over the valid items only.

    Returns:
      ``(loss, TDAux)``. Bootstrapping is masked by ``terminated`` only: a truncated
      transition still bootstraps from ``next_obs``.
    """
    q_tm1 = q_fn(params, batch.obs)
    q_t_target = q_fn(target_params, batch.next_obs)
    discount = gamma * (1.0 - batch.terminated.astype(jnp.float32))
    reward = batch.reward.astype(jnp.float32)
    action = batch.action.astype(jnp.int32)
    if double:
        q_t_online = q_fn(params, batch.next_obs)
        err = jax.vmap(double_q_learning_error)(
            q_tm1, action, reward, discount, q_t_target, jax.lax.stop_gradient(q_t_online)
        )
    else:
        err = jax.vmap(q_learning_error)(q_tm1, action, reward, discount, q_t_target)
    per_example = optax.huber_loss(err, delta=1.0) if huber else 0.5 * jnp.square(err)
    q_taken = jnp.take_along_axis(q_tm1, action[:, None], axis=-1)[:, 0]
    if mask is None:
        return per_example.mean(), TDAux(err, q_taken.mean())
    w = mask.astype(jnp.float32)
    denom = jnp.maximum(w.sum(), 1.0)
    return (per_example * w).sum() / denom, TDAux(err * w, (q_taken * w).sum() / denom)
