"""Acting in gymnax environments with ``lax.scan``: the one module that knows ``env.step``.

gymnax 1.0 ``step`` returns ``(obs, state, reward, terminated, truncated, info)`` and auto-resets;
``info["final_observation"]`` is the observation before the reset, which is what a TD target
must bootstrap from on a truncated step. Environment parameters are always batched here:
every leaf of ``env_params`` has a leading ``[num_envs]`` axis (see :func:`broadcast_params`),
so one rollout can run each environment under a different task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from metadqn_jax.core.types import EnvCarry, Transition

Policy = Callable[[jax.Array, jax.Array], jax.Array]  # (key, obs [E, ...]) -> actions [E]


def broadcast_params(env_params: Any, num: int) -> Any:
    """Gives every leaf of an (unbatched) ``EnvParams`` a leading axis of size ``num``."""
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (num,) + jnp.shape(x)), env_params)


def init_carry(env, key: jax.Array, env_params: Any) -> EnvCarry:
    """Resets a batch of environments; ``env_params`` leaves ``[num_envs, ...]``."""
    num_envs = jax.tree.leaves(env_params)[0].shape[0]
    obs, state = jax.vmap(env.reset)(jax.random.split(key, num_envs), env_params)
    zeros = jnp.zeros((num_envs,), jnp.float32)
    return EnvCarry(state, obs, zeros, zeros, jnp.zeros((num_envs,), jnp.int32))


def env_step(env, key: jax.Array, carry: EnvCarry, actions: jax.Array, env_params: Any):
    """Steps every environment once. Returns ``(carry, Transition[num_envs])``."""
    num_envs = carry.obs.shape[0]
    obs, state, reward, terminated, truncated, info = jax.vmap(env.step)(
        jax.random.split(key, num_envs), carry.env_state, actions, env_params
    )
    reward = reward.astype(jnp.float32)
    done = jnp.logical_or(terminated, truncated)
    ep_return = carry.episode_return + reward
    transition = Transition(
        obs=carry.obs,
        action=actions.astype(jnp.int32),
        reward=reward,
        next_obs=info["final_observation"],
        terminated=terminated.astype(bool),
        truncated=truncated.astype(bool),
    )
    new_carry = EnvCarry(
        env_state=state,
        obs=obs,
        episode_return=jnp.where(done, 0.0, ep_return),
        last_return=jnp.where(done, ep_return, carry.last_return),
        episodes=carry.episodes + done.astype(jnp.int32),
    )
    return new_carry, transition


def rollout(
    env, policy: Policy, carry: EnvCarry, key: jax.Array, env_params: Any, num_steps: int
) -> tuple[EnvCarry, Transition]:
    """``num_steps`` steps of every environment under ``policy``.

    Returns:
      ``(carry, transitions)`` with transition leaves ``[num_steps, num_envs, ...]``.
    """

    def step(c, k):
        k_act, k_env = jax.random.split(k)
        return env_step(env, k_env, c, policy(k_act, c.obs), env_params)

    return jax.lax.scan(step, carry, jax.random.split(key, num_steps))


def greedy_returns(
    env, act: Callable[[jax.Array], jax.Array], key: jax.Array, env_params: Any, max_steps: int
) -> jax.Array:
    """Undiscounted return of one episode per environment under a deterministic policy.

    Args:
      act: ``act(obs [E, ...]) -> actions [E]`` (e.g. argmax of the Q-values).
      env_params: leaves ``[E, ...]`` — one episode is run in each environment.
      max_steps: an upper bound on the episode length (the env's ``max_steps_in_episode``).

    Returns:
      ``[E]`` float32 returns, counting rewards up to and including the first done.
    """
    carry = init_carry(env, key, env_params)

    def step(state, k):
        c, alive, total = state
        c, tr = env_step(env, k, c, act(c.obs), env_params)
        total = total + jnp.where(alive, tr.reward, 0.0)
        alive = alive & ~(tr.terminated | tr.truncated)
        return (c, alive, total), None

    num_envs = carry.obs.shape[0]
    init = (carry, jnp.ones((num_envs,), bool), jnp.zeros((num_envs,), jnp.float32))
    (_, _, total), _ = jax.lax.scan(step, init, jax.random.split(key, max_steps))
    return total
