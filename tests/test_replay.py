"""Tests of metadqn_jax.core.replay: a ring buffer checked with id-encoded items.

Every item carries an integer ``id`` (ids start at 1, so a 0 can only come from an unfilled
slot) plus a bool and a float vector derived from it, so the position of every item is visible.
"""

from __future__ import annotations

import collections

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metadqn_jax.core import replay
from metadqn_jax.core.types import Transition

# Jitted once per shape: far faster than op-by-op dispatch in the loops below.
add = jax.jit(replay.add)
recent = jax.jit(replay.recent, static_argnums=1)
sample = jax.jit(replay.sample, static_argnums=2)


def example():
    return {
        "id": jnp.zeros((), jnp.int32),
        "flag": jnp.zeros((), bool),
        "x": jnp.zeros((2,), jnp.float32),
    }


def items(ids) -> dict:
    ids = np.asarray(ids, np.int32)
    return {
        "id": jnp.asarray(ids),
        "flag": jnp.asarray(ids % 2 == 1),
        "x": jnp.asarray(np.stack([ids, -ids], -1).astype(np.float32)),
    }


def stored_ids(state) -> list[int]:
    return np.asarray(state.data["id"]).tolist()


def check_consistent(data) -> None:
    """flag and x are the functions of id written by :func:`items` (no field got mixed up)."""
    ids = np.asarray(data["id"])
    np.testing.assert_array_equal(np.asarray(data["flag"]), ids % 2 == 1)
    np.testing.assert_array_equal(np.asarray(data["x"]), np.stack([ids, -ids], -1).astype(np.float32))


# -------------------------------------------------------------------- construction
def test_init_shapes_and_dtypes():
    state = replay.init(example(), capacity=5)
    assert state.capacity == 5
    chex.assert_shape(state.data["id"], (5,))
    chex.assert_shape(state.data["x"], (5, 2))
    assert state.data["id"].dtype == jnp.int32
    assert state.data["flag"].dtype == jnp.bool_
    assert state.data["x"].dtype == jnp.float32
    assert int(state.size) == 0 and int(state.insert_pos) == 0
    assert state.size.dtype == jnp.int32 and state.insert_pos.dtype == jnp.int32


@pytest.mark.parametrize("capacity", [0, -1])
def test_nonpositive_capacity_raises(capacity):
    with pytest.raises(ValueError, match="capacity"):
        replay.init(example(), capacity=capacity)


def test_adding_more_than_capacity_raises():
    state = replay.init(example(), capacity=4)
    with pytest.raises(ValueError, match="capacity 4"):
        replay.add(state, items(range(1, 6)))
    with pytest.raises(ValueError):
        jax.jit(replay.add)(state, items(range(1, 6)))


def test_add_rejects_wrong_dtype_or_shape():
    state = replay.init(example(), capacity=4)
    bad = items([1, 2])
    bad["id"] = bad["id"].astype(jnp.float32)
    with pytest.raises(AssertionError):
        replay.add(state, bad)
    bad = items([1, 2])
    bad["x"] = jnp.zeros((2, 3), jnp.float32)
    with pytest.raises(AssertionError):
        replay.add(state, bad)


# -------------------------------------------------------------------- ring buffer
def test_wrap_around_contents():
    state = replay.init(example(), capacity=5)
    state = add(state, items([1, 2, 3]))
    assert stored_ids(state) == [1, 2, 3, 0, 0]
    assert (int(state.insert_pos), int(state.size)) == (3, 3)
    state = add(state, items([4, 5, 6, 7]))  # writes slots 3, 4, 0, 1
    assert stored_ids(state) == [6, 7, 3, 4, 5]
    assert (int(state.insert_pos), int(state.size)) == (2, 5)
    state = add(state, items([8, 9, 10, 11, 12]))  # exactly capacity: slots 2, 3, 4, 0, 1
    assert stored_ids(state) == [11, 12, 8, 9, 10]
    assert (int(state.insert_pos), int(state.size)) == (2, 5)
    check_consistent(state.data)
    assert state.data["id"].dtype == jnp.int32
    assert state.data["flag"].dtype == jnp.bool_
    assert state.data["x"].dtype == jnp.float32


