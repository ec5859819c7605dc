"""The built-in task families, as one literal tuple (registered by :mod:`.registry`).

* ``cartpole-physics`` (``CartPole-v1``): pole length and mass, gravity, force magnitude.
* ``pointnav-rotated`` (``PointNav-v0``): the meaning of the actions rotates; fixed goal (0.7, 0).
* ``pointnav-goal`` (``PointNav-v0``): the unobserved goal, on a circle of radius 0.7.
* ``cartpole-flipped`` (``CartPoleSigned-v0``): pole length; action meaning flipped on half the tasks.

Why the families recommend what they do (``*_META_DEFAULTS``): ``docs/design.md``, "Task families".
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from metadqn_jax import envs
from metadqn_jax.tasks.family import TaskFamily
from metadqn_jax.tasks.pools import SampleFn

POINTNAV_GOAL_RADIUS = 0.7
# PointNav (25-step episodes): budgets up to 20 episodes, beyond the 100-step support set
POINTNAV_BUDGETS = (0, 25, 50, 100, 250, 500)
# CartPole: every setting its long episodes and returns in the hundreds need is derived from the
# family (metadqn_jax.meta.derive: task lifetime, buffer, queries, replay ratio, target, epsilon,
# swish, learning rates); what stays is what no rule derives (docs/design.md, "Defaults derived
# from the family"): 1,500 meta-steps, where both families' validation picks its checkpoint.
CARTPOLE_META_DEFAULTS = {"num_meta_steps": 1500}
# cartpole-flipped: the task (the sign of the force) shows only through the dynamics, so CAVIA also
# adapts its context on a model head's error (model_loss), at ten times the derived inner rate, on
# random support prefixes (docs/design.md, "Task families").
CARTPOLE_FLIPPED_META_DEFAULTS = {**CARTPOLE_META_DEFAULTS,
                                  "cavia": {"model_loss": 1.0, "inner_lr": 0.1, "random_support": True}}
# pointnav-goal (an unobserved goal: the context must locate a point, not pick one of a few
# behaviours): the semi-amortised context learner — a wider encoder with a post-pooling layer, a
# decoder loss that makes z predict rewards and transitions, 5 Gauss-Newton refinement steps of z
# on the support — and 10,000 meta-steps (docs/design.md, "Task families"). The context fields act
# on the context learner only.
POINTNAV_GOAL_META_DEFAULTS = {"encoder_hidden": (128, 128), "encoder_post": (64,), "context_decoder": 10.0,
                               "context_refine": 5, "num_meta_steps": 10_000,
                               # measured without the z = 0 term (its 100-minute re-run is still to do)
                               "zero_context": 0.0}


def goal_circle_sampler(radius: float) -> SampleFn:
    """A ``sample_fn`` putting PointNav's goal uniformly on a circle of ``radius``.

    Returns ``fn(key, n) -> {"goal_x": [n], "goal_y": [n]}`` (float32) with angle ``U[0, 2 pi)``.
    """

    def sample_goal(key: jax.Array, n: int) -> dict[str, jax.Array]:
        angle = jax.random.uniform(key, (n,), jnp.float32, 0.0, 2.0 * jnp.pi)
        return {"goal_x": radius * jnp.cos(angle), "goal_y": radius * jnp.sin(angle)}

    return sample_goal


BUILTIN_FAMILIES: tuple[TaskFamily, ...] = (
    TaskFamily(
        "cartpole-physics",
        "CartPole-v1",
        ranges={
            "length": (0.25, 1.0),
            "masspole": (0.05, 0.5),
            "gravity": (7.0, 12.0),
            "force_mag": (5.0, 15.0),
        },
        gamma=0.99,
        meta_defaults=CARTPOLE_META_DEFAULTS,
        description="CartPole with varied physics (one policy can serve all tasks)",
    ),
    TaskFamily(
        "pointnav-rotated",
        "PointNav-v0",
        ranges={"action_rotation": (0.0, 2.0 * math.pi)},
        base_params=envs.PointNavParams(goal_x=POINTNAV_GOAL_RADIUS, goal_y=0.0),
        gamma=0.5,
        description="conflicting: fixed goal (0.7, 0), the meaning of the actions rotates per task",
        budgets=POINTNAV_BUDGETS,
    ),
    TaskFamily(
        "pointnav-goal",
        "PointNav-v0",
        sample_fn=goal_circle_sampler(POINTNAV_GOAL_RADIUS),
        sample_desc=f"goal = {POINTNAV_GOAL_RADIUS:g}*(cos a, sin a), a~U[0, 2pi)",
        gamma=0.5,
        meta_defaults=POINTNAV_GOAL_META_DEFAULTS,
        description="unobserved goal on a circle of radius 0.7",
        budgets=POINTNAV_BUDGETS,
    ),
    TaskFamily(
        "cartpole-flipped",
        "CartPoleSigned-v0",
        ranges={"length": (0.4, 0.6)},
        choices={"force_sign": (-1.0, 1.0)},
        gamma=0.99,
        meta_defaults=CARTPOLE_FLIPPED_META_DEFAULTS,
        description="conflicting: the action meaning is flipped on half the tasks",
    ),
)
