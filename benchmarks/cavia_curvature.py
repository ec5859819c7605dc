"""Why second-order CAVIA's meta-gradient explodes on cartpole-flipped (BENCHMARKS.md §1, "CAVIA
on cartpole-flipped: why it diverged").

Meta-trains second-order CAVIA with SGD context steps (the paper's) for ``STEPS`` meta-steps at
``INNER_LR`` (one seed, the family's other defaults), printing the meta-gradient norm of the last
meta-steps every 15, then, at the final state, on each task's most recent ``support_size``
transitions:

* per task: the second-order and first-order meta-gradient norms, the support loss before > after
  the inner steps and the query loss (largest second-order norm first);
* on the worst task: ``|φ|`` and ``|dφ_k/dθ|`` (the Jacobian a second-order meta-gradient
  differentiates through) after ``k = 0 … inner_steps`` inner steps, with the support losses;
* the support loss's gradient and Hessian eigenvalues in ``φ`` at ``φ = 0``: an SGD step is
  unstable along an eigen-direction where ``inner_lr × λ > 2`` (it grows by ``|1 − inner_lr·λ|``).

``--time`` instead times 5 meta-steps (compiled, the second call) with SGD context steps and
with damped Gauss-Newton ones (``cavia_damping`` 1.0), side by side in one process.

Usage::

    python benchmarks/cavia_curvature.py STEPS INNER_LR      # e.g. 15 0.01, then 135 0.01
    python benchmarks/cavia_curvature.py 5 0.01 --time
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metadqn_jax.core import replay
from metadqn_jax.core.optim import inner_optimizer
from metadqn_jax.meta import MetaConfig, make_meta_step, meta_train
from metadqn_jax.meta import gradient as meta_gradient
from metadqn_jax.meta.learners.cavia import context_mask


def setup(inner_lr: float, **fields):
    """Second-order CAVIA on cartpole-flipped with ``fields``: (config, program, hparams, state)."""
    cfg = MetaConfig(family="cartpole-flipped", algorithm="cavia", cavia_first_order=False, **fields)
    prog = make_meta_step(cfg)
    hp = cfg.hparams()._replace(inner_lr=jnp.float32(inner_lr))
    return cfg, prog, hp, prog.init(jax.random.key(0), hp)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("steps", type=int, help="meta-steps (a multiple of 15)")
    p.add_argument("inner_lr", type=float)
    p.add_argument("--time", action="store_true", help="time STEPS meta-steps with SGD and Gauss-Newton context steps")
    args = p.parse_args(argv)
    if args.time:
        for damping in (0.0, 1.0):
            _, prog, hp, state = setup(args.inner_lr, cavia_damping=damping)
            run = jax.jit(lambda s, prog=prog, hp=hp: meta_train(prog.meta_step, s, hp, args.steps))
            state = jax.block_until_ready(run(state))[0]  # compile and warm up
            t0 = time.perf_counter()
            jax.block_until_ready(run(state))
            print(f"cavia_damping {damping}: {args.steps} meta-steps {time.perf_counter() - t0:.2f}s", flush=True)
        return
    cfg, prog, hp, state = setup(args.inner_lr, num_meta_steps=args.steps)
    run = jax.jit(lambda s: meta_train(prog.meta_step, s, hp, 15))
    t0 = time.time()
    for i in range(args.steps // 15):
        state, m = run(state)
        print(f"meta-step {(i + 1) * 15} ({time.time() - t0:.0f}s): meta-gradient norm of the last 5 "
              f"{[round(float(x), 1) for x in np.asarray(m.grad_norm)[-5:]]}", flush=True)

    learner, T = prog.learner, cfg.num_tasks
    fo = make_meta_step(dataclasses.replace(cfg, cavia_first_order=True)).learner
    support = jax.vmap(replay.recent, in_axes=(0, None))(state.buffers, cfg.support_size)
    query_tr = jax.vmap(replay.sample, in_axes=(0, 0, None))(state.buffers, jax.random.split(jax.random.key(1), T),
                                                             cfg.query_batch)
    queries = (query_tr, jnp.ones(query_tr.reward.shape, bool))

    @jax.jit
    def per_task(params, target):
        def one(s, q):
            g2, m2 = learner.meta_grad(params, target, s, q, hp)
            g1, _ = fo.meta_grad(params, target, s, q, hp)
            return optax.tree.norm(g2), optax.tree.norm(g1), m2.pre_adapt_loss, m2.post_adapt_loss, m2.query_loss
        return jax.vmap(one)(support, queries)

    so, fo_n, pre, post, ql = (np.asarray(a) for a in per_task(state.params, state.target_params))
    order = np.argsort(-so)
    print("per task: second-order / first-order meta-gradient norm, support loss before > after, query loss")
    for i in order[:8]:
        print(f"  task {i:2d} SO {so[i]:10.1f} FO {fo_n[i]:6.2f} S {pre[i]:.4f}>{post[i]:.4f} Lq {ql[i]:.3f}")
    print(f"median over {T} tasks: SO {np.median(so):.2f}, FO {np.median(fo_n):.2f}")

    w = int(order[0])
    s_w = jax.tree.map(lambda x: x[w], support)
    target_net = state.target_params["net"]
    loss_fn = lambda tp, b: learner.td_loss(tp, target_net, b, hp)

    def ctx_after(net, k):
        tp = learner.unadapted({"net": net})
        adapted, losses = meta_gradient.adapt(tp, loss_fn, s_w, inner_opt=inner_optimizer("sgd", hp.inner_lr),
                                              num_steps=k, mask=context_mask(tp))
        return adapted["ctx"], losses

    print(f"task {w}: the context and its Jacobian in the network after k inner steps")
    for k in range(cfg.inner_steps + 1):
        c, losses = ctx_after(state.params["net"], k)
        jac = jax.jacrev(lambda n, k=k: ctx_after(n, k)[0])(state.params["net"])
        print(f"  k={k} |ctx| {float(jnp.linalg.norm(c)):.4f} |dctx/dnet| {float(optax.tree.norm(jac)):.2f} "
              f"support losses {[round(float(x), 4) for x in np.asarray(losses)]}")
    loss_c = lambda c: loss_fn({"net": state.params["net"], "ctx": c}, s_w)[0]
    c0 = jnp.zeros(cfg.context_dim)
    eig = np.linalg.eigvalsh(np.asarray(jax.hessian(loss_c)(c0)))
    print("  dL/dctx at 0", [round(float(x), 3) for x in np.asarray(jax.grad(loss_c)(c0))])
    print("  Hessian eigenvalues in ctx", [round(float(x), 3) for x in eig],
          f"-> inner_lr x largest = {args.inner_lr * np.abs(eig).max():.2f}")


if __name__ == "__main__":
    main()
