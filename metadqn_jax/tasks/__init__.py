"""Task families: distributions over gymnax ``EnvParams`` with disjoint train / val / test splits.

:mod:`.family` (the :class:`TaskFamily` description and its checks), :mod:`.pools` (pure pool
building), :mod:`.builtin` (the built-in families), :mod:`.registry` (``get_family`` & co.).
"""

from metadqn_jax.core.rollout import broadcast_params
from metadqn_jax.tasks.builtin import goal_circle_sampler
from metadqn_jax.tasks.family import FAMILY_META_FIELDS, TaskFamily, index_params, stack_params
from metadqn_jax.tasks.pools import SPLITS
from metadqn_jax.tasks.registry import FAMILIES, get_family, list_families, register_family

__all__ = ["FAMILIES", "FAMILY_META_FIELDS", "SPLITS", "TaskFamily", "broadcast_params", "get_family",
           "goal_circle_sampler", "index_params", "list_families", "register_family", "stack_params"]
