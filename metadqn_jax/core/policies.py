"""Acting: ε-greedy action selection (the ε schedule is :func:`metadqn_jax.core.optim.linear_epsilon`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
