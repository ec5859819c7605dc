"""Probe of one learner's unadapted policy during meta-training (BENCHMARKS.md §1, "Updates per
meta-step and the pretrained baseline on CartPole").

Meta-trains ``ALGO`` on ``FAMILY`` for ``STEPS`` meta-steps with several rows of traced
hyper-parameters vmapped into one program (same key for every row), and every ``EVERY``
meta-steps prints, per row: the mean query TD loss of the last 20 meta-steps, the mean max |Q|
on 256 states of each task's replay, the training return, and the greedy return of the
*unadapted* network on 16 test tasks (mean / min over tasks) and its mean on 16 validation
tasks (``V``); at the end, per row, the test mean at the checkpoint with the best validation mean
(the checkpoint validation would keep). ``--drift`` adds, per test task,
the largest |cart position| and |pole angle| before the episode ended (CartPole only: why it ended).

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

from metadqn_jax.core import rollout
from metadqn_jax.meta import MetaConfig, make_meta_step, meta_train

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
    args = p.parse_args(argv)
    cfg = MetaConfig(family=args.family, algorithm=args.algorithm, num_meta_steps=args.steps,
                     **parse_fields(args.fields))
    prog = make_meta_step(cfg)
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
        print(f"{(i + 1) * args.every:6d} t {time.time() - t0:4.0f}s | " + " | ".join(
            f"L {loss[r]:6.2f} Q {q[r]:5.1f} tr {train[r]:5.1f} V {val[r]:5.1f} G {ret[r].mean():5.1f}/{ret[r].min():3.0f}"
            for r in range(rows)), flush=True)
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
