"""Tests of the generic meta-learning core (metadqn_jax.meta.gradient) and of meta-DQN (metadqn_jax.meta: config, learners, acting, step)."""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metadqn_jax.core import replay
from metadqn_jax.meta import gradient as meta
from metadqn_jax import meta as meta_dqn
from metadqn_jax.meta.config import FAMILY_FIELDS
from metadqn_jax.core.validate import ConfigError
from metadqn_jax.meta import MetaConfig
from metadqn_jax.core.types import Transition, example_transition

from _compile import fast_jit  # tests/_compile.py


# =============================================================== generic core (meta.py)
def tiny_params(dtype=jnp.float32):
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "body": {"w": jax.random.normal(k1, (3, 2), dtype) * 0.7, "b": jnp.array([0.1, -0.2], dtype)},
        "head": {"v": jax.random.normal(k2, (2,), dtype)},
    }


def tiny_loss(params, batch):
    """A small nonlinear regression loss: second-order terms matter."""
    x, y = batch
    h = jnp.tanh(x @ params["body"]["w"] + params["body"]["b"][None])
    pred = h @ params["head"]["v"]
    return jnp.mean((pred - y) ** 2), pred


def tiny_task(key, n=6, dtype=jnp.float32):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (n, 3), dtype)
    return x, jnp.sin(x.sum(-1)) + 0.1 * jax.random.normal(ky, (n,), dtype)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


def central_differences(f, tree, eps: float = 1e-6) -> np.ndarray:
    """``(f(θ + ε e_i) − f(θ − ε e_i)) / 2ε`` for every scalar of ``tree``, in ``flat`` order."""
    leaves, treedef = jax.tree.flatten(tree)
    fd = []
    for i, leaf in enumerate(leaves):
        for j in range(leaf.size):
            bump = jnp.zeros(leaf.size, leaf.dtype).at[j].set(eps).reshape(leaf.shape)
            plus = jax.tree.unflatten(treedef, [l + bump if k == i else l for k, l in enumerate(leaves)])
            minus = jax.tree.unflatten(treedef, [l - bump if k == i else l for k, l in enumerate(leaves)])
            fd.append((float(f(plus)) - float(f(minus))) / (2 * eps))
    return np.array(fd)


def test_maml_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        params = tiny_params(jnp.float64)
        support = tiny_task(jax.random.key(1), dtype=jnp.float64)
        query = tiny_task(jax.random.key(2), dtype=jnp.float64)
        kw = dict(inner_opt=optax.sgd(0.3), num_steps=2)

        def outer(p):
            adapted, _ = meta.adapt(p, tiny_loss, support, **kw)
            return tiny_loss(adapted, query)[0]

        grads, metrics = fast_jit(
            lambda p: meta.meta_gradient("maml", p, tiny_loss, support, query, **kw)
        )(params)
        assert jax.tree.leaves(grads)[0].dtype == jnp.float64
        np.testing.assert_allclose(metrics.query_loss, outer(params), rtol=1e-12)

        fd = central_differences(fast_jit(outer), params)
        np.testing.assert_allclose(flat(grads), fd, rtol=1e-5, atol=1e-9)
        # the FOMAML gradient is measurably different: the check above sees 2nd-order terms
        fo, _ = fast_jit(lambda p: meta.meta_gradient("fomaml", p, tiny_loss, support, query, **kw))(params)
        assert np.max(np.abs(flat(fo) - fd)) > 1e-3


def test_fomaml_equals_maml_without_inner_steps():
    params = tiny_params()
    support, query = tiny_task(jax.random.key(1)), tiny_task(jax.random.key(2))
    kw = dict(inner_opt=optax.sgd(0.3), num_steps=0)
    g_maml, m_maml = meta.meta_gradient("maml", params, tiny_loss, support, query, **kw)
    g_fo, m_fo = meta.meta_gradient("fomaml", params, tiny_loss, support, query, **kw)
    chex.assert_trees_all_close(g_maml, g_fo, rtol=1e-6, atol=1e-7)
    # and both equal the plain query gradient at θ
    chex.assert_trees_all_close(g_maml, jax.grad(lambda p: tiny_loss(p, query)[0])(params), rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(m_maml, m_fo, rtol=1e-6)
    np.testing.assert_allclose(m_maml.pre_adapt_loss, m_maml.post_adapt_loss, rtol=1e-6)


def test_maml_and_fomaml_differ_with_inner_steps():
    params = tiny_params()
    support, query = tiny_task(jax.random.key(1)), tiny_task(jax.random.key(2))
    kw = dict(inner_opt=optax.sgd(0.3), num_steps=1)
    g_maml, m_maml = meta.meta_gradient("maml", params, tiny_loss, support, query, **kw)
    g_fo, m_fo = meta.meta_gradient("fomaml", params, tiny_loss, support, query, **kw)
    assert np.max(np.abs(flat(g_maml) - flat(g_fo))) > 1e-3
    # same adapted parameters, so the same query loss
    np.testing.assert_allclose(m_maml.query_loss, m_fo.query_loss, rtol=1e-6)
    # FOMAML = the query gradient evaluated at the adapted parameters
    adapted, _ = meta.adapt(params, tiny_loss, support, **kw)
    chex.assert_trees_all_close(g_fo, jax.grad(lambda p: tiny_loss(p, query)[0])(adapted), rtol=1e-6, atol=1e-7)


def test_reptile_update():
    params = tiny_params()
    support, query = tiny_task(jax.random.key(1)), tiny_task(jax.random.key(2))
    # inner learning rate 0: θ' = θ, so the Reptile "gradient" is exactly zero
    g0, _ = meta.meta_gradient("reptile", params, tiny_loss, support, query, inner_opt=optax.sgd(0.0), num_steps=3)
    for leaf in jax.tree.leaves(g0):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
    # one SGD step at rate α: θ - θ' = α ∇L_support(θ)
    g1, _ = meta.meta_gradient("reptile", params, tiny_loss, support, query, inner_opt=optax.sgd(0.1), num_steps=1)
    expected = jax.tree.map(lambda g: 0.1 * g, jax.grad(lambda p: tiny_loss(p, support)[0])(params))
    chex.assert_trees_all_close(g1, expected, rtol=1e-5, atol=1e-7)
    # reptile_batch replaces the data it adapts on
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), support, query)
    g2, _ = meta.meta_gradient(
        "reptile", params, tiny_loss, support, query, inner_opt=optax.sgd(0.1), num_steps=1, reptile_batch=both
    )
    expected = jax.tree.map(lambda g: 0.1 * g, jax.grad(lambda p: tiny_loss(p, both)[0])(params))
    chex.assert_trees_all_close(g2, expected, rtol=1e-5, atol=1e-7)


def test_adapt_losses_and_validation():
    params = tiny_params()
    support = tiny_task(jax.random.key(1))
    adapted, losses = meta.adapt(params, tiny_loss, support, inner_opt=optax.sgd(0.3), num_steps=4)
    chex.assert_shape(losses, (5,))
    np.testing.assert_allclose(losses[0], tiny_loss(params, support)[0], rtol=1e-6)
    np.testing.assert_allclose(losses[-1], tiny_loss(adapted, support)[0], rtol=1e-6)
    assert float(losses[-1]) < float(losses[0])  # gradient descent on the support set
    # num_steps = 0 returns the parameters unchanged
    same, l0 = meta.adapt(params, tiny_loss, support, inner_opt=optax.sgd(0.3), num_steps=0)
    chex.assert_trees_all_equal(same, params)
    chex.assert_shape(l0, (1,))
    with pytest.raises(ValueError, match="num_steps"):
        meta.adapt(params, tiny_loss, support, inner_opt=optax.sgd(0.3), num_steps=-1)
    with pytest.raises(ValueError, match="unknown meta algorithm"):
        meta.meta_gradient("mamll", params, tiny_loss, support, support, inner_opt=optax.sgd(0.3), num_steps=1)


