"""Acting: ε-greedy action selection and exploration schedules (optax schedules)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon: jax.Array | float) -> jax.Array:
    """ε-greedy actions for ``q_values [..., num_actions]`` -> ``[...]`` int32.

    With probability ``epsilon`` a uniformly random action, otherwise ``argmax``.
    """
    k_explore, k_action = jax.random.split(key)
    shape = q_values.shape[:-1]
    greedy = jnp.argmax(q_values, axis=-1).astype(jnp.int32)
    random = jax.random.randint(k_action, shape, 0, q_values.shape[-1], dtype=jnp.int32)
    explore = jax.random.uniform(k_explore, shape) < epsilon
    return jnp.where(explore, random, greedy)


def linear_epsilon(start: float, end: float, decay_steps: int) -> optax.Schedule:
    """ε decays linearly from ``start`` to ``end`` over ``decay_steps`` env steps, then stays."""
    return optax.linear_schedule(start, end, max(int(decay_steps), 1))


def polyak(target_params, online_params, tau: jax.Array | float):
    """``target <- tau * target + (1 - tau) * online`` (``tau`` = 0.98 keeps 98 % of the old)."""
    return optax.incremental_update(online_params, target_params, 1.0 - tau)
