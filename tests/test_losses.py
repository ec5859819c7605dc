"""Tests of metadqn_jax.core.losses against hand-computed TD errors and losses.

The Q-function in the ``td_loss`` tests is a table: ``q_fn(W, one_hot(s)) = W[s]`` so every
number below can be checked by hand (``W`` online, ``Wt`` target, ``gamma = 0.9``):

======  ===  ===  =====  ====  =====================  ===============  ================
item    s    a    r      s'    flags                  plain target     double target
======  ===  ===  =====  ====  =====================  ===============  ================
0       0    0    1.0    1     —                      1 + .9·max(Wt[1])=2.8   1 + .9·Wt[1, argmax W[1]=1]=0.1
1       1    1    2.0    2     terminated             2 (no bootstrap)        2
2       2    0    -1.0   0     truncated (pre-reset)  -1 + .9·1.5=0.35        -1 + .9·Wt[0, argmax W[0]=0]=-0.55
======  ===  ===  =====  ====  =====================  ===============  ================
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax.core import losses
from metadqn_jax.core.types import Transition

W = jnp.array([[2.0, 1.0], [3.0, 4.0], [5.0, 0.0]], jnp.float32)  # online Q table [3 states, 2 actions]
WT = jnp.array([[0.5, 1.5], [2.0, -1.0], [1.0, 3.0]], jnp.float32)  # target Q table
GAMMA = 0.9

# q(s, a) taken: W[0,0]=2, W[1,1]=4, W[2,0]=5
PLAIN_ERR = np.array([2.8 - 2.0, 2.0 - 4.0, 0.35 - 5.0])  # [0.8, -2, -4.65]
DOUBLE_ERR = np.array([0.1 - 2.0, 2.0 - 4.0, -0.55 - 5.0])  # [-1.9, -2, -5.55]


def huber(x):
    x = np.abs(x)
    return np.where(x <= 1.0, 0.5 * x**2, x - 0.5)


def q_table(params, obs):
    """``obs [B, 3]`` one-hot states -> ``[B, 2]`` (exactly the rows of the table)."""
    return obs @ params


def one_hot(states):
    return jax.nn.one_hot(jnp.asarray(states), 3, dtype=jnp.float32)


def make_batch() -> Transition:
    return Transition(
        obs=one_hot([0, 1, 2]),
        action=jnp.array([0, 1, 0], jnp.int32),
        reward=jnp.array([1.0, 2.0, -1.0], jnp.float32),
        # item 2 is truncated: next_obs is the pre-reset observation (state 0), not a reset state
        next_obs=one_hot([1, 2, 0]),
        terminated=jnp.array([False, True, False]),
        truncated=jnp.array([False, False, True]),
    )


# --------------------------------------------------------------- per-example errors
def test_q_learning_error_hand_computed():
    q_tm1 = jnp.array([1.0, 2.0, 3.0])
    q_t = jnp.array([4.0, -1.0, 2.0])
    err = losses.q_learning_error(q_tm1, jnp.array(1), jnp.array(0.5), jnp.array(0.9), q_t)
    # target 0.5 + 0.9 * 4 = 4.1; q_tm1[1] = 2
    np.testing.assert_allclose(err, 2.1, rtol=1e-6)
    # discount 0 (terminal): target is the reward only
    err0 = losses.q_learning_error(q_tm1, jnp.array(2), jnp.array(0.5), jnp.array(0.0), q_t)
    np.testing.assert_allclose(err0, 0.5 - 3.0, rtol=1e-6)


def test_double_q_learning_error_hand_computed():
    q_tm1 = jnp.array([1.0, 2.0, 3.0])
    q_value = jnp.array([4.0, -1.0, 2.0])
    q_selector = jnp.array([0.0, 5.0, 1.0])  # selects action 1, whose target value is -1
    err = losses.double_q_learning_error(
        q_tm1, jnp.array(1), jnp.array(0.5), jnp.array(0.9), q_value, q_selector
    )
    np.testing.assert_allclose(err, 0.5 + 0.9 * -1.0 - 2.0, rtol=1e-6)  # -2.4
    # with the selector agreeing with the evaluator it is plain Q-learning
    same = losses.double_q_learning_error(
        q_tm1, jnp.array(1), jnp.array(0.5), jnp.array(0.9), q_value, q_value
    )
    plain = losses.q_learning_error(q_tm1, jnp.array(1), jnp.array(0.5), jnp.array(0.9), q_value)
    np.testing.assert_allclose(same, plain, rtol=1e-6)


def test_errors_hold_target_constant():
    """Gradients flow only into q_tm1[a_tm1] (coefficient -1), never into the target."""
    q_tm1 = jnp.array([1.0, 2.0, 3.0])
    q_t = jnp.array([4.0, -1.0, 2.0])
    args = (jnp.array(1), jnp.array(0.5), jnp.array(0.9))
    g_tm1, g_t = jax.grad(lambda a, b: losses.q_learning_error(a, *args, b), argnums=(0, 1))(q_tm1, q_t)
    np.testing.assert_array_equal(g_tm1, [0.0, -1.0, 0.0])
    np.testing.assert_array_equal(g_t, np.zeros(3))
    g = jax.grad(
        lambda a, v, s: losses.double_q_learning_error(a, *args, v, s), argnums=(0, 1, 2)
    )(q_tm1, q_t, q_t)
    np.testing.assert_array_equal(g[0], [0.0, -1.0, 0.0])
    np.testing.assert_array_equal(g[1], np.zeros(3))
    np.testing.assert_array_equal(g[2], np.zeros(3))


def test_errors_reject_batched_inputs():
    with pytest.raises(AssertionError):
        losses.q_learning_error(
            jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), jnp.zeros(2), jnp.zeros(2), jnp.zeros((2, 3))
        )


# ------------------------------------------------------------------------ td_loss
@pytest.mark.parametrize(
    "double,huber_loss,expected_err",
    [
        (False, True, PLAIN_ERR),
        (False, False, PLAIN_ERR),
        (True, True, DOUBLE_ERR),
        (True, False, DOUBLE_ERR),
    ],
)
def test_td_loss_hand_computed(double, huber_loss, expected_err):
    loss, aux = losses.td_loss(
        W, WT, make_batch(), q_table, GAMMA, double=double, huber=huber_loss
    )
    per_example = huber(expected_err) if huber_loss else 0.5 * expected_err**2
    np.testing.assert_allclose(aux.td_error, expected_err, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, per_example.mean(), rtol=1e-5)
    np.testing.assert_allclose(aux.q_mean, (2.0 + 4.0 + 5.0) / 3, rtol=1e-6)
    chex.assert_shape(aux.td_error, (3,))
    chex.assert_shape(loss, ())


def test_td_loss_concrete_values():
    """The four variants as literal numbers (catches a wrong Huber delta or missing 1/2)."""
    kw = dict(q_fn=q_table, gamma=GAMMA)
    batch = make_batch()
    # huber: [0.32, 1.5, 4.15] ; mse: [0.32, 2.0, 10.81125]
    np.testing.assert_allclose(losses.td_loss(W, WT, batch, double=False, huber=True, **kw)[0], 5.97 / 3, rtol=1e-5)
    np.testing.assert_allclose(losses.td_loss(W, WT, batch, double=False, huber=False, **kw)[0], 13.13125 / 3, rtol=1e-5)
    # double huber: [1.4, 1.5, 5.05] ; double mse: [1.805, 2.0, 15.40125]
    np.testing.assert_allclose(losses.td_loss(W, WT, batch, double=True, huber=True, **kw)[0], 7.95 / 3, rtol=1e-5)
    np.testing.assert_allclose(losses.td_loss(W, WT, batch, double=True, huber=False, **kw)[0], 19.20625 / 3, rtol=1e-5)


def test_terminated_stops_bootstrap_truncated_does_not():
    batch = make_batch()
    _, aux = losses.td_loss(W, WT, batch, q_table, GAMMA, double=False)
    # terminated item: the target is the reward even though next_obs has a large target value
    np.testing.assert_allclose(aux.td_error[1], 2.0 - 4.0, rtol=1e-6)
    # truncated item bootstraps (-1 + 0.9 * 1.5); treating it as terminal would give -1 - 5 = -6
    np.testing.assert_allclose(aux.td_error[2], 0.35 - 5.0, rtol=1e-5)
    # the bootstrap reads next_obs: changing the truncated item's next_obs changes its error
    moved = batch._replace(next_obs=batch.next_obs.at[2].set(one_hot(2)))
    _, aux2 = losses.td_loss(W, WT, moved, q_table, GAMMA, double=False)
    np.testing.assert_allclose(aux2.td_error[2], -1.0 + 0.9 * 3.0 - 5.0, rtol=1e-5)
    # ... and changing the terminated item's next_obs does not
    moved = batch._replace(next_obs=batch.next_obs.at[1].set(one_hot(0)))
    _, aux3 = losses.td_loss(W, WT, moved, q_table, GAMMA, double=False)
    np.testing.assert_allclose(aux3.td_error[1], aux.td_error[1], rtol=1e-6)


def test_double_target_differs_from_plain():
    batch = make_batch()
    _, plain = losses.td_loss(W, WT, batch, q_table, GAMMA, double=False)
    _, double = losses.td_loss(W, WT, batch, q_table, GAMMA, double=True)
    assert not np.allclose(plain.td_error, double.td_error)
    # the online net only selects: with online == target both targets coincide
    _, p2 = losses.td_loss(WT, WT, batch, q_table, GAMMA, double=False)
    _, d2 = losses.td_loss(WT, WT, batch, q_table, GAMMA, double=True)
    np.testing.assert_allclose(p2.td_error, d2.td_error, rtol=1e-6)


@pytest.mark.parametrize("double", [False, True])
def test_td_loss_gradient_only_through_q_tm1(double):
    """MSE gradient = mean over items of -err * one_hot(s, a); no gradient to the target
    parameters, and (double) none through the online action selector."""
    err = DOUBLE_ERR if double else PLAIN_ERR
    g_online, g_target = jax.grad(
        lambda p, t: losses.td_loss(p, t, make_batch(), q_table, GAMMA, double=double, huber=False)[0],
        argnums=(0, 1),
    )(W, WT)
    expected = np.zeros((3, 2))
    expected[0, 0] = -err[0] / 3
    expected[1, 1] = -err[1] / 3
    expected[2, 0] = -err[2] / 3
    np.testing.assert_allclose(g_online, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(g_target, np.zeros((3, 2)))


def test_masked_loss_is_mean_over_valid_items():
    batch = make_batch()
    mask = jnp.array([True, False, True])
    loss, aux = losses.td_loss(W, WT, batch, q_table, GAMMA, double=False, mask=mask)
    per_example = huber(PLAIN_ERR)
    np.testing.assert_allclose(loss, (per_example[0] + per_example[2]) / 2, rtol=1e-5)  # 2.235
    np.testing.assert_allclose(aux.td_error, PLAIN_ERR * np.array([1, 0, 1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aux.q_mean, (2.0 + 5.0) / 2, rtol=1e-6)
    # the masked-out item may hold anything (e.g. padding): the loss does not change
    garbage = batch._replace(reward=batch.reward.at[1].set(1e6))
    loss_g, _ = losses.td_loss(W, WT, garbage, q_table, GAMMA, double=False, mask=mask)
    np.testing.assert_allclose(loss_g, loss, rtol=1e-6)
    # an all-true mask equals no mask; an all-false mask gives 0 (no NaN)
    full, _ = losses.td_loss(W, WT, batch, q_table, GAMMA, double=False, mask=jnp.ones(3, bool))
    plain, _ = losses.td_loss(W, WT, batch, q_table, GAMMA, double=False)
    np.testing.assert_allclose(full, plain, rtol=1e-6)
    empty, _ = losses.td_loss(W, WT, batch, q_table, GAMMA, double=False, mask=jnp.zeros(3, bool))
    assert float(empty) == 0.0


def test_gamma_zero_and_traced_gamma():
    batch = make_batch()
    _, aux = losses.td_loss(W, WT, batch, q_table, 0.0, double=False)
    np.testing.assert_allclose(aux.td_error, np.array([1.0, 2.0, -1.0]) - np.array([2.0, 4.0, 5.0]), rtol=1e-6)
    # gamma as a traced array gives the same value as a Python float
    f = jax.jit(lambda g: losses.td_loss(W, WT, batch, q_table, g, double=False)[0])
    np.testing.assert_allclose(f(jnp.float32(GAMMA)), losses.td_loss(W, WT, batch, q_table, GAMMA, double=False)[0], rtol=1e-6)


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("huber_loss", [False, True])
def test_td_loss_jit_equals_nojit(double, huber_loss):
    key = jax.random.key(0)
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    B, D, A = 16, 5, 3
    params = jax.random.normal(k1, (D, A))
    target = jax.random.normal(k2, (D, A))
    batch = Transition(
        obs=jax.random.normal(k3, (B, D)),
        action=jax.random.randint(k4, (B,), 0, A, jnp.int32),
        reward=jax.random.normal(k5, (B,)),
        next_obs=jax.random.normal(k4, (B, D)),
        terminated=jax.random.bernoulli(k5, 0.3, (B,)),
        truncated=jax.random.bernoulli(k3, 0.3, (B,)),
    )
    mask = jax.random.bernoulli(k1, 0.7, (B,))
    fn = functools.partial(losses.td_loss, q_fn=lambda p, o: o @ p, double=double, huber=huber_loss)
    eager = jax.value_and_grad(lambda p, g: fn(p, target, batch, gamma=g, mask=mask)[0])(params, 0.9)
    jitted = jax.jit(jax.value_and_grad(lambda p, g: fn(p, target, batch, gamma=g, mask=mask)[0]))(
        params, jnp.float32(0.9)
    )
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)
