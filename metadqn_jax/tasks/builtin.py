"""The built-in task families, as one literal tuple (registered by :mod:`.registry`).

* ``cartpole-physics`` (``CartPole-v1``): pole length and mass, gravity, force magnitude.
* ``pointnav-rotated`` (``PointNav-v0``): the meaning of the actions rotates; fixed goal (0.7, 0).
* ``pointnav-goal`` (``PointNav-v0``): the unobserved goal, on a circle of radius 0.7.
* ``cartpole-flipped`` (``CartPoleSigned-v0``): pole length; action meaning flipped on half the tasks.

Why the CartPole families recommend ``CARTPOLE_META_DEFAULTS``: ``docs/design.md``, "Task families".
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
# CartPole (episodes of up to 500 steps): task slots live 20 meta-steps and the query comes from
# each task's 2,000-transition buffer; 8 updates per meta-step with a slower target (tau 0.99), a
# swish Q-network (ReLU's oscillated near 100), epsilon 0.2, meta_lr 1e-3 for every learner
# (context's 3e-3 and MAML's inner 0.1 diverged or peaked early here) and 1,500 meta-steps, with
# validation every 150 picking the checkpoint (BENCHMARKS.md section 1, "A pretrained baseline
# that trains"). CAVIA meta-learns first-order: its second-order meta-gradient explodes here once
# inner_lr x the support loss's curvature in the context passes 2 (BENCHMARKS.md section 1,
# "CAVIA on cartpole-flipped: why it diverged").
CARTPOLE_META_DEFAULTS = {"task_lifetime": 20, "query_source": "buffer", "buffer_size": 2000,
                          "activation": "swish", "updates_per_step": 8, "tau": 0.99, "epsilon": 0.2,
                          "meta_lr": 1e-3, "inner_lr": 0.01, "num_meta_steps": 1500,
                          "cavia": {"cavia_first_order": True}}
# cartpole-flipped: the task is the sign of the force, which a constant reward shows only through
# the dynamics. CAVIA adapts its context on TD + a model head's error (model_loss 1: the head
# predicts each transition's reward and state change), at ten times the family's inner rate, on
# random support prefixes (as short as a small budget's): 100.9 unadapted -> 265.7 after 25 steps
# over 3 meta-seeds, where it adapted 198.8 -> 210.1 before (BENCHMARKS.md section 1, "A model
# loss in the inner steps").
CARTPOLE_FLIPPED_META_DEFAULTS = {**CARTPOLE_META_DEFAULTS,
                                  "cavia": {"cavia_first_order": True, "model_loss": 1.0, "inner_lr": 0.1,
                                            "random_support": True}}
# pointnav-goal (an unobserved goal: the context must locate a point, not pick one of a few
# behaviours): a wider encoder with a post-pooling layer, a decoder loss that makes z predict
# rewards and transitions, 5 Gauss-Newton refinement steps of z on the support (the
# "semi-amortised" context learner) and 10,000 meta-steps: -3.68 after 25 steps against the
# oracle's -3.59, where the library defaults scored -8.10 (BENCHMARKS.md section 1, "pointnav-goal
# with semi-amortised inference", one meta-seed). The context fields act on the context learner only.
POINTNAV_GOAL_META_DEFAULTS = {"encoder_hidden": (128, 128), "encoder_post": (64,), "context_decoder": 10.0,
                               "context_refine": 5, "num_meta_steps": 10_000}


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