def test_adapt_with_mask_changes_only_masked_in_leaves():
    params = tiny_params()
    support = tiny_task(jax.random.key(1))
    mask = {"body": {"w": False, "b": False}, "head": {"v": True}}
    # weight decay acts even where the gradient is zero: the *updates* must be masked too
    opt = optax.chain(optax.add_decayed_weights(0.5), optax.sgd(0.3, momentum=0.9))
    adapted, _ = meta.adapt(params, tiny_loss, support, inner_opt=opt, num_steps=3, mask=mask)
    chex.assert_trees_all_equal(adapted["body"], params["body"])
    assert np.max(np.abs(np.asarray(adapted["head"]["v"] - params["head"]["v"]))) > 1e-3
    # the masked MAML gradient still reaches the frozen leaves (through the adapted head)
    g, _ = meta.meta_gradient("maml", params, tiny_loss, support, tiny_task(jax.random.key(2)),
                              inner_opt=optax.sgd(0.3), num_steps=1, mask=mask)
    assert np.max(np.abs(np.asarray(g["body"]["w"]))) > 0


@pytest.mark.parametrize("algorithm", meta.RULES)
def test_batched_meta_gradient_is_mean_of_loop(algorithm):
    params = tiny_params()
    T = 3
    tasks = [tiny_task(jax.random.key(10 + t)) for t in range(T)]
    queries = [tiny_task(jax.random.key(20 + t)) for t in range(T)]
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)
    kw = dict(inner_opt=optax.sgd(0.2), num_steps=2)
    grads, metrics = fast_jit(
        functools.partial(meta.batched_meta_gradient, algorithm, loss_fn=tiny_loss, **kw)
    )(params, supports=stack(tasks), queries=stack(queries))
    one = fast_jit(lambda s, q: meta.meta_gradient(algorithm, params, tiny_loss, s, q, **kw))
    loop = [one(s, q) for s, q in zip(tasks, queries)]
    mean = jax.tree.map(lambda *g: jnp.mean(jnp.stack(g), 0), *[g for g, _ in loop])
    # atol 1e-6: on an H200 one entry of ~2.5e-3 differed by 1.9e-7 (reduction order), 1e-7 on the CPU
    chex.assert_trees_all_close(grads, mean, rtol=1e-5, atol=1e-6)
    chex.assert_shape(metrics.query_loss, (T,))
    np.testing.assert_allclose(metrics.query_loss, [m.query_loss for _, m in loop], rtol=1e-5)


# ===================================================================== meta-DQN
TINY = MetaConfig(
    family="pointnav-goal",
    algorithm="maml",
    num_tasks=4,
    envs_per_task=2,
    rollout_steps=5,
    support_size=10,
    buffer_size=10,
    query_batch=16,
    inner_steps=2,
    hidden=(16, 16),
    encoder_hidden=(16,),
    encoder_post=(),  # the library's context settings, not pointnav-goal's recommendations
    context_decoder=0.0,
    context_refine=0,
    context_dim=4,
    num_meta_steps=10,
    chunk_size=10,
)


def tiny(**kw) -> MetaConfig:
    return MetaConfig(**{**TINY.__dict__, **kw})


CHUNK = 10  # meta-steps per compiled call


def all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def compiled_program(cfg: MetaConfig):
    """``(prog, init, run, traces)``: jitted init and ``meta_train`` (``CHUNK`` steps per call,
    state donated), both wrapped with Python trace counters."""
    prog = meta_dqn.make_meta_step(cfg)
    traces = {"train": 0, "step": 0}

    def counted_step(state, hp):
        traces["step"] += 1  # runs only while tracing
        return prog.meta_step(state, hp)

    def counted_train(state, hp):
        traces["train"] += 1
        return meta_dqn.meta_train(counted_step, state, hp, CHUNK)

    run = fast_jit(counted_train, donate_argnums=(0,))
    return prog, fast_jit(prog.init), run, traces


@pytest.fixture(scope="module")
def maml():
    """One compiled MAML program shared by every test below (so it must compile only once)."""
    return compiled_program(TINY)


def test_vmapped_meta_grad_equals_python_loop(maml):
    prog, init, run, _ = maml
    hp = TINY.hparams()
    state, _ = run(init(jax.random.key(0), hp), hp)  # fills every task's buffer
    support = jax.vmap(replay.recent, in_axes=(0, None))(state.buffers, TINY.support_size)
    query_tr = jax.vmap(replay.sample, in_axes=(0, 0, None))(
        state.buffers, jax.random.split(jax.random.key(1), TINY.num_tasks), TINY.query_batch
    )
    query = (query_tr, jnp.ones((TINY.num_tasks, TINY.query_batch), bool))
    # a partially valid support for one task: the mask must be honoured per task
    support = (support[0], support[1].at[1, :4].set(False))

    vmapped, metrics = fast_jit(jax.vmap(prog.learner.meta_grad, in_axes=(None, None, 0, 0, None)))(
        state.params, state.target_params, support, query, hp
    )
    v_mean = jax.tree.map(lambda g: g.mean(0), vmapped)
    grad_fn = fast_jit(prog.learner.meta_grad)
    per_task = [
        grad_fn(state.params, state.target_params, jax.tree.map(lambda x: x[t], support),
                jax.tree.map(lambda x: x[t], query), hp)
        for t in range(TINY.num_tasks)
    ]
    l_mean = jax.tree.map(lambda *g: jnp.mean(jnp.stack(g), 0), *[g for g, _ in per_task])
    chex.assert_trees_all_close(v_mean, l_mean, rtol=1e-4, atol=1e-6)
    for t, (g, m) in enumerate(per_task):
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[t], vmapped), g, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(metrics.query_loss[t], m.query_loss, rtol=1e-4)
    # the tasks really differ (otherwise the comparison would be vacuous)
    assert np.ptp(np.asarray(metrics.query_loss)) > 1e-4
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(v_mean)) > 0


def test_task_micro_batches_equal_one_vmap(maml):
    """``task_micro_batch=2`` (per-task meta-gradients two tasks at a time) is the same
    computation as one vmap over the 4 tasks: same parameters after a chunk of meta-steps."""
    _, init, run, _ = maml
    _, init2, run2, _ = compiled_program(tiny(task_micro_batch=2))
    hp = TINY.hparams()
    s1, m1 = run(init(jax.random.key(0), hp), hp)
    s2, m2 = run2(init2(jax.random.key(0), hp), hp)
    chex.assert_trees_all_close(s2.params, s1.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m2.query_loss, m1.query_loss, rtol=1e-5)
    assert max_abs_diff(s1.params, init(jax.random.key(0), hp).params) > 0


