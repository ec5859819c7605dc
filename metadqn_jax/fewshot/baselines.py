"""The baselines every comparison reports beside the meta-learned inits: ``scratch`` (a fresh
initialisation with the pretrained learner's network and adaptation rule) and the per-task
``oracle`` (a DQN trained from scratch on each held-out task for a long budget)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import dqn, envs
from metadqn_jax.dqn import DQNConfig
from metadqn_jax.fewshot.evaluate import few_shot_tasks
from metadqn_jax.fewshot.config import FewShotConfig
from metadqn_jax.fewshot.results import FewShotResult, by_task, summarize
from metadqn_jax.meta import MetaConfig, make_learner
from metadqn_jax.tasks import TaskFamily

__all__ = ["scratch_params", "oracle_returns", "default_oracle_config"]


def scratch_params(meta_cfg: MetaConfig, key: jax.Array):
    """A fresh initialisation for the ``scratch`` baseline (its own target = itself): the
    network and adaptation rule of the ``pretrained`` learner of ``meta_cfg``, untrained; a batch
    of keys ``[N]`` gives ``N`` initialisations (a leading seed axis)."""
    family = meta_cfg.task_family
    env, base_params = family.env()
    learner = make_learner(meta_cfg.rebuilt(algorithm="pretrained"),
                           envs.num_actions(env, base_params), envs.obs_shape(env, base_params))
    params = learner.init(key) if jnp.ndim(key) == 0 else jax.vmap(learner.init)(key)
    return learner, params


def oracle_returns(
    family: TaskFamily, fs: FewShotConfig, key: jax.Array, dqn_cfg: DQNConfig | None = None
) -> FewShotResult:
    """The oracle: a DQN trained from scratch on each held-out task for a long budget.

    Returns the final greedy evaluation of each (task, seed) run (not the best of the periodic
    ones, which would pick the luckiest evaluation), reported at every budget (a horizontal
    reference line). One run per task and seed up to ``oracle_seeds`` (``fs.oracle_seeds``:
    the intervals resample tasks, and on CartPole each run is a 100k-step DQN); tasks × seeds
    are one vmapped program.
    """
    dqn_cfg = dqn_cfg or default_oracle_config(family)
    env, base = family.env()
    train = dqn.make_train(dqn_cfg, base)
    hp = dqn_cfg.hparams(gamma=family.gamma)
    fs = dataclasses.replace(fs, seeds=min(fs.seeds, fs.oracle_seeds))
    task_params, keys = few_shot_tasks(family, fs, key)
    _, metrics = jax.jit(jax.vmap(train, in_axes=(0, None, 0)))(keys, hp, task_params)
    final = np.asarray(metrics.eval_return)[:, -1]  # the trained DQN's last evaluation, not the best one
    return summarize(fs.budgets, by_task(np.repeat(final[:, None], len(fs.budgets), axis=1), fs.seeds), axes="tsb")


def default_oracle_config(family: TaskFamily) -> DQNConfig:
    """A single-task DQN long enough to converge on one task of the family."""
    if family.env_id.startswith("PointNav"):
        return DQNConfig(env_id=family.env_id, num_envs=4, total_steps=20_000, buffer_size=20_000,
                         batch_size=64, learning_starts=500, eval_every=2_000, eval_episodes=4,
                         eps_decay_steps=10_000.0, updates_per_iteration=1, solve_threshold=0.0)
    return DQNConfig(env_id=family.env_id, eval_episodes=4)
