"""``PointNav-v0``: discrete 2-D point navigation to an unobserved goal held in ``EnvParams``.

In the spirit of MAML's 2-D navigation benchmark. The agent starts at the origin, observes
only its position ``[2]``, and moves ``step_size`` in one of 4 directions; direction ``a``
points at angle ``a * pi / 2 + action_rotation``, so ``action_rotation`` changes what the
actions *mean*. Reward is ``-||position - goal||`` after the move; episodes are truncated
after ``max_steps_in_episode`` steps (no terminal states). gymnax 1.0 API (six-output
``step`` with auto-reset). The task lives in ``EnvParams`` only: the reset key never changes
it (why: ``docs/design.md``, "Task families").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


# --------------------------------------------------------------------------- PointNav
@struct.dataclass
class PointNavState(environment.EnvState):
    pos: jax.Array  # [2] float32
    time: int


@struct.dataclass
class PointNavParams(environment.EnvParams):
    goal_x: float = 0.7
    goal_y: float = 0.0
    action_rotation: float = 0.0  # radians added to every action's direction
    step_size: float = 0.1
    bound: float = 1.0  # positions are clipped to [-bound, bound]^2
    max_steps_in_episode: int = 25


class PointNav(environment.Environment[PointNavState, PointNavParams]):
    """Discrete-action 2-D navigation to a goal held in ``EnvParams`` (see module doc)."""

    @property
    def default_params(self) -> PointNavParams:
        return PointNavParams()

    def step_env(self, key, state, action, params):
        angle = action.astype(jnp.float32) * (jnp.pi / 2) + params.action_rotation
        move = params.step_size * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
        pos = jnp.clip(state.pos + move, -params.bound, params.bound)
        goal = jnp.stack([params.goal_x, params.goal_y]).astype(jnp.float32)
        reward = -jnp.linalg.norm(pos - goal)
        new_state = PointNavState(pos=pos, time=state.time + 1)
        terminated = jnp.zeros((), bool)
        return (
            jax.lax.stop_gradient(pos),
            jax.lax.stop_gradient(new_state),
            reward.astype(jnp.float32),
            terminated,
            {},
        )

    def reset_env(self, key, params):
        state = PointNavState(pos=jnp.zeros(2, jnp.float32), time=0)
        return state.pos, state

    def get_obs(self, state, params=None, key=None):
        return state.pos

    def is_terminated(self, state, params):
        return jnp.zeros((), bool)

    @property
    def name(self) -> str:
        return "PointNav-v0"

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params=None):
        return spaces.Discrete(4)

    def observation_space(self, params):
        return spaces.Box(-params.bound, params.bound, (2,), jnp.float32)


def point_nav_oracle_action(obs: jax.Array, params: PointNavParams) -> jax.Array:
    """The greedy-on-distance action: the move that ends closest to the goal. ``obs [2] -> []``."""
    angles = jnp.arange(4, dtype=jnp.float32) * (jnp.pi / 2) + params.action_rotation
    moves = params.step_size * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    pos = jnp.clip(obs[None] + moves, -params.bound, params.bound)
    goal = jnp.stack([params.goal_x, params.goal_y]).astype(jnp.float32)
    return jnp.argmin(jnp.linalg.norm(pos - goal[None], axis=-1)).astype(jnp.int32)