def test_meta_step_traced_once_across_calls_and_hparams(maml):
    prog, init, run, traces = maml
    state = init(jax.random.key(0), TINY.hparams())
    before = jax.tree.map(np.asarray, state.params)
    for hp in (
        TINY.hparams(),
        TINY.hparams(inner_lr=0.05),
        TINY.hparams(meta_lr=3e-4, gamma=0.9),
        TINY.hparams(epsilon=0.1, tau=0.5, weight_decay=1e-3),
    ):
        state, metrics = run(state, hp)
    jax.block_until_ready(state)
    assert traces == {"train": 1, "step": 1}, traces
    assert run._cache_size() == 1
    assert init._cache_size() == 1
    assert int(state.step) == 4 * CHUNK
    chex.assert_shape(metrics.query_loss, (CHUNK,))
    assert all_finite(state.params) and all_finite(metrics)
    assert max_abs_diff(state.params, before) > 0


def test_meta_training_lowers_query_loss(maml):
    """300 MAML meta-steps on pointnav-goal: the post-adaptation query TD loss (the
    meta-objective) falls well below its starting level. A learner whose meta-update is a
    no-op (meta_lr ~ 0) stays near its starting level and fails the same bar."""
    prog, init, run, traces = maml

    def curve(hp, steps=300):
        state = init(jax.random.key(0), hp)
        q = []
        for _ in range(steps // CHUNK):
            state, metrics = run(state, hp)
            q.append(np.asarray(metrics.query_loss))
        q = np.concatenate(q)
        return q[:20].mean(), q[-50:].mean()

    # measured on seeds 0-2: last / first ~ 0.05-0.07 (meta_lr 1e-3 .. 3e-3), ~1.0 for the no-op
    first, last = curve(TINY.hparams(meta_lr=3e-3))
    assert np.isfinite(last)
    assert last < 0.25 * first, (first, last)
    first0, last0 = curve(TINY.hparams(meta_lr=1e-9))
    assert last0 > 0.5 * first0, (first0, last0)
    assert traces == {"train": 1, "step": 1}, traces  # 60 calls, still one compilation


# The gradient learners share their adaptation code with MAML (whose program above uses the
# default query source); run them with queries from the replay buffer to cover that path too.
BUFFER_QUERY = {"query_source": "buffer"} if "query_source" in MetaConfig.__dataclass_fields__ else {}


@pytest.mark.parametrize("algorithm", meta_dqn.ALGORITHMS)
def test_every_algorithm_runs(algorithm, maml):
    cfg = tiny(algorithm=algorithm, **(BUFFER_QUERY if algorithm in ("fomaml", "reptile", "pretrained") else {}))
    prog, init, run, _ = maml if algorithm == TINY.algorithm else compiled_program(cfg)
    hp = cfg.hparams()
    state = init(jax.random.key(0), hp)
    params0 = jax.tree.map(np.asarray, state.params)
    state, metrics = run(state, hp)
    assert all_finite(state.params) and all_finite(state.target_params) and all_finite(metrics)
    chex.assert_shape(metrics.query_loss, (CHUNK,))
    assert jax.tree.structure(state.params) == jax.tree.structure(params0)
    assert max_abs_diff(state.params, params0) > 0  # the meta-parameters moved
    assert ("enc" in state.params) == (algorithm == "context")
    assert int(state.buffers.size[0]) == cfg.buffer_size


def pointnav_support(n: int, valid: int):
    tr = random_transitions(jax.random.key(5), n, obs_dim=2, num_actions=4)
    return tr, jnp.arange(n) >= n - valid


def test_cavia_without_inner_steps_is_shared_net_with_zero_context():
    cfg = tiny(algorithm="cavia", inner_steps=0)
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    hp = cfg.hparams()
    params = fast_jit(learner.init)(jax.random.key(0))
    target = jax.tree.map(lambda x: x + 0.01, params)
    support = pointnav_support(cfg.support_size, 7)
    tp = fast_jit(learner.adapt)(params, target, support, hp)
    chex.assert_trees_all_equal(tp["net"], params["net"])
    np.testing.assert_array_equal(tp["ctx"], np.zeros(cfg.context_dim, np.float32))
    chex.assert_trees_all_equal(tp, learner.unadapted(params))
    # with inner steps only the context moves; the network is shared
    cfg2 = tiny(algorithm="cavia", inner_steps=2)
    learner2 = meta_dqn.make_learner(cfg2, 4, (2,))
    tp2 = fast_jit(learner2.adapt)(params, target, support, cfg2.hparams(inner_lr=1.0))
    chex.assert_trees_all_equal(tp2["net"], params["net"])
    assert float(jnp.max(jnp.abs(tp2["ctx"]))) > 0


@pytest.mark.parametrize("algorithm,adapt", [("maml", "all"), ("fomaml", "head"), ("cavia", "all"), ("context", "all")])
def test_adapt_mask_names_exactly_what_adapt_changes(algorithm, adapt):
    cfg = tiny(algorithm=algorithm, adapt=adapt, inner_steps=2)
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    if algorithm == "context":  # adapts by inference: no gradient steps, no mask
        assert learner.adapt_mask is None
        return
    params = fast_jit(learner.init)(jax.random.key(0))
    target = jax.tree.map(lambda x: x + 0.01, params)
    tp0 = learner.unadapted(params)
    tp = fast_jit(learner.adapt)(params, target, pointnav_support(cfg.support_size, 7), cfg.hparams(inner_lr=1.0))
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), tp, tp0)
    mask = learner.adapt_mask(tp0)
    assert jax.tree.leaves(changed) == jax.tree.leaves(mask)
    assert any(jax.tree.leaves(mask)) and not all(jax.tree.leaves(mask))  # some leaves adapt, some are shared


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_unadapted_weight_adds_the_supports_td_gradient_at_the_unadapted_parameters(algorithm):
    """``unadapted_weight = w``: the meta-gradient plus ``w × ∇θ TD_support(θ)`` (unadapted θ,
    the meta-target); the metrics (inner steps, query loss) unchanged."""
    cfg = tiny(algorithm=algorithm, inner_steps=2, unadapted_weight=0.5)
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    plain = meta_dqn.make_learner(dataclasses.replace(cfg, unadapted_weight=0.0), 4, (2,))
    hp = cfg.hparams(inner_lr=0.5)
    params = fast_jit(learner.init)(jax.random.key(0))
    target = fast_jit(learner.init)(jax.random.key(1))
    support = pointnav_support(cfg.support_size, 7)
    query = (random_transitions(jax.random.key(9), 16, obs_dim=2, num_actions=4), jnp.ones(16, bool))
    grads, m = jax.jit(learner.meta_grad)(params, target, support, query, hp)
    grads0, m0 = jax.jit(plain.meta_grad)(params, target, support, query, hp)
    anchor = jax.grad(lambda p: learner.td_loss(learner.unadapted(p), target["net"], support, hp)[0])(params)
    want = jax.tree.map(lambda g, a: g + 0.5 * a, grads0, anchor)
    chex.assert_trees_all_close(grads, want, rtol=1e-5, atol=1e-7)
    assert max_abs_diff(grads, grads0) > 1e-4  # the term is not negligible here
    chex.assert_trees_all_close(m, m0)
    with pytest.raises(ConfigError, match="^unadapted_weight must be"):
        tiny(algorithm=algorithm, unadapted_weight=-1.0)


