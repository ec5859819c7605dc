"""Environments: gymnax's registry plus the task-parameterised environments of this package.

``make_env(env_id)`` returns ``(env, default_params)`` for any gymnax id and for the ids
registered here. Every environment follows gymnax 1.0's API: ``reset(key, params)`` and
``step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``
with auto-reset and ``info["final_observation"]``.

Built-in environments of this package (tasks live in ``EnvParams``, never in the reset key):

* ``PointNav-v0`` (:mod:`.pointnav`) — discrete 2-D point navigation to an unobserved goal;
  ``action_rotation`` changes what the actions mean.
* ``CartPoleSigned-v0`` (:mod:`.cartpole_signed`) — gymnax CartPole with a per-task
  ``force_sign`` (+1 / -1) that flips the meaning of the actions.

Derived fields. Some ``EnvParams`` hold fields computed from others (gymnax CartPole's
``total_mass`` and ``polemass_length``, :mod:`.cartpole`). :func:`derived_fields` returns the
hook that recomputes them for a params class (registered with :func:`register_derived`); task
families apply it to every task they build and refuse to vary a derived field directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import gymnax
import jax
from gymnax.environments import environment, spaces
from gymnax.environments.classic_control import cartpole

from metadqn_jax.envs.cartpole import CARTPOLE_DERIVED, derive_cartpole
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


# -------------------------------------------------------------------- derived fields
class DerivedFields(NamedTuple):
    """How one ``EnvParams`` class recomputes its derived fields."""

    # derived field -> formula text (shown in error messages)
    formulas: Mapping[str, str]
    # params -> params with those fields recomputed; on scalar leaves (one task) and
    # elementwise on leaves [n] (a batch; numpy or JAX arrays)
    derive: Callable[[Any], Any]


# Keyed by params class; subclasses inherit an entry (derived_fields).
_DERIVED: dict[type, DerivedFields] = {
    cartpole.EnvParams: DerivedFields(CARTPOLE_DERIVED, derive_cartpole),  # CartPoleSigned too
}


def register_derived(params_type: type, formulas: Mapping[str, str], derive: Callable[[Any], Any],
                     *, overwrite: bool = False) -> None:
    """Declares the derived fields of ``params_type`` (and its subclasses).

    Args:
      params_type: an ``EnvParams`` class.
      formulas: ``{field: formula text}`` of the fields ``derive`` recomputes.
      derive: ``params -> params`` recomputing them; must work on one task (scalar leaves)
        and elementwise on a batch (leaves ``[n]``).
      overwrite: replace an existing entry for ``params_type``.

    Raises:
      ValueError: ``params_type`` already has an entry (and not ``overwrite``), or ``derive``
        is not callable.
    """
    if not callable(derive):
        raise ValueError(f"register_derived({params_type.__name__}): derive must be callable")
    if params_type in _DERIVED and not overwrite:
        raise ValueError(f"derived fields of {params_type.__name__} are already registered "
                         "(pass overwrite=True to replace them)")
    _DERIVED[params_type] = DerivedFields(dict(formulas), derive)


def derived_fields(params: Any) -> DerivedFields | None:
    """The derived-field hook of ``params``' class, else of its nearest base class that has
    one (``CartPoleSignedParams`` uses gymnax CartPole's); ``None`` if there is none."""
    for params_type in type(params).__mro__:
        if params_type in _DERIVED:
            return _DERIVED[params_type]
    return None
