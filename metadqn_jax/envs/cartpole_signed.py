"""``CartPoleSigned-v0``: gymnax CartPole-v1 with a per-task ``force_sign`` (+1 / -1) in ``EnvParams``.

With ``force_sign = -1`` the meaning of "push left / push right" is flipped, so no single
policy serves every task of a family that varies it.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct
from gymnax.environments.classic_control import cartpole


# ------------------------------------------------------------------- CartPoleSigned
@struct.dataclass
class CartPoleSignedParams(cartpole.EnvParams):
    force_sign: float = 1.0  # +1: action 1 pushes right (gym); -1: action 1 pushes left


class CartPoleSigned(cartpole.CartPole):
    """CartPole-v1 whose action meaning is flipped when ``force_sign = -1``."""

    @property
    def default_params(self) -> CartPoleSignedParams:
        return CartPoleSignedParams()

    def step_env(self, key, state, action, params):
        flipped = jnp.where(params.force_sign < 0, 1 - action, action)
        return super().step_env(key, state, flipped, params)

    @property
    def name(self) -> str:
        return "CartPoleSigned-v0"