def test_zero_context_adds_the_querys_td_gradient_at_z_zero():
    """Context ``zero_context = w``: the meta-gradient plus ``w × ∇ TD_query(net, z = 0)`` (the
    policy before any data, as the pretrained network learns it); the metrics unchanged."""
    cfg = tiny(algorithm="context", zero_context=0.5)
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    plain = meta_dqn.make_learner(dataclasses.replace(cfg, zero_context=0.0), 4, (2,))
    hp = cfg.hparams()
    params = fast_jit(learner.init)(jax.random.key(0))
    target = fast_jit(learner.init)(jax.random.key(1))
    support = pointnav_support(cfg.support_size, 7)
    query = (random_transitions(jax.random.key(9), 16, obs_dim=2, num_actions=4), jnp.ones(16, bool))
    grads, m = jax.jit(learner.meta_grad)(params, target, support, query, hp)
    grads0, m0 = jax.jit(plain.meta_grad)(params, target, support, query, hp)
    zero = jax.grad(lambda p: learner.td_loss(learner.unadapted(p), target["net"], query, hp)[0])(params)
    chex.assert_trees_all_close(grads, jax.tree.map(lambda g, a: g + 0.5 * a, grads0, zero), rtol=1e-5, atol=1e-7)
    assert max_abs_diff(grads["net"], grads0["net"]) > 1e-4  # not negligible here
    assert max_abs_diff(grads["enc"], grads0["enc"]) == 0  # z = 0 does not read the encoder
    chex.assert_trees_all_close(m, m0)
    with pytest.raises(ConfigError, match="^zero_context must be"):
        tiny(algorithm="context", zero_context=-1.0)


def test_model_loss_adds_a_model_heads_error_to_the_inner_and_outer_task_loss():
    """``model_loss = λ``: the Q-network gains a head predicting, per action, the reward and state
    change; MAML's inner steps and query loss are ``TD + λ × its masked squared error for the
    action taken`` (checked against the meta-gradient of a loss written out here); the TD loss
    that fine-tuning uses stays the TD loss."""
    from metadqn_jax.core.networks import make_q_network

    cfg = tiny(algorithm="maml", inner_steps=2, model_loss=2.0)
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    hp = cfg.hparams(inner_lr=0.3)
    params = fast_jit(learner.init)(jax.random.key(0))
    target = fast_jit(learner.init)(jax.random.key(1))
    assert set(params["net"]["params"]) >= {"model", "head"}
    support = pointnav_support(cfg.support_size, 7)  # 7 valid transitions, the rest padding
    query = (random_transitions(jax.random.key(9), 16, obs_dim=2, num_actions=4), jnp.ones(16, bool))
    net = make_q_network(4, cfg.hidden, dueling=cfg.dueling, activation=cfg.activation, model_outputs=3)

    def written_out(tp, batch):
        tr, mask = batch
        td, aux = learner.td_loss(tp, target["net"], batch, hp)
        _, pred = net.apply(tp["net"], tr.obs, with_model=True)  # [B, 4 actions, (reward, Δx, Δy)]
        want = jnp.concatenate([tr.reward[:, None], tr.next_obs - tr.obs], -1)
        err = pred[jnp.arange(tr.action.shape[0]), tr.action] - want
        w = mask.astype(jnp.float32)
        return td + 2.0 * jnp.sum(jnp.sum(err ** 2, -1) * w) / jnp.sum(w), aux

    grads, m = jax.jit(learner.meta_grad)(params, target, support, query, hp)
    ref, m_ref = meta.meta_gradient("maml", learner.unadapted(params), written_out, support, query,
                                    inner_opt=optax.sgd(0.3), num_steps=2)
    chex.assert_trees_all_close(grads["net"], ref["net"], rtol=2e-5, atol=1e-6)
    chex.assert_trees_all_close(m, m_ref, rtol=1e-5)
    assert float(np.abs(np.asarray(grads["net"]["params"]["model"]["kernel"])).max()) > 1e-3  # the head learns
    # the model term is not negligible: without it, the shared layers get another gradient
    plain = meta_dqn.make_learner(dataclasses.replace(cfg, model_loss=0.0), 4, (2,))
    no_model = {"net": {"params": {k: v for k, v in params["net"]["params"].items() if k != "model"}}}
    grads0, _ = jax.jit(plain.meta_grad)(no_model, target, support, query, hp)
    assert max_abs_diff(grads0["net"]["params"]["hidden_0"], grads["net"]["params"]["hidden_0"]) > 1e-3
    # fine-tuning's TD loss ignores the model head
    td, _ = learner.td_loss(learner.unadapted(params), target["net"], query, hp)
    td0, _ = plain.td_loss(plain.unadapted(no_model), target["net"], query, hp)
    np.testing.assert_allclose(float(td), float(td0), rtol=1e-6)


def test_model_loss_is_checked_against_what_it_cannot_move():
    with pytest.raises(ConfigError, match="^model_loss must be"):
        tiny(model_loss=-1.0)
    with pytest.raises(ConfigError, match="^adapt must be 'all' when model_loss > 0"):
        tiny(algorithm="maml", adapt="head", model_loss=1.0)
    with pytest.raises(ConfigError, match="^cavia_damping must be 0 when model_loss > 0"):
        tiny(algorithm="cavia", cavia_damping=1.0, model_loss=1.0)
    tiny(algorithm="context", adapt="head", model_loss=1.0)  # the context learner ignores both


def _f64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def test_cavia_meta_gradient_matches_finite_differences():
    """CAVIA's second-order meta-gradient w.r.t. the shared network, through 2 inner steps on
    the context vector, equals central finite differences (float64). γ = 0 makes the TD target
    the reward: the semi-gradient TD loss stops gradients through its bootstrap target, a path
    finite differences would see but autodiff by design does not. First-order CAVIA misses
    the second-order terms, and the same check sees that."""
    with jax.enable_x64(True):
        cfg = tiny(algorithm="cavia", inner_steps=2, hidden=(5,), context_dim=2, huber=False)
        learner = meta_dqn.make_learner(cfg, 4, (2,))
        params = _f64(fast_jit(learner.init)(jax.random.key(0)))
        target = jax.tree.map(lambda x: x * 0.9, params)
        support = _f64(pointnav_support(10, 7))
        query = _f64((random_transitions(jax.random.key(6), 12), jnp.ones(12, bool)))
        hp = meta_dqn.MetaHParams(*[jnp.float64(x) for x in cfg.hparams(inner_lr=1.0, gamma=0.0)])

        grads, m = fast_jit(learner.meta_grad)(params, target, support, query, hp)
        assert set(grads) == {"net"} and jax.tree.leaves(grads)[0].dtype == jnp.float64

        def outer(net):
            tp = learner.adapt({"net": net}, target, support, hp)
            return learner.td_loss(tp, target["net"], query, hp)[0]

        outer_jit = fast_jit(outer)
        # rtol 1e-7: the two float64 computations agree to 1e-10 on the CPU, to 7.1e-9 on an H200
        np.testing.assert_allclose(m.query_loss, outer_jit(params["net"]), rtol=1e-7)
        adapted = fast_jit(learner.adapt)(params, target, support, hp)
        assert float(jnp.max(jnp.abs(adapted["ctx"]))) > 1e-3  # the inner steps do move φ

        fd = central_differences(outer_jit, params["net"])
        np.testing.assert_allclose(flat(grads["net"]), fd, rtol=1e-5, atol=1e-9)
        fo_learner = meta_dqn.make_learner(dataclasses.replace(cfg, cavia_first_order=True), 4, (2,))
        fo, _ = fast_jit(fo_learner.meta_grad)(params, target, support, query, hp)
        assert np.max(np.abs(flat(fo["net"]) - fd)) > 1e-4


