"""Task families: distributions over gymnax ``EnvParams`` with disjoint train / val / test splits."""

from metadqn_jax.tasks.family import (
    FAMILIES,
    SPLITS,
    TaskFamily,
    broadcast_params,
    get_family,
    goal_circle_sampler,
    index_params,
    list_families,
    register_family,
    stack_params,
)

__all__ = ["FAMILIES", "SPLITS", "TaskFamily", "broadcast_params", "get_family", "goal_circle_sampler",
           "index_params", "list_families", "register_family", "stack_params"]
