"""Evaluating an initialisation on held-out tasks with the protocol of :mod:`metadqn_jax.fewshot`:
the runs (tasks × adaptation seeds, one vmapped program; a seed axis of meta-training seeds on
top), the return during the very first episode, and the guard choice made on validation tasks.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import envs
from metadqn_jax.core.compile import jit
from metadqn_jax.core import replay, rollout
from metadqn_jax.core.types import example_transition
from metadqn_jax.core.validate import in_range
from metadqn_jax.fewshot.config import FewShotConfig, explore_mode, first_episode_explore
from metadqn_jax.fewshot.protocol import explore_step, make_few_shot
from metadqn_jax.fewshot.results import FewShotResult, by_task, summarize
from metadqn_jax.meta import Learner, MetaConfig, MetaHParams, make_learner, online_no_data_stats
from metadqn_jax.tasks import TaskFamily

__all__ = ["few_shot_tasks", "evaluate_few_shot", "first_episode_curve", "GuardChoice", "choose_guard"]


def few_shot_tasks(family: TaskFamily, fs: FewShotConfig, key: jax.Array):
    """The evaluation runs: ``fs.num_tasks`` distinct tasks of ``fs.split``, each repeated
    ``fs.seeds`` times, and one key per run. Returns ``(task_params [R], keys [R])``."""
    n = min(fs.num_tasks, family.num_tasks(fs.split))
    pool = family.tasks(fs.split)
    task_params = jax.tree.map(lambda x: jnp.repeat(x[:n], fs.seeds, axis=0), pool)
    keys = jax.random.split(key, n * fs.seeds)
    return task_params, keys


def evaluate_few_shot(
    meta_cfg: MetaConfig,
    meta_params,
    meta_target,
    fs: FewShotConfig,
    key: jax.Array,
    hp: MetaHParams | None = None,
    learner: Learner | None = None,
    *,
    meta_seeds: int | None = None,
    meta_learned: bool | None = None,
) -> FewShotResult:
    """Few-shot returns of one initialisation on held-out tasks (see the module docstring).

    ``meta_seeds=N``: ``meta_params`` / ``meta_target`` carry a leading axis of ``N`` meta-training
    seeds (:func:`metadqn_jax.driver.train_meta` with a batch of keys); every seed adapts on the
    same tasks with the same keys, in one vmapped program, and the result's returns are
    ``[N, task, adapt_seed, budget]``. ``meta_learned``: as in :func:`make_few_shot` (``False``
    for a fresh init).
    """
    hp = meta_cfg.hparams() if hp is None else hp
    run, _ = make_few_shot(meta_cfg, fs, learner, meta_learned=meta_learned)
    task_params, keys = few_shot_tasks(meta_cfg.task_family, fs, key)
    if meta_seeds is None:
        returns = jit(run)(meta_params, meta_target, task_params, keys, hp)
        return summarize(fs.budgets, by_task(returns, fs.seeds), axes="tsb")
    returns = jit(jax.vmap(run, in_axes=(0, 0, None, None, None)))(meta_params, meta_target, task_params, keys, hp)
    returns = np.asarray(returns)
    return summarize(fs.budgets, returns.reshape(returns.shape[0], -1, fs.seeds, returns.shape[-1]), axes="mtsb")


def first_episode_curve(
    meta_cfg: MetaConfig,
    meta_params,
    fs: FewShotConfig,
    key: jax.Array,
    *,
    epsilon: float = 0.0,
    explore: str | None = None,
    meta_target=None,
    hp: MetaHParams | None = None,
    learner: Learner | None = None,
    meta_seeds: int | None = None,
) -> FewShotResult:
    """The zero-shot setting: the return *during the very first episode* on a held-out task.

    Each of the ``fs.num_tasks × fs.seeds`` runs starts one environment from reset with no
    data and acts ε-greedily (``epsilon``, default greedy) for one episode on what
    ``explore`` names (:func:`explore_mode`; default ``None``: :func:`first_episode_explore`,
    i.e. infer the task while acting whenever the algorithm can). ``meta_target`` (default:
    ``meta_params``) and ``hp`` (default: the config's) are what ``"adapted"`` passes to
    ``learner.adapt``. Returns the cumulative return after ``t = 1 … episode_length`` steps as
    a :class:`FewShotResult` whose ``budgets`` are those step counts (rewards after the first
    ``done`` are not counted). ``meta_seeds=N``: the parameters carry a leading seed axis (as in
    :func:`evaluate_few_shot`).
    """
    in_range("epsilon", epsilon, 0.0, 1.0)
    family = meta_cfg.task_family
    env, base_params = family.env()
    obs_shape = envs.obs_shape(env, base_params)
    learner = learner or make_learner(meta_cfg, envs.num_actions(env, base_params), obs_shape)
    mode = explore_mode(meta_cfg, learner, first_episode_explore(meta_cfg) if explore is None else explore)
    meta_target = meta_params if meta_target is None else meta_target
    hp = meta_cfg.hparams() if hp is None else hp
    steps = family.episode_length

    def one_run(meta_params, meta_target, task, key):
        env_params = rollout.broadcast_params(task, 1)
        k_reset, k_roll = jax.random.split(key)
        carry = rollout.init_carry(env, k_reset, env_params)
        stats = online_no_data_stats(learner, meta_params, obs_shape, (1,)) if mode == "online" else None
        # the episode's transitions are kept only where the acting reads them ("adapted")
        buf = replay.init(example_transition(obs_shape), steps) if mode == "adapted" else None

        def step(c, k):
            carry, stats, buf, alive = c
            (carry, stats), tr = explore_step(env, learner, mode, meta_params, meta_target, hp, (carry, stats), buf,
                                               steps, k, env_params, epsilon)
            reward = jnp.where(alive, tr.reward[0], 0.0)
            alive = alive & ~(tr.terminated[0] | tr.truncated[0])
            return (carry, stats, None if buf is None else replay.add(buf, tr), alive), reward

        _, rewards = jax.lax.scan(step, (carry, stats, buf, jnp.ones((), bool)), jax.random.split(k_roll, steps))
        return jnp.cumsum(rewards)

    task_params, keys = few_shot_tasks(family, fs, key)
    runs = jax.vmap(one_run, in_axes=(None, None, 0, 0))
    budgets = tuple(range(1, steps + 1))
    if meta_seeds is None:
        curves = jit(runs)(meta_params, meta_target, task_params, keys)
        return summarize(budgets, by_task(curves, fs.seeds), axes="tsb")
    curves = np.asarray(jit(jax.vmap(runs, in_axes=(0, 0, None, None)))(meta_params, meta_target, task_params, keys))
    return summarize(budgets, curves.reshape(curves.shape[0], -1, fs.seeds, steps), axes="mtsb")


class GuardChoice(NamedTuple):
    """:func:`choose_guard`'s decision for one init, and the validation returns behind it."""

    guard: bool  # guard the one-shot adaptation (FewShotConfig.guard_adaptation)
    unadapted: float  # mean greedy return of the unadapted parameters on the validation tasks
    adapted: float  # ... after the adaptation rule on support_size transitions (no fine-tuning)
    num_tasks: int  # validation tasks behind the two means (one run each, every meta-seed)

    def to_dict(self) -> dict:
        return {"guard": bool(self.guard), "val_unadapted": round(self.unadapted, 4),
                "val_adapted": round(self.adapted, 4), "val_tasks": self.num_tasks}


def choose_guard(
    meta_cfg: MetaConfig,
    meta_params,
    meta_target,
    fs: FewShotConfig,
    key: jax.Array,
    *,
    num_tasks: int = 32,
    hp: MetaHParams | None = None,
    learner: Learner | None = None,
    meta_seeds: int | None = None,
) -> GuardChoice:
    """Whether to guard an init's one-shot adaptation (module docstring, step 5), decided on
    *validation* tasks: ``num_tasks`` tasks of the ``"val"`` split, one run each, greedy return
    (``fs.eval_episodes`` episodes) of the unadapted parameters and of the adapted ones after
    ``fs.support_size`` transitions collected as the protocol collects them (no fine-tuning).
    Guarded unless adapting raised the mean (over tasks, and over meta-seeds with
    ``meta_seeds=N``: one decision per init). For inits whose adaptation nothing meta-learned:
    where adapting helps, the guard would hide that gain below the support size and until a
    contest is won; where it hurts, the guard keeps the good unadapted policy (measured cases:
    ``docs/design.md``, "Evaluation, statistics and DQN").
    The test tasks play no part."""
    n = min(num_tasks, meta_cfg.task_family.num_tasks("val"))
    vfs = dataclasses.replace(fs, budgets=(0, fs.support_size), num_tasks=n, seeds=1, split="val", finetune=False,
                              guard_adaptation=False)
    res = evaluate_few_shot(meta_cfg, meta_params, meta_target, vfs, key, hp, learner, meta_seeds=meta_seeds,
                            meta_learned=False)
    unadapted, adapted = (float(x) for x in res.mean)
    return GuardChoice(not adapted > unadapted, unadapted, adapted, n)