def test_cavia_gauss_newton_steps_are_damped_newton_steps_stable_and_differentiable():
    """``cavia_damping > 0``: each inner step is ``φ ← φ − (G + μI)⁻¹ g``. With γ = 0, squared
    TD errors and a ReLU network the TD errors are piecewise linear in φ, so the Gauss-Newton
    matrix is the loss's exact Hessian: the step must equal ``−(H + μI)⁻¹ g`` from
    ``jax.hessian``. Where the support loss is so sharp in φ that SGD steps at ``inner_lr`` 1
    raise it (the instability measured on cartpole-flipped), the Gauss-Newton steps lower it.
    The second-order meta-gradient through the solves matches finite differences."""
    with jax.enable_x64(True):
        cfg = tiny(algorithm="cavia", inner_steps=1, hidden=(5,), context_dim=2, huber=False, cavia_damping=0.1)
        learner = meta_dqn.make_learner(cfg, 4, (2,))
        params = _f64(fast_jit(learner.init)(jax.random.key(0)))
        target = jax.tree.map(lambda x: x * 0.9, params)
        support = _f64(pointnav_support(10, 7))
        hp = meta_dqn.MetaHParams(*[jnp.float64(x) for x in cfg.hparams(inner_lr=1.0, gamma=0.0)])
        loss_c = lambda net, c: learner.td_loss({"net": net, "ctx": c}, target["net"], support, hp)[0]
        c0 = jnp.zeros(2, jnp.float64)
        h, g = jax.hessian(loss_c, 1)(params["net"], c0), jax.grad(loss_c, 1)(params["net"], c0)
        newton = -np.linalg.solve(np.asarray(h) + 0.1 * np.eye(2), np.asarray(g))
        step = fast_jit(learner.adapt)(params, target, support, hp)["ctx"]
        np.testing.assert_allclose(step, newton, rtol=1e-9, atol=1e-12)
        assert np.max(np.abs(newton)) > 1e-3

        # a support loss 400x sharper in φ (the first layer's context rows x 20)
        sharp = jax.tree.map(lambda x: x, params)
        k = sharp["net"]["params"]["hidden_0"]["kernel"]
        sharp["net"]["params"]["hidden_0"]["kernel"] = k.at[2:].multiply(20.0)
        five = dict(inner_steps=5)
        for damping, lowers in ((0.0, False), (0.1, True)):
            c = dataclasses.replace(cfg, cavia_damping=damping, **five)
            lrn = meta_dqn.make_learner(c, 4, (2,))
            adapted = fast_jit(lrn.adapt)(sharp, target, support, hp)
            before, after = float(loss_c(sharp["net"], c0)), float(loss_c(sharp["net"], adapted["ctx"]))
            assert (after < before) == lowers, (damping, before, after)

        cfg2 = dataclasses.replace(cfg, inner_steps=2)
        learner2 = meta_dqn.make_learner(cfg2, 4, (2,))
        query = _f64((random_transitions(jax.random.key(6), 12), jnp.ones(12, bool)))
        grads, _ = fast_jit(learner2.meta_grad)(params, target, support, query, hp)

        def outer(net):
            tp = learner2.adapt({"net": net}, target, support, hp)
            return learner2.td_loss(tp, target["net"], query, hp)[0]

        fd = central_differences(fast_jit(outer), params["net"])
        np.testing.assert_allclose(flat(grads["net"]), fd, rtol=1e-5, atol=1e-9)


def test_cavia_vmapped_meta_grad_equals_loop_over_tasks():
    cfg = tiny(algorithm="cavia", inner_steps=2)
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    params = fast_jit(learner.init)(jax.random.key(0))
    target = jax.tree.map(lambda x: x * 0.9, params)
    hp = cfg.hparams(inner_lr=1.0)
    T, S, Q = 3, cfg.support_size, 8
    support = (jax.vmap(lambda k: random_transitions(k, S))(jax.random.split(jax.random.key(1), T)),
               jnp.arange(S)[None] >= jnp.array([0, 3, 8])[:, None])  # 10, 7 and 2 valid
    query = (jax.vmap(lambda k: random_transitions(k, Q))(jax.random.split(jax.random.key(2), T)),
             jnp.ones((T, Q), bool))
    vmapped, metrics = fast_jit(jax.vmap(learner.meta_grad, in_axes=(None, None, 0, 0, None)))(
        params, target, support, query, hp)
    grad_fn = fast_jit(learner.meta_grad)
    for t in range(T):
        g, m = grad_fn(params, target, jax.tree.map(lambda x: x[t], support), jax.tree.map(lambda x: x[t], query), hp)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[t], vmapped), g, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(metrics.query_loss[t], m.query_loss, rtol=1e-5)
    assert np.ptp(np.asarray(metrics.query_loss)) > 1e-4  # the tasks differ


# ---------------------------------------------------------------- context encoder
def random_transitions(key, n, obs_dim=2, num_actions=4) -> Transition:
    ks = jax.random.split(key, 5)
    return Transition(
        obs=jax.random.normal(ks[0], (n, obs_dim)),
        action=jax.random.randint(ks[1], (n,), 0, num_actions, jnp.int32),
        reward=jax.random.normal(ks[2], (n,)),
        next_obs=jax.random.normal(ks[3], (n, obs_dim)),
        terminated=jax.random.bernoulli(ks[4], 0.3, (n,)),
        truncated=jnp.zeros((n,), bool),
    )


@pytest.fixture(scope="module", params=[(), (8,)], ids=["mean", "deepsets"])
def encoder(request):
    """The encoder as a plain masked mean (``encoder_post = ()``) and with a ρ MLP after pooling."""
    cfg = tiny(algorithm="context", encoder_post=request.param)
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    params = fast_jit(learner.init)(jax.random.key(0))
    enc = meta_dqn.ContextEncoder(cfg.encoder_hidden, cfg.context_dim, 4, cfg.encoder_post)
    return JitEncoder(enc), params["enc"], cfg


class JitEncoder:
    """The encoder with a jitted ``apply`` (op-by-op flax is slow to dispatch)."""

    def __init__(self, module):
        self.module = module
        self.apply = fast_jit(module.apply)


def test_context_encoder_permutation_invariant(encoder):
    enc, enc_params, cfg = encoder
    tr = random_transitions(jax.random.key(1), 7)
    mask = jnp.ones(7, bool)
    z = enc.apply(enc_params, tr, mask)
    chex.assert_shape(z, (cfg.context_dim,))
    assert float(jnp.max(jnp.abs(z))) > 0
    perm = jax.random.permutation(jax.random.key(2), 7)
    z_perm = enc.apply(enc_params, jax.tree.map(lambda x: x[perm], tr), mask[perm])
    np.testing.assert_allclose(z_perm, z, rtol=1e-5, atol=1e-6)
    # the encoder does see the data: a different set gives a different z
    z_other = enc.apply(enc_params, random_transitions(jax.random.key(3), 7), mask)
    assert not np.allclose(z_other, z)


