"""Environments: gymnax's registry plus this package's task-parameterised environments.

``make_env(env_id) -> (env, default_params)`` accepts every gymnax id and the ids registered
here (:mod:`.registry`); the built-in ones are ``PointNav-v0`` (:mod:`.pointnav`) and
``CartPoleSigned-v0`` (:mod:`.cartpole_signed`).
"""

from metadqn_jax.envs.cartpole_signed import CartPoleSigned, CartPoleSignedParams
from metadqn_jax.envs.pointnav import PointNav, PointNavParams, PointNavState, point_nav_oracle_action
from metadqn_jax.envs.registry import available_envs, make_env, num_actions, obs_shape, register_env

__all__ = ["CartPoleSigned", "CartPoleSignedParams", "PointNav", "PointNavParams", "PointNavState",
           "available_envs", "make_env", "num_actions", "obs_shape", "point_nav_oracle_action", "register_env"]
