"""Task families: distributions over gymnax ``EnvParams`` with disjoint train / val / test splits.

:mod:`.family` (the :class:`TaskFamily` description), :mod:`.checks` (its named checks),
:mod:`.spec` (its definition as plain data), :mod:`.pools` (pure pool building), :mod:`.builtin`
(the built-in families), :mod:`.registry` (``get_family`` & co.).
"""

from metadqn_jax.core.rollout import broadcast_params
from metadqn_jax.tasks.builtin import goal_circle_sampler
from metadqn_jax.tasks.family import (
    TaskFamily,
    default_budgets,
    index_params,
    stack_params,
)
from metadqn_jax.tasks.pools import SPLITS
from metadqn_jax.tasks.spec import SPEC_KEYS
from metadqn_jax.tasks.registry import FAMILIES, family_spec, get_family, list_families, register_family

__all__ = ["FAMILIES", "SPEC_KEYS", "SPLITS", "TaskFamily", "broadcast_params",
           "default_budgets", "family_spec", "get_family", "goal_circle_sampler", "index_params", "list_families",
           "register_family", "stack_params"]