def test_transition_items_keep_dtypes():
    ex = Transition(
        obs=jnp.zeros((3,), jnp.float32), action=jnp.zeros((), jnp.int32), reward=jnp.zeros((), jnp.float32),
        next_obs=jnp.zeros((3,), jnp.float32), terminated=jnp.zeros((), bool), truncated=jnp.zeros((), bool),
    )
    state = replay.init(ex, capacity=4)
    batch = Transition(
        obs=jnp.ones((2, 3)), action=jnp.array([1, 2], jnp.int32), reward=jnp.array([0.5, -1.0]),
        next_obs=2 * jnp.ones((2, 3)), terminated=jnp.array([True, False]), truncated=jnp.array([False, True]),
    )
    state = add(state, batch)
    got = sample(state, jax.random.key(0), 7)
    assert isinstance(got, Transition)
    assert [x.dtype for x in got] == [jnp.float32, jnp.int32, jnp.float32, jnp.float32, jnp.bool_, jnp.bool_]
    chex.assert_trees_all_equal_dtypes(state.data, ex)
    chex.assert_shape(got.obs, (7, 3))
    np.testing.assert_array_equal(state.data.terminated, [True, False, False, False])
    np.testing.assert_array_equal(state.data.action, [1, 2, 0, 0])


def test_samples_only_filled_slots():
    state = replay.init(example(), capacity=16)
    state = add(state, items([1, 2, 3]))
    s = sample(state, jax.random.key(1), 2000)
    ids = np.asarray(s["id"])
    assert set(ids.tolist()) == {1, 2, 3}  # never 0 (unfilled), every filled slot reachable
    check_consistent(s)
    # roughly uniform over the 3 filled slots
    counts = np.bincount(ids, minlength=4)[1:]
    assert counts.min() > 2000 / 3 * 0.8
    # after wrap-around every slot is filled and holds one of the last 16 ids
    state = add(state, items(range(4, 20)))
    s = sample(state, jax.random.key(2), 4000)
    ids = set(np.asarray(s["id"]).tolist())
    assert ids == set(range(4, 20))
    assert sample(state, jax.random.key(2), 5)["x"].dtype == jnp.float32


def test_can_sample_and_clear():
    state = replay.init(example(), capacity=8)
    assert not bool(replay.can_sample(state))
    state = add(state, items([1, 2, 3]))
    assert bool(replay.can_sample(state, 3)) and not bool(replay.can_sample(state, 4))
    state = replay.clear(state)
    assert int(state.size) == 0 and int(state.insert_pos) == 0
    state = add(state, items([7]))
    s = sample(state, jax.random.key(0), 50)
    assert set(np.asarray(s["id"]).tolist()) == {7}  # the stale ids 1..3 are never read


# ------------------------------------------------------------------------ recent()
def test_recent_partially_filled():
    state = replay.init(example(), capacity=8)
    state = add(state, items([1, 2, 3]))
    got, mask = recent(state, 5)
    np.testing.assert_array_equal(mask, [False, False, True, True, True])
    np.testing.assert_array_equal(np.asarray(got["id"])[np.asarray(mask)], [1, 2, 3])  # oldest first
    assert mask.dtype == jnp.bool_
    chex.assert_shape(got["x"], (5, 2))
    empty_items, empty_mask = recent(replay.init(example(), 8), 4)
    assert not np.asarray(empty_mask).any()


def test_recent_after_wrap_around():
    state = replay.init(example(), capacity=8)
    state = add(state, items([1, 2, 3]))
    state = add(state, items(range(4, 11)))  # ids 1..10, capacity 8
    got, mask = recent(state, 5)
    assert np.asarray(mask).all()
    np.testing.assert_array_equal(got["id"], [6, 7, 8, 9, 10])
    got, mask = recent(state, 8)
    assert np.asarray(mask).all()
    np.testing.assert_array_equal(got["id"], list(range(3, 11)))
    check_consistent(got)
    with pytest.raises(ValueError, match="window"):
        recent(state, 9)


