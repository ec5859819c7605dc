"""Tests of metadqn_jax.tasks: task families, deterministic disjoint splits, batched EnvParams."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax import envs
from metadqn_jax.tasks import (
    FAMILIES,
    SPLITS,
    TaskFamily,
    broadcast_params,
    get_family,
    index_params,
    list_families,
    stack_params,
)

BUILTINS = ("cartpole-physics", "pointnav-rotated", "pointnav-goal", "cartpole-flipped")


def small(family: TaskFamily, **kw) -> TaskFamily:
    """A fresh copy of ``family`` with small pools (fast to build)."""
    sizes = dict(num_train=64, num_val=16, num_test=16)
    sizes.update(kw)
    return dataclasses.replace(family, **sizes)


def rows(params) -> set[bytes]:
    """Each task of a batched EnvParams as one hashable row."""
    leaves = [np.asarray(x).reshape(np.shape(x)[0], -1) for x in jax.tree.leaves(params)]
    n = leaves[0].shape[0]
    return {b"".join(leaf[i].tobytes() for leaf in leaves) for i in range(n)}


def assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def trees_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


# ---------------------------------------------------------------------- registry
def test_registry_lists_builtins():
    assert set(BUILTINS) <= set(list_families())
    for name in BUILTINS:
        assert get_family(name) is FAMILIES[name]
        assert get_family(name).name == name
    with pytest.raises(ValueError, match="unknown task family 'nope'.*cartpole-physics"):
        get_family("nope")


def test_builtin_gammas_and_episode_lengths():
    assert get_family("cartpole-physics").gamma == 0.99
    assert get_family("cartpole-flipped").gamma == 0.99
    assert get_family("pointnav-rotated").gamma == 0.5
    assert get_family("pointnav-goal").gamma == 0.5
    assert get_family("cartpole-physics").episode_length == 500
    assert get_family("pointnav-goal").episode_length == 25


@pytest.mark.parametrize("name", BUILTINS)
def test_describe_is_one_line(name):
    family = get_family(name)
    line = family.describe()
    assert "\n" not in line
    assert name in line and family.env_id in line
    for field in family.ranges:
        assert field in line
    varying = family.describe_varying()
    assert "\n" not in varying and varying in line and line.startswith(f"{name}: {family.env_id}; {varying}; ")


# ------------------------------------------------------------------------ splits
@pytest.mark.parametrize("name", BUILTINS)
def test_splits_disjoint_shapes_and_dtypes(name):
    family = get_family(name)  # the real pools (1024 / 128 / 128)
    pools = {split: family.tasks(split) for split in SPLITS}
    seen: set[bytes] = set()
    for split, pool in pools.items():
        n = family.num_tasks(split)
        for leaf in jax.tree.leaves(pool):
            assert leaf.shape[0] == n  # every leaf carries the task axis
            assert leaf.dtype in (jnp.float32, jnp.int32, jnp.bool_)
        r = rows(pool)
        assert len(r) == n  # distinct tasks within the split
        assert not (r & seen), f"{name}: a {split} task also appears in another split"
        seen |= r
    assert pools["train"].max_steps_in_episode.dtype == jnp.int32
    # alias
    assert_trees_equal(family.tasks("validation"), pools["val"])


@pytest.mark.parametrize("name", BUILTINS)
def test_pools_deterministic_from_seed(name):
    a = small(get_family(name))
    b = small(get_family(name))  # a fresh instance: no shared cache
    assert a is not b
    for split in SPLITS:
        assert_trees_equal(a.tasks(split), b.tasks(split))
    c = small(get_family(name), split_seed=1)
    for split in SPLITS:
        assert not trees_equal(a.tasks(split), c.tasks(split))


def test_test_pool_independent_of_train_size():
    base = get_family("cartpole-physics")
    a = small(base, num_train=32)
    b = small(base, num_train=96)
    assert_trees_equal(a.tasks("test"), b.tasks("test"))
    assert_trees_equal(a.tasks("val"), b.tasks("val"))


def test_duplicates_are_redrawn_to_keep_splits_disjoint():
    # 5 * 2 = 10 distinct tasks for 4 + 3 + 3 slots: every task is used exactly once.
    family = TaskFamily(
        "tiny",
        "CartPoleSigned-v0",
        ranges={"max_steps_in_episode": (10, 14)},
        choices={"force_sign": (-1.0, 1.0)},
        num_train=4,
        num_val=3,
        num_test=3,
    )
    all_rows = [rows(family.tasks(s)) for s in SPLITS]
    assert sum(map(len, all_rows)) == 10
    assert len(set().union(*all_rows)) == 10
    steps = np.concatenate([np.asarray(family.tasks(s).max_steps_in_episode) for s in SPLITS])
    assert steps.dtype == np.int32 and set(steps.tolist()) == {10, 11, 12, 13, 14}


# ----------------------------------------------------------------------- sampling
@pytest.mark.parametrize("name", BUILTINS)
def test_sample_deterministic_in_key_and_from_pool(name):
    family = get_family(name)
    key = jax.random.key(3)
    a = family.sample(key, 64, "val")
    b = family.sample(key, 64, "val")
    assert_trees_equal(a, b)
    c = family.sample(jax.random.key(4), 64, "val")
    assert not trees_equal(a, c)
    for leaf in jax.tree.leaves(a):
        assert leaf.shape[0] == 64
    assert rows(a) <= rows(family.tasks("val"))


@pytest.mark.parametrize("name", BUILTINS)
def test_sampled_values_inside_ranges_and_choices(name):
    family = get_family(name)
    params = family.sample(jax.random.key(0), 64)
    for field, (low, high) in family.ranges.items():
        x = np.asarray(getattr(params, field))
        assert np.all(x >= np.float32(low)) and np.all(x <= np.float32(high)), field
        assert x.std() > 0, field
    for field, values in family.choices.items():
        x = np.asarray(getattr(params, field))
        assert set(x.tolist()) == {float(v) for v in values}, field
    # non-varying fields keep the base value
    base = family.base_params
    fixed = [f.name for f in dataclasses.fields(base) if f.name not in family.varying_fields]
    for field in fixed:
        if field in ("total_mass", "polemass_length"):
            continue
        np.testing.assert_allclose(
            np.asarray(getattr(params, field)), getattr(base, field), rtol=1e-6
        )


@pytest.mark.parametrize("name", ["cartpole-physics", "cartpole-flipped"])
def test_cartpole_derived_fields_recomputed(name):
    family = get_family(name)
    for params in (family.sample(jax.random.key(1), 64), family.tasks("test")):
        mc, mp, ln = (np.asarray(getattr(params, f)) for f in ("masscart", "masspole", "length"))
        np.testing.assert_allclose(np.asarray(params.total_mass), mc + mp, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(params.polemass_length), mp * ln, rtol=1e-6)
    _, base = family.env()
    assert math.isclose(base.total_mass, base.masscart + base.masspole)
    assert math.isclose(base.polemass_length, base.masspole * base.length)


def test_pointnav_goal_on_circle():
    params = get_family("pointnav-goal").tasks("train")
    radius = np.hypot(np.asarray(params.goal_x), np.asarray(params.goal_y))
    np.testing.assert_allclose(radius, 0.7, rtol=1e-5)
    angles = np.arctan2(np.asarray(params.goal_y), np.asarray(params.goal_x))
    assert np.histogram(angles, bins=4, range=(-np.pi, np.pi))[0].min() > 150  # spread out
    assert np.all(np.asarray(params.action_rotation) == 0.0)


@pytest.mark.parametrize("name", BUILTINS)
def test_vmapped_reset_and_step_over_sampled_tasks(name):
    family = get_family(name)
    env, _ = family.env()
    assert family.env()[0] is env  # cached env: jitted methods compile once
    n = 8
    params = family.sample(jax.random.key(0), n)
    keys = jax.random.split(jax.random.key(1), n)
    obs, state = jax.vmap(env.reset)(keys, params)
    actions = jnp.arange(n, dtype=jnp.int32) % envs.num_actions(env, family.base_params)
    out = jax.vmap(env.step, in_axes=(0, 0, 0, 0))(keys, state, actions, params)
    obs2, _, reward, terminated, truncated, _ = out
    assert obs.shape[0] == n and obs2.shape == obs.shape
    assert reward.shape == (n,) and terminated.shape == (n,) and truncated.shape == (n,)
    assert np.all(np.isfinite(np.asarray(obs2))) and np.all(np.isfinite(np.asarray(reward)))


# -------------------------------------------------------------- conflicting families
def test_pointnav_rotated_conflicts():
    params = get_family("pointnav-rotated").tasks("train")
    np.testing.assert_array_equal(np.asarray(params.goal_x), np.float32(0.7))
    np.testing.assert_array_equal(np.asarray(params.goal_y), 0.0)
    obs = jnp.zeros(2, jnp.float32)
    best = jax.vmap(envs.point_nav_oracle_action, in_axes=(None, 0))(obs, params)
    counts = np.bincount(np.asarray(best), minlength=4)
    assert np.all(counts > 100), counts  # every action is the best one on many tasks


def test_cartpole_flipped_conflicts():
    family = get_family("cartpole-flipped")
    for split in SPLITS:
        signs = set(np.asarray(family.tasks(split).force_sign).tolist())
        assert signs == {-1.0, 1.0}, split
    env, _ = family.env()
    params = family.tasks("train")
    sign = np.asarray(params.force_sign)
    pair = index_params(params, jnp.array([int(np.argmax(sign > 0)), int(np.argmax(sign < 0))]))
    keys = jax.random.split(jax.random.key(0), 2)
    _, state = jax.vmap(env.reset)(keys, pair)
    state = state.replace(
        x=jnp.zeros(2), x_dot=jnp.zeros(2), theta=jnp.zeros(2), theta_dot=jnp.zeros(2)
    )
    action = jnp.ones(2, jnp.int32)  # same action, opposite push
    obs, *_ = jax.vmap(env.step)(keys, state, action, pair)
    assert float(obs[0, 1]) > 0 > float(obs[1, 1])


# ------------------------------------------------------------------------- jit
def test_sample_inside_jit_before_pool_is_built():
    family = small(get_family("cartpole-physics"), split_seed=7)  # pool not built yet
    key = jax.random.key(5)

    @jax.jit
    def f(k):
        params = family.sample(k, 64, "test")
        return params, jnp.mean(params.length)

    params, mean_length = f(key)
    assert_trees_equal(params, family.sample(key, 64, "test"))
    assert 0.25 <= float(mean_length) <= 1.0
    g = jax.jit(family.sample, static_argnames=("n", "split"))
    assert_trees_equal(g(key, n=64, split="test"), params)
    # vmapped over keys: leaves [4, 3]
    batched = jax.vmap(lambda k: family.sample(k, 3))(jax.random.split(key, 4))
    assert batched.length.shape == (4, 3)


def test_sample_without_replacement():
    family = small(get_family("pointnav-rotated"))
    params = family.sample(jax.random.key(0), 16, "test", replace=False)
    assert len(rows(params)) == 16
    with pytest.raises(ValueError, match="cannot draw 17 distinct tasks"):
        family.sample(jax.random.key(0), 17, "test", replace=False)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        family.sample(jax.random.key(0), 4, "dev")
    with pytest.raises(ValueError, match="unknown split"):
        family.tasks("training")


# --------------------------------------------------------------------- helpers
def test_stack_index_broadcast_roundtrip():
    batch = small(get_family("cartpole-physics")).tasks("val")
    singles = [index_params(batch, i) for i in range(3)]
    assert singles[0].length.shape == ()
    assert_trees_equal(stack_params(singles), index_params(batch, jnp.arange(3)))
    one = broadcast_params(envs.PointNavParams(), 5)
    assert all(leaf.shape == (5,) for leaf in jax.tree.leaves(one))


def test_user_family_custom_sampler_and_derive():
    family = TaskFamily("my-pole", "CartPole-v1", ranges={"length": (0.3, 1.2)})
    params = family.sample(jax.random.key(0), 64)
    assert np.all((np.asarray(params.length) >= 0.3) & (np.asarray(params.length) <= 1.2))
    np.testing.assert_allclose(
        np.asarray(params.polemass_length), 0.1 * np.asarray(params.length), rtol=1e-6
    )

    def tie_step_size(p):  # a user derive hook: step size follows the bound
        return p.replace(step_size=p.bound / 10)

    nav = TaskFamily(
        "my-nav",
        "PointNav-v0",
        ranges={"bound": (0.5, 2.0)},
        derive=tie_step_size,
        num_train=32,
        num_val=8,
        num_test=8,
    )
    p = nav.tasks("train")
    np.testing.assert_allclose(np.asarray(p.step_size), np.asarray(p.bound) / 10, rtol=1e-6)



def test_register_env_makes_a_user_environment_usable_by_families(monkeypatch):
    from metadqn_jax import envs

    monkeypatch.setattr(envs.registry, "_CUSTOM", dict(envs.registry._CUSTOM))  # the registration ends with the test

    class FarNav(envs.PointNav):  # a user's own gymnax environment
        @property
        def default_params(self):
            return envs.PointNavParams(goal_x=0.0, goal_y=0.9)

    envs.register_env("FarNav-test-v0", FarNav, overwrite=True)
    assert "FarNav-test-v0" in envs.available_envs()
    env, params = envs.make_env("FarNav-test-v0")
    assert isinstance(env, FarNav) and float(params.goal_y) == pytest.approx(0.9)
    family = TaskFamily("far-nav-test", "FarNav-test-v0", ranges={"goal_x": (-0.5, 0.5)},
                        num_train=8, num_val=4, num_test=4)
    p = family.sample(jax.random.key(0), 3, "test")
    assert np.all(np.abs(np.asarray(p.goal_x)) <= 0.5) and np.allclose(np.asarray(p.goal_y), 0.9)
    with pytest.raises(ValueError, match="'FarNav-test-v0' is already registered"):
        envs.register_env("FarNav-test-v0", FarNav)
    with pytest.raises(ValueError, match="'CartPole-v1' is already registered"):
        envs.register_env("CartPole-v1", FarNav, overwrite=True)  # gymnax's ids are never replaced
    with pytest.raises(ValueError, match="factory must be a callable"):
        envs.register_env("Broken-v0", FarNav())

# ------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(env_id="NoSuchEnv-v0"), "unknown environment 'NoSuchEnv-v0'"),
        (dict(ranges={"lenght": (0.1, 0.2)}), "'lenght'.*valid fields: .*length"),
        (dict(ranges={"length": (0.9, 0.2)}), "ranges\\['length'\\] has low 0.9 > high 0.2"),
        (dict(ranges={"length": (0.1, math.inf)}), "ranges\\['length'\\].*not finite"),
        (dict(ranges={"gravity": (math.nan, 1.0)}), "ranges\\['gravity'\\].*not finite"),
        (dict(ranges={"length": (0.1,)}), "ranges\\['length'\\] must be a pair"),
        (dict(ranges={"total_mass": (1.0, 2.0)}), "'total_mass' is derived"),
        (dict(choices={"polemass_length": (0.1, 0.2)}), "'polemass_length' is derived"),
        (dict(choices={"gravity": ()}), "choices\\['gravity'\\] is empty"),
        (dict(choices={"gravity": (1.0, math.inf)}), "choices\\['gravity'\\].*not finite"),
        (dict(choices={"color": (1.0,)}), "'color'.*valid fields"),
        (
            dict(ranges={"gravity": (1.0, 2.0)}, choices={"gravity": (1.0,)}),
            "'gravity' is in both ranges and choices",
        ),
        (dict(ranges={"max_steps_in_episode": (10, 20.5)}), "'max_steps_in_episode'.*integer"),
        (dict(ranges={"length": (0.0, 1e39)}), "ranges\\['length'\\] = \\(0, 1e\\+39\\) does not fit the field's float32"),
        (dict(ranges={"max_steps_in_episode": (1, 2**31)}), "does not fit the field's int32"),
        (dict(choices={"gravity": (9.8, -1e39)}), "choices\\['gravity'\\].*does not fit the field's float32"),
        (dict(name=""), "TaskFamily: name must be a non-empty string"),
        (dict(name=123), "TaskFamily: name must be a non-empty string.*got 123"),
        (dict(env_id=None), "env_id must be a non-empty environment id string"),
        (dict(num_train=0), "num_train must be an int > 0"),
        (dict(num_val=-1), "num_val must be an int > 0"),
        (dict(num_test=2.5), "num_test must be an int > 0"),
        (dict(gamma=1.5), "gamma must be in"),
        (dict(base_params=envs.PointNavParams()), "base_params is a PointNavParams"),
        (
            dict(ranges={}, choices={"force_mag": (5.0, 10.0)}),
            "only 2 distinct tasks.*1280",
        ),
        (
            dict(sample_fn=lambda key, n: {"goal_x": jnp.zeros(n)}),
            "sample_fn field 'goal_x' is not a field",
        ),
        (
            dict(sample_fn=lambda key, n: {"length": jnp.zeros(n)}),
            "'length' is produced by sample_fn and also listed",
        ),
        (
            dict(ranges={}, sample_fn=lambda key, n: {"gravity": jnp.zeros((n, 2))}),
            "sample_fn\\(key, n\\)\\['gravity'\\] must have shape \\[n\\]",
        ),
    ],
)
def test_validation_errors(kwargs, match):
    args = dict(name="bad", env_id="CartPole-v1", ranges={"length": (0.3, 1.2)})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TaskFamily(**args)


def test_registered_derived_fields_apply_to_families(monkeypatch):
    from flax import struct

    monkeypatch.setattr(envs.registry, "_DERIVED", dict(envs.registry._DERIVED))  # ends with the test
    monkeypatch.setattr(envs.registry, "_CUSTOM", dict(envs.registry._CUSTOM))

    @struct.dataclass
    class MirrorParams(envs.PointNavParams):
        pass

    class MirrorNav(envs.PointNav):  # goal_y is derived: the mirror image of goal_x
        @property
        def default_params(self):
            return MirrorParams()

    assert envs.derived_fields(envs.PointNavParams()) is None
    assert envs.derived_fields(get_family("cartpole-flipped").base_params).formulas == {
        "total_mass": "masscart + masspole", "polemass_length": "masspole * length"}
    envs.register_derived(MirrorParams, {"goal_y": "-goal_x"}, lambda p: p.replace(goal_y=-p.goal_x))
    with pytest.raises(ValueError, match="already registered"):
        envs.register_derived(MirrorParams, {}, lambda p: p)
    envs.register_env("MirrorNav-test-v0", MirrorNav)
    family = TaskFamily("mirror-test", "MirrorNav-test-v0", ranges={"goal_x": (-0.5, 0.5)},
                        num_train=8, num_val=4, num_test=4)
    p = family.tasks("train")
    np.testing.assert_array_equal(np.asarray(p.goal_y), -np.asarray(p.goal_x))
    assert float(family.env()[1].goal_y) == -float(family.env()[1].goal_x)
    with pytest.raises(ValueError, match="'goal_y' is derived \\(goal_y = -goal_x\\)"):
        TaskFamily("mirror-bad", "MirrorNav-test-v0", ranges={"goal_y": (-0.5, 0.5)})


def test_registry_can_be_swapped_for_a_copy(monkeypatch):
    from metadqn_jax import tasks

    monkeypatch.setattr(tasks.registry, "FAMILIES", dict(tasks.registry.FAMILIES))
    family = TaskFamily("swap-test", "PointNav-v0", ranges={"goal_y": (-0.5, 0.5)})
    tasks.register_family(family)
    assert get_family("swap-test") is family and "swap-test" in list_families()
    assert "swap-test" not in FAMILIES  # the original dict is untouched