def test_context_encoder_mask(encoder):
    enc, enc_params, cfg = encoder
    tr = random_transitions(jax.random.key(1), 6)
    mask = jnp.array([False, False, True, True, True, False])
    z = enc.apply(enc_params, tr, mask)
    # garbage in the masked-out slots does not change z
    garbage = tr._replace(
        obs=tr.obs.at[jnp.array([0, 1, 5])].set(1e4),
        reward=tr.reward.at[jnp.array([0, 1, 5])].set(-1e4),
        next_obs=tr.next_obs.at[jnp.array([0, 1, 5])].set(-1e4),
    )
    np.testing.assert_allclose(enc.apply(enc_params, garbage, mask), z, rtol=1e-5, atol=1e-6)
    # and z equals the encoder of only the valid items
    valid = jax.tree.map(lambda x: x[2:5], tr)
    np.testing.assert_allclose(enc.apply(enc_params, valid, jnp.ones(3, bool)), z, rtol=1e-5, atol=1e-6)
    # an empty support gives z = 0 (no NaN)
    z0 = enc.apply(enc_params, garbage, jnp.zeros(6, bool))
    np.testing.assert_array_equal(z0, np.zeros(cfg.context_dim, np.float32))


def test_encoder_sums_incremental_equals_batch(encoder):
    enc, enc_params, cfg = encoder
    n = 8
    tr = random_transitions(jax.random.key(4), n)
    mask = jnp.array([True, True, False, True, True, True, False, True])
    z = enc.apply(enc_params, tr, mask)
    sums = fast_jit(lambda t, m: meta_dqn.encoder_sums(enc.module, enc_params, t, m))
    total = jnp.zeros(enc.module.embed_dim)
    count = jnp.zeros(())
    for i in range(n):
        s, c = sums(jax.tree.map(lambda x: x[i : i + 1], tr), mask[i : i + 1])
        total, count = total + s, count + c
    assert float(count) == float(mask.sum())
    z_inc = enc.module.apply(enc_params, total, count, method=meta_dqn.ContextEncoder.readout)
    np.testing.assert_allclose(z_inc, z, rtol=1e-5, atol=1e-6)
    s_all, c_all = sums(tr, mask)
    np.testing.assert_allclose(s_all, total, rtol=1e-5, atol=1e-6)
    assert float(c_all) == 6.0


def test_online_context_acting_equals_batch_encoder_step_by_step(encoder):
    """Acting online (:func:`meta_dqn.online_step`): at every step each env acts greedily on
    the batch encoder's ``z`` of *its own* transitions so far (``z = 0`` at the first step),
    and the running sums end equal to :func:`encoder_sums` of each env's transitions."""
    _, _, cfg = encoder
    prog = meta_dqn.make_meta_step(cfg)
    learner = prog.learner
    params = fast_jit(learner.init)(jax.random.key(0))
    E, n = 2, 6
    task = cfg.task_family.sample(jax.random.key(3), 1, "train")
    env_params = meta_dqn.tasks_per_env(task, E)
    env_params = jax.tree.map(lambda x: x[0], env_params)
    from metadqn_jax.core import rollout

    def run(key):
        carry = rollout.init_carry(prog.env, key, env_params)
        empty = replay.recent(replay.init(example_transition(prog.obs_shape), 4), 4)
        stats = jax.tree.map(lambda x: jnp.broadcast_to(x, (E,) + x.shape), learner.online.start(params, empty))
        step = lambda st, k: meta_dqn.online_step(prog.env, learner, params, st, k, env_params, 0.0)
        (_, stats), tr = jax.lax.scan(step, (carry, stats), jax.random.split(jax.random.key(1), n))
        return stats, tr  # tr leaves [n, E, ...]

    stats, tr = fast_jit(run)(jax.random.key(2))
    np.testing.assert_array_equal(stats[1], np.full(E, n, np.float32))
    enc_sums = fast_jit(lambda t, m: meta_dqn.encoder_sums(encoder[0].module, params["enc"], t, m))
    q_fn = fast_jit(learner.q_values)
    for e in range(E):
        env_tr = jax.tree.map(lambda x: x[:, e], tr)
        s, c = enc_sums(env_tr, jnp.ones(n, bool))
        np.testing.assert_allclose(stats[0][e], s, rtol=1e-5, atol=1e-6)
        for t in range(n):
            z = encoder[0].apply(params["enc"], env_tr, jnp.arange(n) < t)  # transitions before t
            q = q_fn({"net": params["net"], "ctx": z}, env_tr.obs[t])
            assert int(env_tr.action[t]) == int(jnp.argmax(q)), (e, t)
    # the context really changes what the agent does (otherwise the check above is vacuous)
    z_end = stats[0] / stats[1][:, None]
    assert float(jnp.max(jnp.abs(z_end))) > 1e-3


def test_explore_modes_resolve_per_learner_and_reject_what_cannot_work():
    """``FewShotConfig.explore`` / :func:`evaluate.explore_mode`: "auto" infers the task while
    acting exactly where a learner was trained to (the online encoder, or with refinement the
    adapted context); "online" is "unadapted" for a learner without an online form (one
    setting serves a comparison of algorithms); unknown names are refused up front."""
    from metadqn_jax.fewshot import FewShotConfig, explore_mode, first_episode_explore

    def mode(explore="auto", **kw):
        cfg = tiny(**kw)
        return explore_mode(cfg, meta_dqn.make_learner(cfg, 4, (2,)), explore)

    assert mode(algorithm="maml") == mode(algorithm="cavia") == "unadapted"
    assert mode(algorithm="context") == "online"
    assert mode(algorithm="context", online_context=False) == "unadapted"
    refine = dict(algorithm="context", context_decoder=1.0, context_refine=2)
    assert mode(**refine) == "adapted" and mode("online", **refine) == "online"
    assert mode("adapted", algorithm="maml") == "adapted"  # any learner can act on its adaptation
    assert first_episode_explore(tiny(**refine)) == "adapted"
    assert first_episode_explore(tiny(algorithm="context", online_context=False)) == "online"
    assert first_episode_explore(tiny(algorithm="pretrained")) == "unadapted"
    assert mode("online", algorithm="maml") == mode("unadapted", **refine) == "unadapted"
    with pytest.raises(ConfigError, match=r"^explore must be 'auto' or 'online' or 'adapted' or 'unadapted', got 'greedy'"):
        FewShotConfig(explore="greedy")


