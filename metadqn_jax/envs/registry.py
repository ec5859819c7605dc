"""Environments: gymnax's registry plus the task-parameterised environments of this package.

``make_env(env_id)`` returns ``(env, default_params)`` for any gymnax id and for the ids
registered here. Every environment follows gymnax 1.0's API: ``reset(key, params)`` and
``step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``
with auto-reset and ``info["final_observation"]``.

Built-in environments of this package (tasks live in ``EnvParams``, never in the reset key):

* ``PointNav-v0`` — discrete 2-D point navigation to an unobserved goal (in the spirit of
  MAML's 2-D navigation benchmark). The agent starts at the origin, observes only its
  position, and moves ``step_size`` in one of 4 directions; direction ``a`` points at angle
  ``a * pi / 2 + action_rotation``, so ``action_rotation`` changes what the actions *mean*.
  Reward is ``-||position - goal||`` after the move; episodes are truncated after
  ``max_steps_in_episode`` steps (no terminal states).
* ``CartPoleSigned-v0`` — gymnax CartPole with a per-task ``force_sign`` (+1 / -1): the
  meaning of "push left / push right" is flipped on half the tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnax
import jax
from gymnax.environments import environment, spaces

from metadqn_jax.envs.cartpole_signed import CartPoleSigned
from metadqn_jax.envs.pointnav import PointNav


# ------------------------------------------------------------------------- registry
_CUSTOM: dict[str, Callable[[], environment.Environment]] = {
    "PointNav-v0": PointNav,
    "CartPoleSigned-v0": CartPoleSigned,
}


def register_env(env_id: str, factory: Callable[[], environment.Environment], *, overwrite: bool = False) -> None:
    """Makes a user-defined gymnax environment available to :func:`make_env` (and so to task
    families, ``DQNConfig.env_id`` and the CLI) under ``env_id``.

    ``factory()`` must return a gymnax ``Environment`` (1.0 API: ``reset(key, params)``,
    ``step(...)`` with six outputs); its ``default_params`` are the base task.

    Raises:
      ValueError: ``env_id`` is already known (gymnax's or registered; ``overwrite=True``
        replaces a registered one) or ``factory`` is not callable.
    """
    if not callable(factory):
        raise ValueError(f"register_env({env_id!r}): factory must be a callable returning an environment, "
                         f"got {type(factory).__name__}")
    if env_id in gymnax.registered_envs or (env_id in _CUSTOM and not overwrite):
        raise ValueError(f"environment {env_id!r} is already registered (pass overwrite=True to replace "
                         "one registered with register_env)")
    _CUSTOM[env_id] = factory


def available_envs() -> list[str]:
    """All environment ids :func:`make_env` accepts."""
    return sorted(_CUSTOM) + list(gymnax.registered_envs)


def make_env(env_id: str) -> tuple[Any, Any]:
    """``(env, default_params)`` for a package or gymnax environment id.

    Raises:
      ValueError: naming the unknown id and listing the known ones.
    """
    if env_id in _CUSTOM:
        env = _CUSTOM[env_id]()
        return env, env.default_params
    if env_id in gymnax.registered_envs:
        return gymnax.make(env_id)
    raise ValueError(
        f"unknown environment {env_id!r}; known environments: {', '.join(available_envs())}"
    )


def num_actions(env, env_params) -> int:
    """Number of discrete actions (raises a clear error for continuous action spaces)."""
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Discrete):
        raise ValueError(
            f"{env.name} has a {type(space).__name__} action space; DQN needs a discrete one"
        )
    return int(space.n)


def obs_shape(env, env_params) -> tuple[int, ...]:
    """Observation shape from a dummy reset (works for every gymnax environment)."""
    obs, _ = jax.eval_shape(env.reset, jax.random.key(0), env_params)
    return tuple(obs.shape)
