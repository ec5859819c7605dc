"""Pytree types shared by every module.

All containers are immutable ``NamedTuple``s: they are pytrees, so they pass through
``jit``, ``vmap``, ``lax.scan`` and orbax checkpoints unchanged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Transition(NamedTuple):
    """One environment transition (leaves may carry leading batch / time / task axes).

    ``next_obs`` is the observation *before* gymnax's auto-reset
    (``info["final_observation"]``), so a truncated episode still bootstraps from the
    real next state. Only ``terminated`` stops bootstrapping.
    """

    obs: jax.Array  # [..., *obs_shape], float32
    action: jax.Array  # [...], int32
    reward: jax.Array  # [...], float32
    next_obs: jax.Array  # [..., *obs_shape], float32 (pre-reset observation)
    terminated: jax.Array  # [...], bool: a true terminal state, no bootstrap
    truncated: jax.Array  # [...], bool: time limit hit, bootstrap as usual


def example_transition(obs_shape: tuple[int, ...]) -> Transition:
    """One all-zero transition (no batch axis): the item shape of a replay buffer."""
    return Transition(
        obs=jnp.zeros(obs_shape, jnp.float32),
        action=jnp.zeros((), jnp.int32),
        reward=jnp.zeros((), jnp.float32),
        next_obs=jnp.zeros(obs_shape, jnp.float32),
        terminated=jnp.zeros((), bool),
        truncated=jnp.zeros((), bool),
    )


class EnvCarry(NamedTuple):
    """What a rollout carries between steps for a batch of environments."""

    env_state: Any  # gymnax EnvState, leaves [num_envs, ...]
    obs: jax.Array  # [num_envs, *obs_shape]
    episode_return: jax.Array  # [num_envs] float32, return of the running episode
    last_return: jax.Array  # [num_envs] float32, return of the last finished episode
    episodes: jax.Array  # [num_envs] int32, number of finished episodes
