"""Defaults derived from the task family: one set of rules for built-in and user families alike.

A family's :class:`~metadqn_jax.tasks.profile.FamilyProfile` (its episode limit ``H``, discount,
reward scale and how soon random actions end an episode, measured by a random rollout) and the
config's own sizes (``rollout_steps`` ``L``, ``envs_per_task`` ``E``, ``query_batch``) decide the
settings that were once per-family tables (``tasks/builtin.py`` before 2026-12-08). The rules, in
dependency order (each reads the fields above it, as given or derived):

* ``task_lifetime = ceil(H / L)``: a task slot lives for whole episodes (CartPole: 500 / 25 = 20
  meta-steps; PointNav: 1);
* ``buffer_size = task_lifetime × E × L``: the task's buffer holds its whole life;
* ``query_source = "adapted"`` when a task lives one meta-step (the query is a fresh rollout of
  the adapted policy), else ``"buffer"`` (queries from the task's replay);
* ``updates_per_step = 1`` with adapted queries, else ``round(REPLAY_RATIO × E × L / query_batch)``:
  each collected transition is replayed about ``REPLAY_RATIO`` (10) times (CartPole: 8);
* ``tau``: 0.95 with one update per meta-step, else ``1 - 1 / (E × L)`` (CartPole: 0.99): the
  target lags one update per transition a task collects in a meta-step;
* ``epsilon = 0.2`` when random actions end an episode before half its limit (a data policy that
  is mostly random would never see a long episode: CartPole), else 0.5;
* when a Q-value is large (``value_scale = reward_scale × min(H, 1/(1-gamma)) > VALUE_SCALE``,
  10: CartPole 100, PointNav 3.6): ``inner_lr = 0.1 × VALUE_SCALE / value_scale`` and
  ``meta_lr = 1e-3`` for every learner, a swish Q-network (ReLU's oscillated) and CAVIA's
  first-order meta-gradient (its second-order one explodes once ``inner_lr`` × the curvature
  passes 2).

A value the user gives, or one the family recommends (``TaskFamily.meta_defaults``), wins over
the rule, and the rules below it read that value. On the four built-in families the rules give
exactly the values their tables held (``tests/test_derive.py``). Why each rule and what it
measured: ``docs/design.md``, "Defaults derived from the family".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from metadqn_jax.tasks.profile import FamilyProfile

REPLAY_RATIO = 10  # times each collected transition is sampled for an update (buffer queries)
VALUE_SCALE = 10.0  # a Q-value above this (in reward units) takes the large-value settings
LARGE_VALUE_META_LR = 1e-3  # every learner's meta rate when Q-values are large
DERIVED_FIELDS: tuple[str, ...] = ("task_lifetime", "buffer_size", "query_source", "updates_per_step", "tau",
                                   "epsilon", "activation", "inner_lr", "meta_lr", "cavia_first_order")


def acting_epsilon(profile: FamilyProfile) -> float:
    """The data policy's ε: 0.2 when random actions end an episode before half its limit, else 0.5."""
    return 0.2 if profile.random_ends_early else 0.5


def derived_settings(profile: FamilyProfile, value: Callable[[str], Any]) -> dict[str, Any]:
    """The rules of this module, in dependency order.

    Args:
      profile: the family's profile (``TaskFamily.profile``).
      value: ``value(name)`` is the field's value where the user gave it or the family
        recommends it, else ``None`` (then the rule decides); the sizes ``rollout_steps``,
        ``envs_per_task`` and ``query_batch`` always have a value.

    Returns:
      ``{field: value}`` for the fields of :data:`DERIVED_FIELDS` a rule decides (those the
      user or family set are included with their set value); a field absent takes the
      algorithm's or the library's default.
    """
    out: dict[str, Any] = {}

    def take(name: str, rule: Callable[[], Any]) -> Any:
        given = value(name)
        out[name] = rule() if given is None else given
        return out[name]

    per_step = int(value("envs_per_task")) * int(value("rollout_steps"))
    lifetime = take("task_lifetime", lambda: max(1, math.ceil(profile.episode_length / int(value("rollout_steps")))))
    take("buffer_size", lambda: int(lifetime) * per_step)
    source = take("query_source", lambda: "adapted" if lifetime == 1 else "buffer")
    updates = take("updates_per_step", lambda: 1 if source == "adapted"
                   else max(1, round(REPLAY_RATIO * per_step / int(value("query_batch")))))
    take("tau", lambda: 0.95 if updates == 1 else 1.0 - 1.0 / per_step)
    take("epsilon", lambda: acting_epsilon(profile))
    if profile.value_scale > VALUE_SCALE:
        take("activation", lambda: "swish")
        take("inner_lr", lambda: float(f"{0.1 * VALUE_SCALE / profile.value_scale:.2g}"))  # 2 digits
        take("meta_lr", lambda: LARGE_VALUE_META_LR)
        if value("algorithm") == "cavia":  # the only learner that reads it
            take("cavia_first_order", lambda: True)
    return out
