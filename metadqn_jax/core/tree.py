"""Pytree selection: one ``jnp.where`` over every leaf of two trees of the same structure."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def tree_where(cond: jax.Array | bool, new: Any, old: Any) -> Any:
    """``new`` where ``cond``, else ``old``, leaf by leaf.

    Args:
      cond: a scalar bool, or ``[N]`` (e.g. one flag per meta-training seed), broadcast over each
        leaf's trailing axes (a leaf of shape ``[N, ...]`` takes its row ``i`` from ``new`` where
        ``cond[i]``).
      new, old: pytrees of the same structure, leaves of equal shapes with ``cond``'s shape as a
        prefix.

    Returns:
      A tree like ``new``.
    """
    cond = jnp.asarray(cond)
    return jax.tree.map(lambda a, b: jnp.where(cond.reshape(cond.shape + (1,) * (a.ndim - cond.ndim)), a, b),
                        new, old)