# ------------------------------------------------------------- property: vs a deque
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=st.sampled_from([1, 3, 5]),  # few distinct shapes: each one compiles once
    data=st.data(),
)
def test_matches_deque_model(capacity, data):
    sizes = data.draw(st.lists(st.integers(1, capacity), min_size=1, max_size=6), label="add sizes")
    window = data.draw(st.integers(1, capacity), label="window")
    state = replay.init(example(), capacity)
    model = collections.deque(maxlen=capacity)
    ring = [0] * capacity
    pos = 0
    next_id = 1
    for n in sizes:
        ids = list(range(next_id, next_id + n))
        next_id += n
        state = add(state, items(ids))
        model.extend(ids)
        for i in ids:
            ring[pos] = i
            pos = (pos + 1) % capacity
        assert int(state.size) == len(model)
        assert int(state.insert_pos) == pos
        assert stored_ids(state) == ring
        got, mask = recent(state, window)
        got_ids = np.asarray(got["id"])[np.asarray(mask)].tolist()
        assert got_ids == list(model)[-window:]  # last `window` items, oldest first
        assert int(np.asarray(mask).sum()) == min(window, len(model))
        assert np.asarray(mask)[window - int(np.asarray(mask).sum()):].all()  # valid at the end
    sampled = set(np.asarray(sample(state, jax.random.key(next_id), 64)["id"]).tolist())
    assert sampled <= set(model)


# --------------------------------------------------------------- task axis (vmap)
def test_vmapped_buffers_equal_loop():
    capacity, T = 4, 3
    # per-task buffers at different fill levels / insert positions
    singles = []
    for t in range(T):
        s = replay.init(example(), capacity)
        if t > 0:
            s = add(s, items(np.arange(t + 1) + 100 * t + 1))
        singles.append(s)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *singles)
    batches = [items(np.arange(3) + 100 * t + 50) for t in range(T)]
    stacked_batch = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)

    vmapped = jax.jit(jax.vmap(replay.add))(stacked, stacked_batch)
    looped = [add(s, b) for s, b in zip(singles, batches)]
    chex.assert_trees_all_equal(vmapped, jax.tree.map(lambda *xs: jnp.stack(xs), *looped))
    np.testing.assert_array_equal(vmapped.insert_pos, [3, 1, 2])
    np.testing.assert_array_equal(vmapped.size, [3, 4, 4])

    keys = jax.random.split(jax.random.key(3), T)
    v_sample = jax.jit(jax.vmap(replay.sample, in_axes=(0, 0, None)), static_argnums=2)(vmapped, keys, 6)
    l_sample = [sample(s, k, 6) for s, k in zip(looped, keys)]
    chex.assert_trees_all_equal(v_sample, jax.tree.map(lambda *xs: jnp.stack(xs), *l_sample))

    v_recent = jax.jit(jax.vmap(replay.recent, in_axes=(0, None)), static_argnums=1)(vmapped, 4)
    l_recent = [recent(s, 4) for s in looped]
    chex.assert_trees_all_equal(v_recent, jax.tree.map(lambda *xs: jnp.stack(xs), *l_recent))


def test_jit_with_donation():
    # a fresh wrapper: jit caches are shared by every jax.jit of the same function object
    add_d = jax.jit(lambda s, b: replay.add(s, b), donate_argnums=0)
    state = replay.init(example(), capacity=6)
    expected = replay.init(example(), capacity=6)
    for start in range(1, 20, 4):
        ids = list(range(start, start + 4))
        state = add_d(state, items(ids))
        expected = replay.add(expected, items(ids))  # eager reference
    chex.assert_trees_all_equal(state, expected)
    assert stored_ids(state) == [19, 20, 15, 16, 17, 18]
    assert add_d._cache_size() == 1  # one compilation for repeated same-shape adds
    got = jax.jit(replay.sample, static_argnums=2)(state, jax.random.key(0), 32)
    assert set(np.asarray(got["id"]).tolist()) <= set(range(15, 21))