def test_adapted_exploration_acts_on_the_adapted_context_of_the_transitions_so_far():
    """``explore="adapted"``: at every step the agent acts greedily on ``learner.adapt`` of the
    transitions collected *before* that step (with refinement: the refined context, which the
    O(1) online sums cannot give), and that differs from acting on the encoder's online z."""
    from metadqn_jax.core import rollout
    from metadqn_jax.fewshot.protocol import explore_step

    cfg = tiny(algorithm="context", context_decoder=1.0, context_refine=2, context_refine_damping=0.1)
    prog = meta_dqn.make_meta_step(cfg)
    learner, env, n = prog.learner, prog.env, 8
    params = fast_jit(learner.init)(jax.random.key(0))
    hp = cfg.hparams()
    task = jax.tree.map(lambda x: x[0], cfg.task_family.sample(jax.random.key(3), 1, "test"))
    env_params = rollout.broadcast_params(task, 1)

    def run(mode, key):
        carry = rollout.init_carry(env, key, env_params)
        stats = meta_dqn.online_no_data_stats(learner, params, prog.obs_shape, (1,)) if mode == "online" else None
        buf = replay.init(example_transition(prog.obs_shape), n)

        def step(c, k):
            carry, stats, buf = c
            (carry, stats), tr = explore_step(env, learner, mode, params, params, hp, (carry, stats), buf,
                                              n, k, env_params, 0.0)
            return (carry, stats, replay.add(buf, tr)), tr

        _, tr = jax.lax.scan(step, (carry, stats, buf), jax.random.split(jax.random.key(1), n))
        return jax.tree.map(lambda x: x[:, 0], tr)  # [n, ...]

    tr = fast_jit(run, static_argnums=0)("adapted", jax.random.key(2))
    adapt = fast_jit(lambda m: learner.adapt(params, params, (tr, m), hp))
    plain = meta_dqn.make_learner(dataclasses.replace(cfg, context_refine=0), 4, (2,))  # same encoder, no refinement
    encoder_only = fast_jit(lambda m: plain.adapt(params, params, (tr, m), hp))
    q_fn = fast_jit(learner.q_values)
    refined_vs_encoder = 0.0
    for t in range(n):
        tp = adapt(jnp.arange(n) < t)  # the transitions before step t (t = 0: none, z = 0)
        assert int(tr.action[t]) == int(jnp.argmax(q_fn(tp, tr.obs[t]))), t
        z_enc = encoder_only(jnp.arange(n) < t)["ctx"]
        refined_vs_encoder = max(refined_vs_encoder, float(jnp.max(jnp.abs(tp["ctx"] - z_enc))))
    assert refined_vs_encoder > 1e-3  # the refinement moved the context the agent acted on
    online = fast_jit(run, static_argnums=0)("online", jax.random.key(2))
    assert not np.array_equal(np.asarray(online.action), np.asarray(tr.action))  # and it acts differently


def test_only_the_context_learner_has_an_online_form():
    assert meta_dqn.make_learner(tiny(algorithm="context"), 4, (2,)).online is not None
    for algorithm in ("maml", "cavia", "pretrained"):
        assert meta_dqn.make_learner(tiny(algorithm=algorithm), 4, (2,)).online is None



def test_context_decoder_trains_the_encoder_only_and_respects_the_query_mask():
    """The decoder's reward / state-change loss adds gradient to the encoder (and the decoder),
    never to the Q-network, is left out of the reported TD loss and skips masked queries."""
    plain, with_dec = tiny(algorithm="context"), tiny(algorithm="context", context_decoder=2.0)
    l0, l1 = (meta_dqn.make_learner(c, 4, (2,)) for c in (plain, with_dec))
    p0, p1 = l0.init(jax.random.key(1)), l1.init(jax.random.key(1))
    assert "dec" in p1 and "dec" not in p0
    assert max_abs_diff({k: p1[k] for k in p0}, p0) == 0.0  # same Q-network and encoder
    support = pointnav_support(10, 7)
    query_tr = random_transitions(jax.random.key(6), 16, obs_dim=2, num_actions=4)
    hp = plain.hparams()
    for mask, encoder_moves in ((jnp.ones(16, bool), True), (jnp.zeros(16, bool), False)):
        g0, m0 = l0.meta_grad(p0, p0, support, (query_tr, mask), hp)
        g1, m1 = l1.meta_grad(p1, p1, support, (query_tr, mask), hp)
        np.testing.assert_array_equal(np.asarray(m0.query_loss), np.asarray(m1.query_loss))
        assert max_abs_diff(g0["net"], g1["net"]) == 0.0
        assert (max_abs_diff(g0["enc"], g1["enc"]) > 1e-6) == encoder_moves
        assert (float(np.abs(flat(g1["dec"])).max()) > 0) == encoder_moves
    with pytest.raises(ValueError, match="^context_decoder must be"):
        tiny(algorithm="context", context_decoder=-1.0)
    # the decoder's width: the Q-network's by default, decoder_hidden when given
    widths = lambda c: sorted({x.shape[-1] for x in jax.tree.leaves(
        meta_dqn.make_learner(c, 4, (2,)).init(jax.random.key(1))["dec"])})
    assert widths(with_dec) == sorted({3, *with_dec.hidden})
    assert widths(tiny(algorithm="context", context_decoder=2.0, decoder_hidden=(7,))) == [3, 7]
    with pytest.raises(ValueError, match="^decoder_hidden must be a list of positive layer widths"):
        tiny(algorithm="context", context_decoder=2.0, decoder_hidden=(0,))


def test_context_refine_is_damped_gauss_newton_on_the_support_and_ignores_padding():
    """Refinement of the encoder's z against the decoder: one step is exactly
    ``z - (JᵀJ + λI)⁻¹ Jᵀr`` on the valid transitions' residuals; with a large damping (small
    steps) it lowers the decoder's support loss; masked (padding) transitions and the support's
    order change nothing; an empty support keeps z = 0; the meta-gradient reaches λ."""
    from metadqn_jax.core.networks import MLP

    tr, mask = pointnav_support(10, 7)
    valid = np.asarray(mask)
    plain = tiny(algorithm="context", context_decoder=1.0)
    l0 = meta_dqn.make_learner(plain, 4, (2,))
    dec = MLP(tuple(plain.hidden) + (3,))

    def residuals(p, z):  # the decoder's (reward, Δobs) errors on the valid transitions, scaled to a mean
        x = jnp.concatenate([tr.obs, jax.nn.one_hot(tr.action, 4), jnp.broadcast_to(z, (10, z.shape[0]))], -1)
        target = jnp.concatenate([tr.reward[:, None], tr.next_obs - tr.obs], -1)
        return ((dec.apply(p["dec"], x) - target)[valid] / np.sqrt(valid.sum())).reshape(-1)

    for steps, damping in ((1, 0.05), (5, 100.0)):
        cfg = tiny(algorithm="context", context_decoder=1.0, context_refine=steps, context_refine_damping=damping)
        l1 = meta_dqn.make_learner(cfg, 4, (2,))
        p1 = l1.init(jax.random.key(1))
        p0 = {k: v for k, v in p1.items() if k != "refine_log_damping"}
        assert max_abs_diff(p0, l0.init(jax.random.key(1))) == 0.0  # refinement adds only its damping
        hp = cfg.hparams()
        z0 = l0.adapt(p0, p0, (tr, mask), hp)["ctx"]
        z1 = l1.adapt(p1, p1, (tr, mask), hp)["ctx"]
        assert float(jnp.abs(z1 - z0).max()) > 1e-5
        if steps == 1:
            r, jac = residuals(p1, z0), jax.jacobian(lambda z: residuals(p1, z))(z0)
            expected = z0 - jnp.linalg.solve(jac.T @ jac + damping * jnp.eye(z0.shape[0]), jac.T @ r)
            np.testing.assert_allclose(np.asarray(z1), np.asarray(expected), rtol=1e-4, atol=1e-6)
        else:
            loss = lambda z: float((residuals(p1, z) ** 2).sum())
            assert loss(z1) < loss(z0) - 0.01  # (an untrained decoder depends on z only weakly)
    # padding: garbage in the masked slots, and a permutation, leave the refined z unchanged
    garbage = jax.tree.map(lambda x: jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, x + 7), tr)
    perm = jnp.array([9, 3, 0, 5, 1, 8, 2, 7, 4, 6])
    for t, m in ((garbage, mask), (jax.tree.map(lambda x: x[perm], tr), mask[perm])):
        np.testing.assert_allclose(np.asarray(l1.adapt(p1, p1, (t, m), hp)["ctx"]), np.asarray(z1), atol=1e-5)
    empty = l1.adapt(p1, p1, (tr, jnp.zeros(10, bool)), hp)["ctx"]
    np.testing.assert_array_equal(np.asarray(empty), 0.0)
    query = (random_transitions(jax.random.key(6), 16, obs_dim=2, num_actions=4), jnp.ones(16, bool))
    grads, _ = l1.meta_grad(p1, p1, (tr, mask), query, hp)
    assert all_finite(grads) and abs(float(grads["refine_log_damping"])) > 0
    with pytest.raises(ValueError, match="^context_refine must be 0 unless context_decoder > 0"):
        tiny(algorithm="context", context_refine=2)
    with pytest.raises(ValueError, match="^context_refine_damping must be"):
        tiny(algorithm="context", context_decoder=1.0, context_refine=2, context_refine_damping=0.0)


