"""Probe of one learner's unadapted policy during meta-training (BENCHMARKS.md §1, "Updates per
meta-step and the pretrained baseline on CartPole").

Meta-trains ``ALGO`` on ``FAMILY`` for ``STEPS`` meta-steps with several rows of traced
hyper-parameters vmapped into one program (same key for every row), and every ``EVERY``
meta-steps prints, per row: the mean query TD loss of the last 20 meta-steps (``L``), the support
TD loss before > after the inner steps (``S``: did adaptation fit the support?), the meta-gradient
norm before clipping (``g``), the mean max |Q|
on 256 states of each task's replay, the training return, and the greedy return of the
*unadapted* network on 16 test tasks (mean / min over tasks) and its mean on 16 validation
tasks (``V``); at the end, per row, the test mean at the checkpoint with the best validation mean
(the checkpoint validation would keep). ``--drift`` adds, per test task,
the largest |cart position| and |pole angle| before the episode ended (CartPole only: why it ended).
``--weights`` adds, per row, the norm of the first layer's weights on the observation (``Wo``) and
on the context input (``Wc``, CAVIA / context learner only): a context step moves the first
layer by ``Wc @ Δctx`` and the step itself is ``∝ Wcᵀ``, so the inner step's effect grows with
``|Wc|²`` whatever the inner learning rate; and (``|ctx|``) the mean norm of the adapted
context after the inner steps on each task's ``support_size`` most recent transitions (the meta-step's support).
``--sharpness`` adds, per row, ``inner_lr × λ`` where ``λ`` is the largest-magnitude eigenvalue
of the support TD loss's Hessian over what adapts (``Learner.adapt_mask``: the Q-network, its
head with ``adapt=head``, CAVIA's context; gradient-based learners only), at the
unadapted parameters on each task's ``support_size`` most recent transitions (20 steps of power
iteration; mean and max over the tasks). Above 2 an inner SGD step is unstable along that
direction: the loss and the Jacobian that a second-order meta-gradient differentiates through
grow by ``|1 − inner_lr·λ|`` per inner step.

Usage::

    python benchmarks/pretrained_probe.py FAMILY ALGO STEPS EVERY "tau=0.99,0.995;epsilon=0.2,0.2" \\
        [FIELD=VALUE ...] [--seed N] [--drift]

``FIELD=VALUE``: any ``MetaConfig`` field (e.g. ``updates_per_step=8 task_lifetime=200
buffer_size=20000 stagger_tasks=True``). The grid string gives each traced hyper-parameter one
value per row (all lists of the same length). One seed per call (``--seed``, default 0).
"""

from __future__ import annotations

import argparse
import ast
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metadqn_jax.core import replay, rollout
from metadqn_jax.meta import MetaConfig, make_meta_step, meta_train
from metadqn_jax.meta.gradient import apply_mask

NUM_TEST = 16


