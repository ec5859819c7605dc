"""Acting during meta-training: collecting a task's support, the adapted policy's query rollout,
and the online context's statistics.

Shapes: ``T`` tasks, ``E`` environments per task, ``L`` rollout steps, ``S`` support size.
``env_params`` leaves carry the environment axes in front (``[T, E, ...]`` or ``[E, ...]``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metadqn_jax.core import policies, replay, rollout
from metadqn_jax.core.types import example_transition
from metadqn_jax.meta.learners.base import Learner


def tasks_per_env(task_params: Any, num_envs: int) -> Any:
    """``EnvParams [T]`` -> ``[T, num_envs]`` (each task's params repeated for its envs)."""
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x[:, None], (x.shape[0], num_envs) + x.shape[1:]), task_params
    )


def support_mask(key: jax.Array, mask: jax.Array, random_size: bool) -> jax.Array:
    """``mask [S]`` bool, or with ``random_size`` only a uniformly random-length prefix (oldest
    first, 0 to all) of its valid entries."""
    if not random_size:
        return mask
    n_valid = mask.sum()
    keep = jax.random.randint(key, (), 0, n_valid + 1)
    first_valid = mask.shape[0] - n_valid
    pos = jnp.arange(mask.shape[0])
    return mask & (pos < first_valid + keep)


def online_step(env, learner: Learner, params, state, key: jax.Array, env_params, epsilon):
    """One ε-greedy step of every environment acting on its *online* context, then the O(1)
    context update with the new transition. ``state = (EnvCarry [E], stats [E])`` (see
    :class:`~metadqn_jax.meta.learners.base.OnlineContext`); returns ``(state, Transition [E])``.
    Scan it for an episode."""
    carry, stats = state
    k_act, k_env = jax.random.split(key)
    tp = learner.online.task_params(params, stats)
    actions = policies.epsilon_greedy(k_act, learner.q_values(tp, carry.obs), epsilon)
    carry, tr = rollout.env_step(env, k_env, carry, actions, env_params)
    return (carry, learner.online.update(params, stats, tr)), tr


def online_start_stats(learner: Learner, meta_params, support, batch_shape=()):
    """The online context's statistics of ``support`` (``(Transition [S], mask [S])``), the same
    for every entry of ``batch_shape`` (e.g. each env of a task): leaves ``[*batch_shape, ...]``."""
    stats = learner.online.start(meta_params, support)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, tuple(batch_shape) + x.shape), stats)


def online_no_data_stats(learner: Learner, meta_params, obs_shape: tuple[int, ...], batch_shape=()):
    """The online context's statistics before any transition (``z = 0``), leaves ``[*batch_shape, ...]``."""
    empty = replay.recent(replay.init(example_transition(obs_shape), 1), 1)
    return online_start_stats(learner, meta_params, empty, batch_shape)


def collect_online(env, learner: Learner, cfg, meta_params, obs_shape, carry, key, env_params, buffers, epsilon):
    """The support rollout of ``T`` tasks, every env acting ε-greedily on its online context:
    from the task's ``support_size`` most recent buffered transitions (none when
    ``task_lifetime == 1``: the buffer was just emptied) plus the env's own new transitions.

    Args:
      carry: ``EnvCarry [T, E]``; key: split into one key per task; env_params: leaves ``[T, E]``;
      buffers: ``ReplayState`` with data leaves ``[T, buffer_size, ...]``.

    Returns:
      ``(EnvCarry [T, E], Transition [T, L, E])``.
    """
    E, L, T = cfg.envs_per_task, cfg.rollout_steps, cfg.num_tasks

    def act(c, k, p, buf):
        if cfg.task_lifetime == 1:  # the buffer was just emptied: nothing to encode
            stats = online_no_data_stats(learner, meta_params, obs_shape, (E,))
        else:
            stats = online_start_stats(learner, meta_params, replay.recent(buf, cfg.support_size), (E,))
        step = lambda st, kk: online_step(env, learner, meta_params, st, kk, p, epsilon)
        (c, _), tr = jax.lax.scan(step, (c, stats), jax.random.split(k, L))
        return c, tr

    return jax.vmap(act)(carry, jax.random.split(key, T), env_params, buffers)


def collect_unadapted(env, learner: Learner, cfg, meta_params, obs_shape, carry, key, env_params, buffers, epsilon):
    """The support rollout of ``T`` tasks with the ε-greedy *unadapted* meta-policy; arguments and
    returns as :func:`collect_online` (``obs_shape`` and ``buffers`` unused)."""
    L, T = cfg.rollout_steps, cfg.num_tasks
    act_tp = learner.unadapted(meta_params)
    policy = lambda k, obs: policies.epsilon_greedy(k, learner.q_values(act_tp, obs), epsilon)
    return jax.vmap(lambda c, k, p: rollout.rollout(env, policy, c, k, p, L))(
        carry, jax.random.split(key, T), env_params
    )


def adapted_query(env, learner: Learner, cfg, tp, key: jax.Array, env_params):
    """``(Transition [query_batch], all-true mask)``: a rollout of the ε-greedy (``query_epsilon``)
    *adapted* policy ``tp`` on fresh episodes of one task (``envs_per_task`` envs from reset,
    ``env_params`` leaves ``[E]``, ``rollout_steps`` steps), ``query_batch`` transitions drawn
    uniformly (with replacement) from its ``L × E``. The meta-objective is the TD loss where the
    adapted policy goes, which is what its greedy return depends on."""
    L, E = cfg.rollout_steps, cfg.envs_per_task
    policy = lambda k, obs: policies.epsilon_greedy(k, learner.q_values(tp, obs), cfg.query_epsilon)
    k_reset, k_roll, k_pick = jax.random.split(key, 3)
    carry = rollout.init_carry(env, k_reset, env_params)
    _, tr = rollout.rollout(env, policy, carry, k_roll, env_params, L)
    tr = jax.tree.map(lambda x: x.reshape((L * E,) + x.shape[2:]), tr)
    idx = jax.random.randint(k_pick, (cfg.query_batch,), 0, L * E)
    return jax.tree.map(lambda x: x[idx], tr), jnp.ones((cfg.query_batch,), bool)
