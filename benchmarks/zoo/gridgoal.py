"""A user's own environment and two families on it, as a user of the library would write them
(``--family-module benchmarks/zoo/gridgoal.py``): ``GridGoal-v0``, a small grid where the agent
looks for a goal it does not observe.

* ``gridgoal-goal`` — the goal's cell varies (unobserved; any cell off the start's row and
  column, 64 tasks) and the reward is sparse: +1 on the goal (the episode ends there), 0 elsewhere.
* ``gridgoal-turned`` — the goal lies near a corner (16 cells) and what the four actions mean
  turns by a quarter per task step (``action_turn`` in 0..3; 64 tasks): one policy cannot serve
  every task.

Both have 64 distinct tasks, so their pools are sized to fit: 36 train, 8 validation, 20 test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from metadqn_jax import register_env
from metadqn_jax.tasks import TaskFamily, register_family

MOVES = jnp.array([[0, 1], [1, 0], [0, -1], [-1, 0]], jnp.int32)  # up, right, down, left


@struct.dataclass
class GridGoalState(environment.EnvState):
    pos: jax.Array  # [2] int32
    time: int


@struct.dataclass
class GridGoalParams(environment.EnvParams):
    goal_x: int = 8
    goal_y: int = 8
    action_turn: int = 0  # quarter turns added to every action's direction
    size: int = 9  # the grid is size x size; the agent starts in the middle
    max_steps_in_episode: int = 50


class GridGoal(environment.Environment[GridGoalState, GridGoalParams]):
    """The agent observes its position scaled to [-1, 1]^2 (not the goal) and moves one cell."""

    @property
    def default_params(self) -> GridGoalParams:
        return GridGoalParams()

    def step_env(self, key, state, action, params):
        move = MOVES[(action + params.action_turn) % 4]
        pos = jnp.clip(state.pos + move, 0, params.size - 1)
        at_goal = (pos[0] == params.goal_x) & (pos[1] == params.goal_y)
        new_state = GridGoalState(pos=pos, time=state.time + 1)
        return self.get_obs(new_state, params), new_state, at_goal.astype(jnp.float32), at_goal, {}

    def reset_env(self, key, params):
        state = GridGoalState(pos=jnp.full(2, params.size // 2, jnp.int32), time=0)
        return self.get_obs(state, params), state

    def get_obs(self, state, params=None, key=None):
        return 2.0 * state.pos.astype(jnp.float32) / (params.size - 1) - 1.0

    def is_terminated(self, state, params):
        return (state.pos[0] == params.goal_x) & (state.pos[1] == params.goal_y)

    @property
    def name(self) -> str:
        return "GridGoal-v0"

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params=None):
        return spaces.Discrete(4)

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)


register_env("GridGoal-v0", GridGoal, overwrite=True)
OFF_CENTRE = (0, 1, 2, 3, 5, 6, 7, 8)  # the agent starts at (4, 4)
NEAR_CORNERS = (0, 1, 7, 8)
POOLS = {"num_train": 36, "num_val": 8, "num_test": 20}  # 64 distinct tasks each
register_family(TaskFamily("gridgoal-goal", "GridGoal-v0", choices={"goal_x": OFF_CENTRE, "goal_y": OFF_CENTRE},
                           gamma=0.95, description="an unobserved goal cell, sparse reward (+1 on the goal)", **POOLS),
                overwrite=True)
register_family(TaskFamily("gridgoal-turned", "GridGoal-v0",
                           choices={"action_turn": (0, 1, 2, 3), "goal_x": NEAR_CORNERS, "goal_y": NEAR_CORNERS},
                           gamma=0.95, description="a goal near a corner; what the actions mean turns per task",
                           **POOLS),
                overwrite=True)
