"""A uniform replay buffer as a pytree: ``init / add / sample / can_sample``.

The state is a ring buffer of transitions plus an insert position and a fill count.
Everything is a pure function of the state, so a *task axis* is just ``jax.vmap``:
``jax.vmap(add)(states, batches)`` writes one buffer per task. Sampling draws indices
uniformly from the filled slots: O(batch), never O(capacity).

>>> import jax, jax.numpy as jnp
>>> from metadqn_jax.core import replay
>>> state = replay.init({"x": jnp.zeros(3)}, capacity=8)
>>> state = replay.add(state, {"x": jnp.ones((5, 3))})
>>> int(state.size), int(state.insert_pos)
(5, 5)
>>> replay.sample(state, jax.random.key(0), 4)["x"].shape
(4, 3)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp


class ReplayState(NamedTuple):
    """Ring-buffer state."""

    data: Any  # pytree, leaves [capacity, ...]: the stored items
    insert_pos: jax.Array  # shape=(), int32: next slot to write
    size: jax.Array  # shape=(), int32: number of filled slots (<= capacity)

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(example: Any, capacity: int) -> ReplayState:
    """An empty buffer for items shaped like ``example`` (one item, no batch axis)."""
    if int(capacity) <= 0:
        raise ValueError(f"replay capacity must be > 0, got {capacity}")
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example
    )
    return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(state: ReplayState, batch: Any) -> ReplayState:
    """Writes a batch (leaves ``[n, ...]``, ``n <= capacity``) at the insert position.

    Shapes and dtypes are checked at trace time against the stored items.
    """
    capacity = state.capacity
    n = jax.tree.leaves(batch)[0].shape[0]
    if n > capacity:
        raise ValueError(f"cannot add {n} items to a replay buffer of capacity {capacity}")
    chex.assert_tree_shape_prefix(batch, (n,))
    chex.assert_trees_all_equal_structs(batch, state.data)
    jax.tree.map(
        lambda b, d: chex.assert_shape(b, (n,) + d.shape[1:]), batch, state.data
    )
    chex.assert_trees_all_equal_dtypes(batch, jax.tree.map(lambda d: d[:n], state.data))
    idx = (state.insert_pos + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(lambda d, b: d.at[idx].set(b), state.data, batch)
    return ReplayState(
        data,
        (state.insert_pos + n) % capacity,
        jnp.minimum(state.size + n, capacity).astype(jnp.int32),
    )


def can_sample(state: ReplayState, min_size: int = 1) -> jax.Array:
    """True once the buffer holds at least ``min_size`` items."""
    return state.size >= min_size


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
    """Draws ``batch_size`` items uniformly (with replacement) from the filled slots.

    On an empty buffer this returns slot 0 (zeros); guard with :func:`can_sample`.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
    # Filled slots are [0, size) until the first wrap-around, then all of them.
    return jax.tree.map(lambda d: d[idx], state.data)


def recent(state: ReplayState, window: int) -> tuple[Any, jax.Array]:
    """The last ``window`` items written, oldest first, with a validity mask.

    Returns:
      ``(items, mask)``: items leaves ``[window, ...]`` and ``mask [window]`` (bool) that is
      False for slots not yet written (when fewer than ``window`` items were ever added).
    """
    capacity = state.capacity
    if window > capacity:
        raise ValueError(f"window {window} exceeds replay capacity {capacity}")
    offsets = jnp.arange(window, dtype=jnp.int32) - window  # -window .. -1
    idx = (state.insert_pos + offsets) % capacity
    mask = offsets + state.size >= 0
    return jax.tree.map(lambda d: d[idx], state.data), mask


def clear(state: ReplayState) -> ReplayState:
    """Marks the buffer empty (the data stays allocated; it is never read again)."""
    return state._replace(insert_pos=jnp.zeros_like(state.insert_pos), size=jnp.zeros_like(state.size))
