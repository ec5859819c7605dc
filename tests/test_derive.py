"""Defaults derived from the family (metadqn_jax.meta.derive, metadqn_jax.tasks.profile)."""

import dataclasses

import pytest

from metadqn_jax import tasks
from metadqn_jax.meta.config import MetaConfig, derived_from_family
from metadqn_jax.meta.defaults import ALGORITHMS
from metadqn_jax.meta.derive import derived_settings
from metadqn_jax.tasks.profile import FamilyProfile

# What tasks/builtin.py's CartPole tables held by hand until 2026-12-08 (CARTPOLE_META_DEFAULTS,
# family-wide); the rules must give them on both CartPole families, and the PointNav families
# must keep the library's values, so that every built-in result stands as measured.
OLD_CARTPOLE_TABLE = {"task_lifetime": 20, "query_source": "buffer", "buffer_size": 2000, "activation": "swish",
                      "updates_per_step": 8, "tau": 0.99, "epsilon": 0.2, "meta_lr": 1e-3, "inner_lr": 0.01}
OLD_POINTNAV_VALUES = {"task_lifetime": 1, "query_source": "adapted", "buffer_size": 100, "activation": "relu",
                       "updates_per_step": 1, "tau": 0.95, "epsilon": 0.5}


@pytest.mark.parametrize("family", ["cartpole-physics", "cartpole-flipped"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cartpole_families_derive_their_old_table(family, algorithm):
    c = MetaConfig(family=family, algorithm=algorithm)
    got = {name: c.setting(name) for name in OLD_CARTPOLE_TABLE}
    expected = dict(OLD_CARTPOLE_TABLE)
    if family == "cartpole-flipped" and algorithm == "cavia":  # its own block, kept (model loss at 10x)
        expected["inner_lr"] = 0.1
    assert got == expected
    assert c.cavia_first_order is (algorithm == "cavia")  # derived for CAVIA only (the one reader)
    assert c.num_meta_steps == 1500  # the one value no rule derives


@pytest.mark.parametrize("family", ["pointnav-rotated", "pointnav-goal"])
def test_pointnav_families_keep_the_library_values(family):
    for algorithm in ALGORITHMS:
        c = MetaConfig(family=family, algorithm=algorithm)
        assert {name: getattr(c, name) for name in OLD_POINTNAV_VALUES} == OLD_POINTNAV_VALUES
        assert c.setting("inner_lr") == {"cavia": 1.0}.get(algorithm, 0.1)
        assert c.setting("meta_lr") == {"cavia": 3e-3, "context": 3e-3}.get(algorithm, 1e-3)


def test_profiles_measure_what_the_rules_read():
    cartpole, nav = tasks.get_family("cartpole-physics").profile, tasks.get_family("pointnav-goal").profile
    assert (cartpole.episode_length, cartpole.num_actions, cartpole.reward_scale) == (500, 2, 1.0)
    assert 10 < cartpole.random_episode_length < 40 and cartpole.random_ends_early  # random CartPole falls fast
    assert cartpole.value_scale == pytest.approx(100.0)  # 1 per step x 1 / (1 - 0.99)
    assert (nav.episode_length, nav.num_actions) == (25, 4)
    assert nav.random_episode_length == 25.0 and not nav.random_ends_early  # a random walk never ends early
    assert 0.5 < nav.reward_scale < 3.0 and nav.value_scale < 10  # a distance, over a horizon of 2 steps
    assert tasks.get_family("cartpole-physics").profile is cartpole  # measured once per family


def test_a_user_family_gets_the_rules(monkeypatch):
    monkeypatch.setattr(tasks.registry, "FAMILIES", dict(tasks.registry.FAMILIES))
    tasks.register_family(tasks.TaskFamily("cart-mass-test", "CartPole-v1", ranges={"masscart": (0.5, 2.0)}))
    c = MetaConfig(family="cart-mass-test", algorithm="pretrained")
    assert {name: c.setting(name) for name in OLD_CARTPOLE_TABLE} == OLD_CARTPOLE_TABLE
    assert c.num_meta_steps == 2000  # not derived: the dataclass default
    # the rules read the config's sizes: shorter rollouts, longer-lived tasks
    c = MetaConfig(family="cart-mass-test", rollout_steps=50, envs_per_task=2, query_batch=100)
    assert (c.task_lifetime, c.buffer_size, c.updates_per_step, c.tau) == (10, 1000, 10, 0.99)
    # a value the user gives wins and feeds the rules after it
    c = MetaConfig(family="cart-mass-test", task_lifetime=1, epsilon=0.3, activation="relu")
    assert (c.query_source, c.buffer_size, c.updates_per_step, c.tau, c.epsilon, c.activation) == (
        "adapted", 100, 1, 0.95, 0.3, "relu")
    assert derived_from_family(c)["epsilon"] == 0.3  # given values are reported as they are
    # dataclasses.replace keeps every value (all count as given): nothing is re-derived
    assert dataclasses.replace(c, rollout_steps=5).task_lifetime == 1


def _profile(**changes):
    base = dict(episode_length=200, gamma=0.99, num_actions=3, reward_scale=1.0, random_episode_length=200.0)
    return FamilyProfile(**{**base, **changes})


def _sizes(name):
    return {"rollout_steps": 25, "envs_per_task": 4, "query_batch": 128, "algorithm": "maml"}.get(name)


def test_rules_follow_the_profile():
    long = derived_settings(_profile(), _sizes)  # MountainCar-like: 200 steps, -1 per step, random never ends
    assert (long["task_lifetime"], long["buffer_size"], long["query_source"]) == (8, 800, "buffer")
    assert long["epsilon"] == 0.5  # random episodes last: exploration is cheap
    assert (long["activation"], long["inner_lr"], long["meta_lr"]) == ("swish", 0.01, 1e-3)
    small = derived_settings(_profile(reward_scale=0.05), _sizes)  # value scale 5: the library's rates
    assert not {"activation", "inner_lr", "meta_lr", "cavia_first_order"} & small.keys()
    big = derived_settings(_profile(reward_scale=10.0), _sizes)  # value scale 1,000: 10x smaller inner steps
    assert big["inner_lr"] == 0.001
    short = derived_settings(_profile(episode_length=20, random_episode_length=5.0), _sizes)
    assert (short["task_lifetime"], short["query_source"], short["updates_per_step"], short["tau"]) == (
        1, "adapted", 1, 0.95)
    assert short["epsilon"] == 0.2  # random actions end it early


def test_the_zero_context_term_is_on_by_default_but_where_a_result_was_measured_without_it():
    assert MetaConfig(family="pointnav-rotated", algorithm="context").zero_context == 1.0
    assert MetaConfig(family="cartpole-flipped", algorithm="context").zero_context == 1.0
    assert MetaConfig(family="pointnav-goal", algorithm="context").zero_context == 0.0  # its table, until re-measured
