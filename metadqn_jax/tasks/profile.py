"""What a task family's random-action rollout measures: the numbers the derived defaults read.

:func:`profile` runs uniformly random actions in ``PROFILE_TASKS`` training tasks ×
``PROFILE_ENVS`` environments for one episode limit (``max_steps_in_episode`` steps, capped at
``PROFILE_MAX_STEPS``), on device, and returns a
:class:`FamilyProfile`. The rules that turn it into ``MetaConfig`` defaults live in
:mod:`metadqn_jax.meta.derive`; why each rule: ``docs/design.md``, "Defaults derived from the family".
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metadqn_jax.core.rollout import broadcast_params, init_carry, rollout
from metadqn_jax.envs.registry import num_actions

PROFILE_TASKS = 8  # training tasks of the random rollout
PROFILE_ENVS = 4  # environments per task
PROFILE_MAX_STEPS = 1_000  # the rollout's length cap (an episode limit above it is not simulated whole)
PROFILE_SEED = 0


class FamilyProfile(NamedTuple):
    """A family's scales, from its definition and a random-action rollout (plain Python numbers).

    Attributes:
      episode_length: ``H``, the episode limit in env steps (``max_steps_in_episode``).
      gamma: the family's discount.
      num_actions: the discrete action count.
      reward_scale: the largest ``|reward|`` of one step seen under random actions (0 if every
        reward was 0, e.g. a sparse goal never reached).
      random_episode_length: the mean length of the random-action episodes that ended, in env
        steps (``episode_length`` if none ended before the limit).
    """

    episode_length: int
    gamma: float
    num_actions: int
    reward_scale: float
    random_episode_length: float

    @property
    def horizon(self) -> float:
        """The effective horizon in env steps: ``min(H, 1 / (1 - gamma))`` (``H`` for gamma 1)."""
        return float(self.episode_length) if self.gamma >= 1.0 else min(self.episode_length, 1.0 / (1.0 - self.gamma))

    @property
    def value_scale(self) -> float:
        """The size of a Q-value, in reward units: ``reward_scale × horizon``."""
        return self.reward_scale * self.horizon

    @property
    def random_ends_early(self) -> bool:
        """Random actions end an episode before half its limit (CartPole: ~22 of 500 steps)."""
        return self.random_episode_length < 0.5 * self.episode_length


def profile(family) -> FamilyProfile:
    """The :class:`FamilyProfile` of a :class:`~metadqn_jax.tasks.TaskFamily`: one jitted random
    rollout (about a second on a CPU); ``TaskFamily.profile`` caches it per family object."""
    env, base = family.env()
    horizon = int(family.episode_length)
    steps = min(horizon, PROFILE_MAX_STEPS)
    n_actions = num_actions(env, base)
    tasks = PROFILE_TASKS if family.num_tasks("train") >= PROFILE_TASKS else family.num_tasks("train")
    with jax.ensure_compile_time_eval():
        params = jax.tree.map(lambda x: x[:tasks], family.tasks("train"))
    reward_max, ended, lengths = _random_rollout(env, params, n_actions, steps)
    ended, lengths = int(ended), float(lengths)
    result = FamilyProfile(
        episode_length=horizon,
        gamma=float(family.gamma),
        num_actions=n_actions,
        reward_scale=float(reward_max),
        random_episode_length=lengths / ended if ended else float(horizon),
    )
    return result


def _random_rollout(env, params, n_actions: int, steps: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(max |r|, episodes ended, their summed lengths)`` of uniformly random actions in every
    task of ``params`` (leaves ``[tasks, ...]``), ``PROFILE_ENVS`` environments each."""

    def one_task(key, task):
        batched = broadcast_params(task, PROFILE_ENVS)
        k_reset, k_roll = jax.random.split(key)
        carry = init_carry(env, k_reset, batched)

        def policy(k, obs):
            return jax.random.randint(k, (obs.shape[0],), 0, n_actions)

        _, tr = rollout(env, policy, carry, k_roll, batched, steps)
        done = jnp.logical_or(tr.terminated, tr.truncated)  # [steps, envs]
        t = jnp.arange(1, steps + 1, dtype=jnp.float32)[:, None]
        # an episode's length: the step at which it ends minus the previous end of that env
        last_end = jax.lax.cummax(jnp.where(done, t, 0.0), axis=0)
        prev_end = jnp.concatenate([jnp.zeros_like(last_end[:1]), last_end[:-1]], axis=0)
        lengths = jnp.where(done, t - prev_end, 0.0)
        return jnp.max(jnp.abs(tr.reward)), jnp.sum(done), jnp.sum(lengths)

    n = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(jax.random.key(PROFILE_SEED), n)
    r, ended, lengths = jax.jit(jax.vmap(one_task))(keys, params)
    return jnp.max(r), jnp.sum(ended), jnp.sum(lengths)
