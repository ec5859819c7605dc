"""Why pointnav-goal is hard after 25 steps: is it the Q-learning or the goal inference?

    python benchmarks/goal_inference.py

Three measurements, printed as tables (BENCHMARKS.md §1 quotes them):

1. **Precision needed.** The greedy-on-distance oracle policy
   (:func:`metadqn_jax.envs.pointnav.point_nav_oracle_action`) steered by a goal *estimate* that is
   off by ``δ`` in a random direction: mean episode return on 500 test goals per ``δ``. It
   says how precisely a context must locate the goal to come within 5 % of the oracle.
2. **Q-learning with the goal known.** A user-defined family, ``pointnav-goal-observed``
   (PointNav whose observation is ``(position, goal)``, registered here with
   :func:`metadqn_jax.tasks.register_family`), trained by the ``pretrained`` learner (a
   multi-task DQN, no adaptation) with the same meta-training loop, settings and budget as
   the few-shot benchmark, then its 0-step greedy return on 20 held-out goals × 5 seeds. If it
   matches the oracle, the Q-network and the meta-training loop are not the bottleneck: the
   context learner's gap is all in inferring the goal from the transitions.
3. **Encoder precision, supervised.** The context learner's set encoder
   (:class:`metadqn_jax.meta.learners.context.ContextEncoder`) plus a linear read-out trained by plain
   regression on the *true goal* from 25 uniformly random transitions on training goals
   (Adam 3e-3, 128 goals per step), then its RMSE on 1,000 test goals: a bound on what the
   same encoder learns from the much weaker TD signal, to compare with the precision of 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from gymnax.environments import spaces

from metadqn_jax import envs, tasks
from metadqn_jax.core import rollout
from metadqn_jax.compare import compare
from metadqn_jax.fewshot import FewShotConfig
from metadqn_jax.meta import ContextEncoder, MetaConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from few_shot import quick_settings, validation_config  # noqa: E402  (the sibling benchmark)


class PointNavGoalObserved(envs.PointNav):
    """PointNav whose observation is ``(position, goal)`` ``[4]``: the task is not hidden."""

    def step_env(self, key, state, action, params):
        _, state, reward, terminated, info = super().step_env(key, state, action, params)
        return self.get_obs(state, params), state, reward, terminated, info

    def reset_env(self, key, params):
        _, state = super().reset_env(key, params)
        return self.get_obs(state, params), state

    def get_obs(self, state, params=None, key=None):
        goal = jnp.stack([params.goal_x, params.goal_y]).astype(jnp.float32)
        return jnp.concatenate([state.pos, goal])

    def observation_space(self, params):
        return spaces.Box(-params.bound, params.bound, (4,), jnp.float32)


def register_observed_family() -> str:
    if "PointNavGoalObserved-v0" not in envs.available_envs():
        envs.register_env("PointNavGoalObserved-v0", PointNavGoalObserved)
    name = "pointnav-goal-observed"
    if name not in tasks.list_families():
        goal = tasks.get_family("pointnav-goal")
        tasks.register_family(dataclasses.replace(goal, name=name, env_id="PointNavGoalObserved-v0",
                                                  description="pointnav-goal with the goal in the observation"))
    return name


def precision_table(deltas, num_goals: int = 500) -> list[tuple[float, float]]:
    """``[(δ, mean return)]`` of the oracle-action policy steered by a goal estimate off by ``δ``."""
    env, _ = envs.make_env("PointNav-v0")
    family = tasks.get_family("pointnav-goal")
    goals = family.sample(jax.random.key(0), num_goals, "test")
    max_steps = family.episode_length

    def episode(task, key, delta):
        angle = jax.random.uniform(key, (), minval=0.0, maxval=2 * jnp.pi)
        estimate = task.replace(goal_x=task.goal_x + delta * jnp.cos(angle),
                                goal_y=task.goal_y + delta * jnp.sin(angle))
        act = lambda obs: jax.vmap(envs.point_nav_oracle_action, in_axes=(0, None))(obs, estimate)
        return rollout.greedy_returns(env, act, key, rollout.broadcast_params(task, 1), max_steps).mean()

    run = jax.jit(jax.vmap(episode, in_axes=(0, 0, None)))
    keys = jax.random.split(jax.random.key(1), num_goals)
    return [(float(d), float(run(goals, keys, jnp.float32(d)).mean())) for d in deltas]


def encoder_rmse(hidden, post, context_dim, steps: int, num_transitions: int = 25, batch: int = 128) -> float:
    """RMSE of the goal regressed (supervised) by ``ContextEncoder(hidden, context_dim, post)`` + a
    linear layer from ``num_transitions`` random-action transitions, after ``steps`` Adam steps."""
    env, _ = envs.make_env("PointNav-v0")
    family = tasks.get_family("pointnav-goal")
    n = num_transitions

    def walk(key, split):
        k_task, k_reset, k_roll = jax.random.split(key, 3)
        task = jax.tree.map(lambda x: x[0], family.sample(k_task, 1, split))
        params = rollout.broadcast_params(task, 1)
        policy = lambda k, obs: jax.random.randint(k, obs.shape[:-1], 0, 4)
        _, tr = rollout.rollout(env, policy, rollout.init_carry(env, k_reset, params), k_roll, params, n)
        return jax.tree.map(lambda x: x[:, 0], tr), jnp.stack([task.goal_x, task.goal_y])

    enc, head = ContextEncoder(tuple(hidden), context_dim, 4, tuple(post)), nn.Dense(2)
    tr0, _ = walk(jax.random.key(0), "train")
    params = {"enc": enc.init(jax.random.key(1), tr0, jnp.ones(n, bool)),
              "head": head.init(jax.random.key(2), jnp.zeros(context_dim))}
    opt = optax.adam(3e-3)

    def loss(p, tr, goal):
        z = jax.vmap(lambda t: enc.apply(p["enc"], t, jnp.ones(n, bool)))(tr)
        return ((head.apply(p["head"], z) - goal) ** 2).sum(-1).mean()

    def step(carry, key):
        p, st = carry
        tr, goal = jax.vmap(walk, in_axes=(0, None))(jax.random.split(key, batch), "train")
        updates, st = opt.update(jax.grad(loss)(p, tr, goal), st, p)
        return (optax.apply_updates(p, updates), st), None

    train = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), jax.random.split(jax.random.key(3), steps))[0][0])
    params = train(params)
    tr, goal = jax.vmap(walk, in_axes=(0, None))(jax.random.split(jax.random.key(4), 1000), "test")
    return float(jnp.sqrt(loss(params, tr, goal)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meta-steps", type=int, default=2000, help="meta-steps of the observed-goal DQN")
    p.add_argument("--out", metavar="FILE.json", help="also write the three tables' figures as JSON")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    out: dict = {"command": " ".join(["python", *sys.argv]), "meta_steps": args.meta_steps, "quick": args.quick}
    deltas = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3)
    rows = precision_table(deltas, num_goals=20 if args.quick else 500)
    oracle = rows[0][1]
    print("| goal-estimate error δ | oracle-action return | gap to δ = 0 |\n|---|---|---|")
    for d, r in rows:
        print(f"| {d:g} | {r:.2f} | {100 * (oracle - r) / abs(oracle):.1f} % |")
    out["precision"] = [{"delta": d, "return": r} for d, r in rows]

    family = register_observed_family()
    base = MetaConfig(family=family, algorithm="pretrained", num_meta_steps=args.meta_steps, chunk_size=250)
    fs = FewShotConfig(budgets=(0,), num_tasks=20, seeds=5, support_size=base.support_size, finetune=False)
    validation = validation_config("")
    if args.quick:
        base, fs, validation = quick_settings(base, inner_steps=None)
        fs = dataclasses.replace(fs, budgets=(0,), finetune=False)
    t0 = time.perf_counter()
    cmp = compare(base, ["pretrained"], fs, validation=validation, scratch=False, oracle=False, progress=False,
                  log=lambda s: None)
    r = cmp.results["pretrained"]
    print(f"\n{family}: multi-task DQN ({base.num_meta_steps} meta-steps, train "
          f"{cmp.train_wall_s['pretrained']:.0f}s): greedy return {r.mean[0]:.2f} ± {r.ci95[0]:.2f} "
          f"({fs.num_tasks} goals x {fs.seeds} seeds; total {time.perf_counter() - t0:.0f}s)")
    out["observed_goal_dqn"] = {"family": family, "train_s": cmp.train_wall_s["pretrained"], "mean": float(r.mean[0]),
                                "ci95": float(r.ci95[0]), "tasks": fs.num_tasks, "seeds": fs.seeds}

    steps = 20 if args.quick else 3000
    print(f"\n| encoder (supervised on the true goal, 25 random transitions, {steps} steps) | test RMSE |\n|---|---|")
    for name, hidden, post, dim in [("mean of φ (64)→8 (the default)", (64,), (), 8),
                                    ("mean of φ (128,128)→8", (128, 128), (), 8),
                                    ("DeepSets φ (128,128), ρ (64)→8", (128, 128), (64,), 8),
                                    ("DeepSets φ (128,128), ρ (64)→16", (128, 128), (64,), 16)]:
        if args.quick and (hidden, post) != ((64,), ()):
            continue  # the smoke test compiles one encoder
        rmse = encoder_rmse(hidden, post, dim, steps)
        out.setdefault("encoder_rmse", []).append({"encoder": name, "steps": steps, "rmse": rmse})
        print(f"| {name} | {rmse:.3f} |", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
