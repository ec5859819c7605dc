"""Tests of single-task DQN (metadqn_jax.dqn), its config and rollout.env_step bootstrapping."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax import dqn, envs
from metadqn_jax.core import rollout
from metadqn_jax.core.optim import clipped_adam
from metadqn_jax.core.validate import ConfigError
from metadqn_jax.dqn import DQNConfig
from metadqn_jax.core.networks import make_q_network
from metadqn_jax.core.types import Transition

from _compile import fast_jit  # tests/_compile.py

TINY = DQNConfig(
    env_id="CartPole-v1",
    num_envs=4,
    total_steps=400,
    eval_every=200,
    buffer_size=200,
    batch_size=32,
    learning_starts=40,
    updates_per_iteration=1,
    hidden=(16, 16),
    eval_episodes=2,
    eps_decay_steps=200.0,
)


# ------------------------------------------------------------------- dqn_update
def random_batch(key, batch, obs_dim, num_actions) -> Transition:
    ks = jax.random.split(key, 6)
    return Transition(
        obs=jax.random.normal(ks[0], (batch, obs_dim)),
        action=jax.random.randint(ks[1], (batch,), 0, num_actions, jnp.int32),
        reward=jax.random.normal(ks[2], (batch,)),
        next_obs=jax.random.normal(ks[3], (batch, obs_dim)),
        terminated=jax.random.bernoulli(ks[4], 0.2, (batch,)),
        truncated=jax.random.bernoulli(ks[5], 0.2, (batch,)),
    )


def test_dqn_update_jit_equals_nojit_and_moves_params():
    net = make_q_network(2, (16, 16))
    init = jax.jit(net.init)
    params = init(jax.random.key(0), jnp.zeros((4,)))
    target = init(jax.random.key(1), jnp.zeros((4,)))
    hp = TINY.hparams(lr=1e-2)
    opt_state = clipped_adam(hp.lr, TINY.max_grad_norm).init(params)
    batch = random_batch(jax.random.key(2), 32, 4, 2)

    def step(p, t, o, b, h):
        return dqn.dqn_update(p, t, o, b, h, net.apply, max_grad_norm=TINY.max_grad_norm)

    eager = step(params, target, opt_state, batch, hp)
    jitted = jax.jit(step)(params, target, opt_state, batch, hp)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)
    new_params, _, loss = jitted
    assert np.isfinite(float(loss))
    # the step did something, and Adam's first step moves each weight by about lr
    delta = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), new_params, params)
    assert max(float(d) for d in jax.tree.leaves(delta)) == pytest.approx(1e-2, rel=0.05)
    # and it lowers the loss on the batch it was taken on
    loss_after = dqn.losses.td_loss(new_params, target, batch, net.apply, hp.gamma)[0]
    assert float(loss_after) < float(loss)


# ------------------------------------------------------------ the training program
@pytest.fixture(scope="module")
def traced_train():
    """``jit(train)`` wrapped with a Python trace counter, plus its first run."""
    train = dqn.make_train(TINY)
    traces = []

    def counted(key, hp):
        traces.append(1)  # runs only while tracing
        return train(key, hp)

    run = fast_jit(counted)
    result = run(jax.random.key(0), TINY.hparams())
    jax.block_until_ready(result)
    return train, run, traces, result


def test_train_runs_and_reports(traced_train):
    _, _, _, (state, metrics) = traced_train
    chex.assert_shape(metrics.eval_return, (TINY.num_evals,))
    np.testing.assert_array_equal(metrics.env_steps, [200, 400])
    assert int(state.env_steps) == TINY.total_steps
    # updates_per_iteration updates per iteration once env_steps >= learning_starts
    # (iterations 10..100 of 100: env_steps after iteration i is 4 i)
    ready_iterations = TINY.total_steps // TINY.num_envs - TINY.learning_starts // TINY.num_envs + 1
    assert int(state.updates) == ready_iterations * TINY.updates_per_iteration
    assert int(state.buffer.size) == TINY.buffer_size
    assert np.all(np.isfinite(np.asarray(metrics.loss)))
    assert np.all(np.asarray(metrics.eval_return) >= 1.0)  # CartPole: every episode earns >= 1
    for leaf in jax.tree.leaves(state.params):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_train_traced_once_across_hparams(traced_train):
    _, run, traces, (state0, _) = traced_train
    assert len(traces) == 1
    for hp in (
        TINY.hparams(lr=3e-4),
        TINY.hparams(gamma=0.9, eps_start=0.5, eps_end=0.1, eps_decay_steps=100.0, tau=0.5),
    ):
        state, metrics = run(jax.random.key(0), hp)
        jax.block_until_ready(metrics)
    assert len(traces) == 1, "changing traced hyper-parameters re-traced the training program"
    assert run._cache_size() == 1
    # the hyper-parameters are really used: different lr -> different parameters
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params, state0.params)
    assert max(jax.tree.leaves(diff)) > 1e-4


def test_vmap_over_seeds_equals_single_runs(traced_train):
    train, run, _, (state0, metrics0) = traced_train
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    states, metrics = fast_jit(jax.vmap(train, in_axes=(0, None)))(keys, TINY.hparams())
    state1, metrics1 = run(jax.random.key(1), TINY.hparams())
    for i, (s, m) in enumerate(((state0, metrics0), (state1, metrics1))):
        chex.assert_trees_all_close(
            jax.tree.map(lambda x: x[i], states.params), s.params, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(metrics.eval_return[i], m.eval_return, rtol=1e-5)
        np.testing.assert_allclose(metrics.loss[i], m.loss, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(states.buffer.data.action[i], s.buffer.data.action)
    # the two seeds really differ
    assert not np.allclose(np.asarray(jax.tree.leaves(state0.params)[0]), np.asarray(jax.tree.leaves(state1.params)[0]))


# ------------------------------------------------------------- the divergence guard
def test_normal_run_flags_no_divergence(traced_train):
    _, _, _, (_, metrics) = traced_train
    np.testing.assert_array_equal(metrics.diverged_step, [-1, -1])
    np.testing.assert_array_equal(metrics.diverged_loss, [0.0, 0.0])
    assert dqn.first_divergence(metrics) is None


def test_divergence_is_flagged_inside_the_compiled_program(traced_train):
    """lr = 1e6 (the issue's trigger): the program flags the first iteration whose TD loss is
    non-finite (env steps after it), with the same compiled program (lr is traced)."""
    _, run, traces, _ = traced_train
    _, metrics = run(jax.random.key(0), TINY.hparams(lr=1e6))
    assert len(traces) == 1
    step, quantity, value = dqn.first_divergence(metrics)
    assert quantity == "loss" and not np.isfinite(value)
    # after learning_starts (the first update), in the first period, at an iteration boundary
    assert TINY.learning_starts <= step <= TINY.eval_every and step % TINY.num_envs == 0, step
    assert int(metrics.diverged_step[0]) == step
    assert not np.isfinite(float(metrics.loss[0]))  # the period's mean loss shows it too


def test_first_divergence_reads_the_flags():
    m = dqn.DQNMetrics(env_steps=np.array([200, 400, 600]), eval_return=np.zeros(3), train_return=np.zeros(3),
                       loss=np.array([1.0, 2.0, np.nan]), diverged_step=np.array([-1, 260, 404], np.int32),
                       diverged_loss=np.array([0.0, 3.5, np.nan], np.float32))
    assert dqn.first_divergence(m) == (260, "params", 3.5)  # a finite loss: the parameters diverged
    step, quantity, value = dqn.first_divergence(m._replace(diverged_step=np.array([-1, -1, 404], np.int32)))
    assert (step, quantity) == (404, "loss") and np.isnan(value)


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(num_envs=0), "num_envs"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=0.0), "lr"),
        (dict(batch_size=300, buffer_size=200), "batch_size"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=-0.1), "gamma"),
        (dict(eval_every=201), "eval_every"),
    ],
)
def test_bad_config_names_field(kwargs, field):
    # the message names the field (a traced hyper-parameter as "DQNHParams.<field>")
    with pytest.raises(ConfigError, match=rf"^(DQNHParams\.)?{field} must be"):
        DQNConfig(**{**TINY.__dict__, **kwargs})


@pytest.mark.parametrize("overrides,field", [(dict(lr=-1.0), "lr"), (dict(gamma=2.0), "gamma"), (dict(tau=1.0), "tau")])
def test_bad_hparams_name_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"DQNHParams\.{field} must be"):
        TINY.hparams(**overrides)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_unknown_env_id_raises_naming_it():
    """Rejected when the config is built, before any program or run folder exists."""
    with pytest.raises(ConfigError, match=r"^env_id: unknown environment 'NoSuchEnv-v9'; known environments: .*CartPole-v1"):
        DQNConfig(**{**TINY.__dict__, "env_id": "NoSuchEnv-v9"})


# ------------------------------------------------------------- env_step bootstrapping
def test_cartpole_terminated_transition_keeps_final_observation():
    env, params = envs.make_env("CartPole-v1")
    E = 3
    bparams = rollout.broadcast_params(params, E)
    carry = rollout.init_carry(env, jax.random.key(0), bparams)
    # env 0: pole at 0.2 rad falling fast -> this step crosses the 12° (0.2094 rad) limit
    # and terminates; envs 1, 2: near upright, they continue
    state = carry.env_state.replace(
        theta=carry.env_state.theta.at[0].set(0.2), theta_dot=carry.env_state.theta_dot.at[0].set(2.0)
    )
    carry = carry._replace(
        env_state=state,
        obs=jax.vmap(env.get_obs)(state),
        episode_return=jnp.array([7.0, 3.0, 0.0]),
    )
    actions = jnp.array([1, 0, 1], jnp.int32)
    key = jax.random.key(1)
    new_carry, tr = jax.jit(lambda k, c, a: rollout.env_step(env, k, c, a, bparams))(key, carry, actions)

    np.testing.assert_array_equal(tr.terminated, [True, False, False])
    np.testing.assert_array_equal(tr.truncated, [False, False, False])
    assert tr.terminated.dtype == jnp.bool_ and tr.action.dtype == jnp.int32 and tr.reward.dtype == jnp.float32
    np.testing.assert_array_equal(tr.obs, carry.obs)
    # next_obs is the pre-reset observation from the dynamics ...
    keys = jax.vmap(lambda k: jax.random.split(k)[0])(jax.random.split(key, E))
    obs_st = jax.jit(jax.vmap(lambda k, st, a: env.step_env(k, st, a, params)[0]))(
        keys, carry.env_state, actions
    )
    np.testing.assert_allclose(tr.next_obs, obs_st, rtol=1e-6)
    assert abs(float(tr.next_obs[0, 2])) > params.theta_threshold_radians
    # ... while the carried observation of the terminated env is a fresh reset
    assert not np.allclose(tr.next_obs[0], new_carry.obs[0])
    assert np.all(np.abs(np.asarray(new_carry.obs[0])) <= 0.05)
    np.testing.assert_allclose(new_carry.obs[1:], tr.next_obs[1:])  # non-done envs continue
    # episode bookkeeping
    np.testing.assert_array_equal(new_carry.episodes, [1, 0, 0])
    np.testing.assert_allclose(new_carry.episode_return, [0.0, 4.0, 1.0])
    np.testing.assert_allclose(tr.reward, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(new_carry.last_return, [8.0, 0.0, 0.0])


def test_pointnav_truncated_transition_bootstraps_from_final_obs():
    env, params = envs.make_env("PointNav-v0")
    params = params.replace(max_steps_in_episode=3)
    E = 2
    bparams = rollout.broadcast_params(params, E)
    carry = rollout.init_carry(env, jax.random.key(0), bparams)
    step = jax.jit(lambda k, c, a: rollout.env_step(env, k, c, a, bparams))
    actions = jnp.array([0, 1], jnp.int32)  # +x and +y
    trs = []
    for t in range(4):
        carry, tr = step(jax.random.key(t), carry, actions)
        trs.append(tr)
    np.testing.assert_array_equal([bool(tr.truncated[0]) for tr in trs], [False, False, True, False])
    assert not any(bool(tr.terminated.any()) for tr in trs)  # PointNav has no terminal states
    last = trs[2]
    # bootstrap target state: the position after 3 moves, not the reset origin
    np.testing.assert_allclose(last.next_obs, [[0.3, 0.0], [0.0, 0.3]], atol=1e-5)
    np.testing.assert_allclose(trs[3].obs, np.zeros((2, 2)), atol=1e-7)  # carried obs was reset
    np.testing.assert_allclose(trs[3].next_obs, [[0.1, 0.0], [0.0, 0.1]], atol=1e-5)
    # reward of the truncated step: -distance to the goal (0.7, 0) after the move
    np.testing.assert_allclose(last.reward, [-0.4, -np.hypot(0.7, 0.3)], rtol=1e-4)
    np.testing.assert_array_equal(carry.episodes, [1, 1])


def test_oracle_trains_one_dqn_per_task_unless_asked_for_more():
    """The few-shot oracle runs ``min(seeds, oracle_seeds)`` DQNs per held-out task (default 1;
    one call: each seed count is another compile)."""
    from metadqn_jax import tasks
    from metadqn_jax.fewshot import FewShotConfig, oracle_returns

    family = tasks.get_family("cartpole-physics")
    fs = FewShotConfig(budgets=(0, 10), num_tasks=2, seeds=3)
    res = oracle_returns(family, fs, jax.random.key(0), dqn_cfg=TINY)
    assert res.returns.shape == (1, 2, 1, 2)  # [meta_seed, task, seed, budget]
    assert np.all(res.returns[..., 0] == res.returns[..., 1])  # a reference line: the same at every budget
    with pytest.raises(ValueError, match="oracle_seeds"):
        FewShotConfig(oracle_seeds=0)