def parse_fields(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, value = item.split("=", 1)
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("family")
    p.add_argument("algorithm")
    p.add_argument("steps", type=int)
    p.add_argument("every", type=int)
    p.add_argument("grid", help='rows of traced hyper-parameters, e.g. "tau=0.99,0.995;epsilon=0.2,0.2"')
    p.add_argument("fields", nargs="*", help="MetaConfig FIELD=VALUE settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drift", action="store_true", help="print why CartPole test episodes ended")
    p.add_argument("--sharpness", action="store_true", help="print inner_lr x the support loss's top Hessian eigenvalue")
    p.add_argument("--weights", action="store_true", help="print the first layer's weight norms (obs / context rows)")
    args = p.parse_args(argv)
    cfg = MetaConfig(family=args.family, algorithm=args.algorithm, num_meta_steps=args.steps,
                     **parse_fields(args.fields))
    prog = make_meta_step(cfg)
    if args.sharpness and prog.learner.adapt_mask is None:
        p.error(f"--sharpness needs a gradient-based learner; {args.algorithm!r} adapts by inference")
    cols = {}
    for part in args.grid.split(";"):
        name, values = part.split("=")
        cols[name] = [float(x) for x in values.split(",")]
    rows = len(next(iter(cols.values())))
    hp = cfg.hparams()._replace(**{k: jnp.asarray(v, jnp.float32) for k, v in cols.items()})
    hp = jax.tree.map(lambda x: jnp.broadcast_to(x, (rows,)), hp)
    print(cfg, flush=True)
    print("rows", cols, flush=True)
    state = jax.vmap(lambda h: prog.init(jax.random.key(args.seed), h))(hp)
    run = jax.jit(jax.vmap(lambda s, h: meta_train(prog.meta_step, s, h, args.every)), donate_argnums=(0,))
    tasks = jax.tree.map(lambda x: x[:NUM_TEST], cfg.task_family.tasks("test"))
    val_tasks = jax.tree.map(lambda x: x[:NUM_TEST], cfg.task_family.tasks("val"))
    learner, env = prog.learner, prog.env
    horizon = cfg.task_family.episode_length

    @jax.jit
    @jax.vmap
    def evaluate(params, split_tasks):
        t = learner.unadapted(params)
        return rollout.greedy_returns(env, lambda o: jnp.argmax(learner.q_values(t, o), -1), jax.random.key(5),
                                      split_tasks, horizon)

    def on(split_tasks):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (rows,) + x.shape), split_tasks)

    @jax.jit
    @jax.vmap
    def q_scale(params, buffers):
        t = learner.unadapted(params)
        return jnp.abs(learner.q_values(t, buffers.data.obs[:, :256])).max(-1).mean()

    @jax.jit
    @jax.vmap
    def drift(params):  # largest |x| and |theta| of each test task's greedy episode before it ended
        t = learner.unadapted(params)
        carry = rollout.init_carry(env, jax.random.key(9), tasks)

        def step(st, k):
            c, alive, mx, mth = st
            c2, tr = rollout.env_step(env, k, c, jnp.argmax(learner.q_values(t, c.obs), -1), tasks)
            mx = jnp.where(alive, jnp.maximum(mx, jnp.abs(c.obs[:, 0])), mx)
            mth = jnp.where(alive, jnp.maximum(mth, jnp.abs(c.obs[:, 2])), mth)
            return (c2, alive & ~(tr.terminated | tr.truncated), mx, mth), None

        z = jnp.zeros(NUM_TEST)
        (_, _, mx, mth), _ = jax.lax.scan(step, (carry, jnp.ones(NUM_TEST, bool), z, z),
                                          jax.random.split(jax.random.key(3), horizon))
        return mx, mth

    @jax.jit
    @jax.vmap
    def ctx_norm(params, target, buffers, h):  # mean |adapted context| over the tasks
        def one(buf):
            support = replay.recent(buf, cfg.support_size)  # the meta-step's support
            return jnp.linalg.norm(learner.adapt(params, target, support, h)["ctx"])
        return jax.vmap(one)(buffers).mean()

    @jax.jit
    @jax.vmap
    def sharpness(params, target, buffers, h):  # inner_lr * top |eigenvalue| of the support loss's Hessian
        def one(buf, k):
            support = replay.recent(buf, cfg.support_size)
            tp = learner.unadapted(params)
            adapts = learner.adapt_mask(tp)  # the subspace the inner steps move in
            only = lambda v: apply_mask(v, adapts)
            loss = lambda x: learner.td_loss(x, target["net"], support, h)[0]
            hvp = lambda v: only(jax.jvp(jax.grad(loss), (tp,), (only(v),))[1])
            leaves, tree = jax.tree.flatten(tp)
            v = jax.tree.unflatten(tree, [jax.random.normal(kk, x.shape, x.dtype)
                                          for kk, x in zip(jax.random.split(k, len(leaves)), leaves)])

            def power(v, _):
                hv = hvp(v)
                return jax.tree.map(lambda x: x / (optax.tree.norm(hv) + 1e-12), hv), optax.tree.vdot(v, hv)

            v = only(v)
            v = jax.tree.map(lambda x: x / optax.tree.norm(v), v)
            _, lams = jax.lax.scan(power, v, None, length=20)
            return h.inner_lr * jnp.abs(lams[-1])
        out = jax.vmap(one)(buffers, jax.random.split(jax.random.key(13), cfg.num_tasks))
        return out.mean(), out.max()

    test_rows, val_rows = on(tasks), on(val_tasks)  # the tasks, once per row
    t0 = time.time()
    vals, tests = [], []
    for i in range(args.steps // args.every):
        state, m = run(state, hp)
        ret = np.asarray(evaluate(state.params, test_rows))
        val = np.asarray(evaluate(state.params, val_rows)).mean(-1)
        vals.append(val)
        tests.append(ret.mean(-1))
        q = np.asarray(q_scale(state.params, state.buffers))
        loss = np.asarray(m.query_loss[:, -20:].mean(1))
        train = np.asarray(m.train_return[:, -20:].mean(1))
        pre = np.asarray(m.pre_adapt_loss[:, -20:].mean(1))
        post = np.asarray(m.post_adapt_loss[:, -20:].mean(1))
        gnorm = np.asarray(m.grad_norm[:, -20:].mean(1))
        print(f"{(i + 1) * args.every:6d} t {time.time() - t0:4.0f}s | " + " | ".join(
            f"L {loss[r]:6.2f} S {pre[r]:6.2f}>{post[r]:6.2f} g {gnorm[r]:7.1f} Q {q[r]:5.1f} tr {train[r]:5.1f} V {val[r]:5.1f} G {ret[r].mean():5.1f}/{ret[r].min():3.0f}"
            for r in range(rows)), flush=True)
        if args.weights:
            kernel = np.asarray(state.params["net"]["params"]["hidden_0"]["kernel"])  # [rows, in, hidden]
            obs_dim = int(np.prod(prog.obs_shape))
            wo = np.linalg.norm(kernel[:, :obs_dim].reshape(rows, -1), axis=1)
            wc = np.linalg.norm(kernel[:, obs_dim:].reshape(rows, -1), axis=1)
            line = "   |Wo| " + " ".join(f"{x:7.2f}" for x in wo) + "   |Wc| " + " ".join(f"{x:7.2f}" for x in wc)
            if args.algorithm == "cavia":
                c = np.asarray(ctx_norm(state.params, state.target_params, state.buffers, hp))
                line += "   |ctx| " + " ".join(f"{x:7.2f}" for x in c)
            print(line, flush=True)
        if args.sharpness:
            mean, top = (np.asarray(a) for a in sharpness(state.params, state.target_params, state.buffers, hp))
            print("   inner_lr*lambda_max mean/max over tasks " + " | ".join(f"{a:7.3f}/{b:7.3f}" for a, b in zip(mean, top)),
                  flush=True)
        if args.drift:
            mx, mth = (np.asarray(a) for a in drift(state.params))
            print("   max|x| per task", np.round(mx, 1).tolist(), "max|theta|", np.round(mth, 2).tolist(), flush=True)
    vals, tests = np.stack(vals), np.stack(tests)  # [checkpoints, rows]
    best = vals.argmax(0)  # the validation-selected checkpoint of each row (first of ties)
    print("validation-selected (test mean at the checkpoint with the best validation mean): " + " | ".join(
        f"step {(best[r] + 1) * args.every} V {vals[best[r], r]:5.1f} G {tests[best[r], r]:5.1f}" for r in range(rows)),
        flush=True)


if __name__ == "__main__":
    main()
