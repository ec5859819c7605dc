"""Environments: gymnax's registry plus this package's task-parameterised environments.

``make_env(env_id) -> (env, default_params)`` accepts every gymnax id and the ids registered
here (:mod:`.registry`); the built-in ones are ``PointNav-v0`` (:mod:`.pointnav`) and
``CartPoleSigned-v0`` (:mod:`.cartpole_signed`). :func:`derived_fields` gives the hook that
recomputes an ``EnvParams``' derived fields (CartPole's, :mod:`.cartpole`).
"""

from metadqn_jax.envs.cartpole import derive_cartpole
from metadqn_jax.envs.cartpole_signed import CartPoleSigned, CartPoleSignedParams
from metadqn_jax.envs.pointnav import PointNav, PointNavParams, PointNavState, point_nav_oracle_action
from metadqn_jax.envs.registry import (
    DerivedFields,
    available_envs,
    derived_fields,
    make_env,
    num_actions,
    obs_shape,
    register_derived,
    register_env,
)

__all__ = ["CartPoleSigned", "CartPoleSignedParams", "DerivedFields", "PointNav", "PointNavParams", "PointNavState",
           "available_envs", "derive_cartpole", "derived_fields", "make_env", "num_actions", "obs_shape",
           "point_nav_oracle_action", "register_derived", "register_env"]