def test_family_recommended_meta_settings_fill_only_unset_fields(monkeypatch):
    from metadqn_jax import tasks

    monkeypatch.setattr(tasks.registry, "FAMILIES", dict(tasks.registry.FAMILIES))
    assert set(meta_dqn.FAMILY_RESOLVED) <= set(FAMILY_FIELDS)  # a family may set any non-structural field
    assert set(meta_dqn.FAMILY_RESOLVED) <= meta_dqn.LIBRARY_DEFAULTS.keys()
    c = MetaConfig(family="pointnav-goal")  # 25-step episodes: derived one-meta-step tasks
    assert (c.task_lifetime, c.query_source, c.buffer_size) == (1, "adapted", 100)
    c = MetaConfig(family="cartpole-flipped")  # 500-step episodes: derived whole-episode tasks
    assert (c.task_lifetime, c.query_source, c.buffer_size) == (20, "buffer", 2000)
    # an explicit value wins, even when it equals the library's default
    c = MetaConfig(family="cartpole-flipped", task_lifetime=1, query_source="adapted", buffer_size=100)
    assert (c.task_lifetime, c.query_source, c.buffer_size) == (1, "adapted", 100)
    # a family's recommendation wins over the rule, and the rules after it read it
    tasks.register_family(tasks.TaskFamily("nav-lifetime-test", "PointNav-v0", ranges={"goal_y": (-0.5, 0.5)},
                                           meta_defaults={"task_lifetime": 3, "updates_per_step": 2}))
    c = MetaConfig(family="nav-lifetime-test")
    assert (c.task_lifetime, c.query_source, c.buffer_size, c.updates_per_step, c.tau) == (3, "buffer", 300, 2, 0.99)
    tasks.register_family(tasks.TaskFamily("bad-test", "PointNav-v0", ranges={"goal_y": (-0.5, 0.5)},
                                           meta_defaults={"algorithm": "maml"}))
    with pytest.raises(ValueError, match=r"meta_defaults field 'algorithm' cannot be set by a family"):
        MetaConfig(family="bad-test")
    tasks.register_family(tasks.TaskFamily("bad-value-test", "PointNav-v0", ranges={"goal_y": (-0.5, 0.5)},
                                           meta_defaults={"query_source": "nope"}))
    with pytest.raises(ValueError, match="^query_source must be"):  # checked like a value the user gave
        MetaConfig(family="bad-value-test")


# --------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(algorithm="nope"), r"^algorithm must be"),
        (dict(family="nope"), r"^family: .*nope"),
        (dict(support_size=20), r"^support_size must be <= buffer_size"),
        (dict(inner_steps=-1), r"^inner_steps must be"),
        (dict(num_tasks=0), r"^num_tasks must be"),
        (dict(buffer_size=8, support_size=8), r"^buffer_size must be >= envs_per_task"),
        (dict(inner_lr=-0.1), r"MetaHParams\.inner_lr must be"),
    ],
)
def test_meta_config_errors_name_the_field(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny(**kwargs)


def test_validation_budgets_select_what_the_validator_scores():
    """``ValidationConfig.budgets``: sorted and de-duplicated, negative ones refused; budget 0
    scores the unadapted policy, so a validator on it ignores the support entirely."""
    from metadqn_jax.driver import ValidationConfig, make_validator

    assert ValidationConfig(budgets=[25, 0, 25]).budgets == (0, 25)
    with pytest.raises(ValueError, match=r"^validation.budgets must be a list of env-step counts >= 0"):
        ValidationConfig(budgets=(-1,))
    cfg = tiny(algorithm="context")
    learner = meta_dqn.make_learner(cfg, 4, (2,))
    params, other = learner.init(jax.random.key(0)), learner.init(jax.random.key(1))
    mixed = {**params, "enc": other["enc"]}  # same Q-network, another encoder
    hp, key = cfg.hparams(), jax.random.key(3)
    at0 = jax.jit(make_validator(cfg, ValidationConfig(num_tasks=4, budgets=(0,))))
    assert float(at0(params, params, key, hp)) == float(at0(mixed, params, key, hp))
    full = jax.jit(make_validator(cfg, ValidationConfig(num_tasks=4)))  # at support_size: the encoder matters
    assert float(full(params, params, key, hp)) != float(full(mixed, params, key, hp))


@pytest.mark.parametrize("field,value", [("inner_lr", -0.1), ("meta_lr", 0.0), ("gamma", 1.5), ("epsilon", -0.2), ("tau", 1.0)])
def test_meta_hparams_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"MetaHParams\.{field} must be"):
        TINY.hparams(**{field: value})


def test_algorithm_defaults_never_replace_a_chosen_value():
    from metadqn_jax.compare import config_for

    base = MetaConfig(family="pointnav-goal")
    assert base.meta_lr is None and base.setting("meta_lr") == 1e-3
    ctx = config_for(base, "context")
    assert ctx.setting("meta_lr") == meta_dqn.ALGORITHM_DEFAULTS["context"]["meta_lr"] == ctx.hparams().meta_lr
    assert ctx.setting("random_support") is True and config_for(ctx, "maml").setting("random_support") is False
    assert config_for(base, "cavia").hparams().inner_lr == 1.0 and config_for(base, "maml").hparams().inner_lr == 0.1
    # a chosen value wins, also when it equals another algorithm's default (the library's 0.1 / 1e-3)
    chosen = dataclasses.replace(base, meta_lr=1e-3, inner_lr=0.1, random_support=False)
    assert config_for(chosen, "context").hparams().meta_lr == pytest.approx(1e-3)
    assert config_for(chosen, "context").setting("random_support") is False
    cavia = config_for(chosen, "cavia")
    assert cavia.hparams().inner_lr == pytest.approx(0.1) and cavia.algorithm == "cavia"


def test_defaults_are_plain_data_and_the_meta_step_names_no_algorithm():
    """``metadqn_jax.meta.defaults`` imports no JAX (the CLI builds its help from it); every
    algorithm has a learner factory and a settings entry; the meta-step and acting modules
    decide nothing by algorithm name (the learner's fields and the config decide)."""
    import inspect
    import subprocess
    import sys

    from metadqn_jax.meta import acting, step
    from metadqn_jax.meta.learners import LEARNERS

    code = "import sys, metadqn_jax.meta.defaults; print('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert tuple(LEARNERS) == meta_dqn.ALGORITHMS == tuple(meta_dqn.ALGORITHM_SETTINGS)
    assert set(meta_dqn.ALGORITHM_DEFAULTS) <= set(meta_dqn.ALGORITHMS)
    for module in (step, acting):
        source = inspect.getsource(module)
        assert not [a for a in meta_dqn.ALGORITHMS if f'"{a}"' in source or f"'{a}'" in source], module.__name__
