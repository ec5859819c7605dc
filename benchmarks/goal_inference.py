"""Why pointnav-goal is hard after 25 steps: is it the Q-learning or the goal inference?

    python benchmarks/goal_inference.py

Two measurements, printed as tables (BENCHMARKS.md §1 quotes them):

1. **Precision needed.** The greedy-on-distance oracle policy
   (:func:`metadqn_jax.envs.point_nav_oracle_action`) steered by a goal *estimate* that is
   off by ``δ`` in a random direction: mean episode return on 500 test goals per ``δ``. It
   says how precisely a context must locate the goal to come within 5 % of the oracle.
2. **Q-learning with the goal known.** A user-defined family, ``pointnav-goal-observed``
   (PointNav whose observation is ``(position, goal)``, registered here with
   :func:`metadqn_jax.tasks.register_family`), trained by the ``pretrained`` learner (a
   multi-task DQN, no adaptation) with the same meta-training loop, settings and budget as
   the few-shot benchmark, then its 0-step greedy return on 20 held-out goals × 5 seeds. If it
   matches the oracle, the Q-network and the meta-training loop are not the bottleneck: the
   context learner's gap is all in inferring the goal from the transitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from metadqn_jax import envs, rollout, tasks
from metadqn_jax.compare import compare
from metadqn_jax.evaluate import FewShotConfig
from metadqn_jax.meta_dqn import MetaConfig
from metadqn_jax.train import ValidationConfig


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meta-steps", type=int, default=2000, help="meta-steps of the observed-goal DQN")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    deltas = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3)
    rows = precision_table(deltas, num_goals=20 if args.quick else 500)
    oracle = rows[0][1]
    print("| goal-estimate error δ | oracle-action return | gap to δ = 0 |\n|---|---|---|")
    for d, r in rows:
        print(f"| {d:g} | {r:.2f} | {100 * (oracle - r) / abs(oracle):.1f} % |")

    family = register_observed_family()
    base = MetaConfig(family=family, algorithm="pretrained", num_meta_steps=args.meta_steps, chunk_size=250)
    fs = FewShotConfig(budgets=(0,), num_tasks=20, seeds=5, support_size=base.support_size, finetune=False)
    validation = ValidationConfig(every=500, num_tasks=32)
    if args.quick:
        base = dataclasses.replace(base, num_tasks=4, envs_per_task=2, rollout_steps=10, support_size=20,
                                   buffer_size=20, query_batch=16, hidden=(16, 16), num_meta_steps=20,
                                   chunk_size=10)
        fs = FewShotConfig(budgets=(0,), num_tasks=2, seeds=2, support_size=20, eval_episodes=1, finetune=False)
        validation = ValidationConfig(every=10, num_tasks=2)
    t0 = time.perf_counter()
    cmp = compare(base, ["pretrained"], fs, validation=validation, scratch=False, oracle=False, progress=False,
                  log=lambda s: None)
    r = cmp.results["pretrained"]
    print(f"\n{family}: multi-task DQN ({base.num_meta_steps} meta-steps, train "
          f"{cmp.train_wall_s['pretrained']:.0f}s): greedy return {r.mean[0]:.2f} ± {r.ci95[0]:.2f} "
          f"({fs.num_tasks} goals x {fs.seeds} seeds; total {time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
