"""Side-by-side few-shot comparison: meta-learned inits vs. pretrained, scratch and oracle.

Shared by ``metadqn train`` and ``benchmarks/few_shot.py``: every initialisation is trained
with the *same* environment-step budget (``num_meta_steps × num_tasks × envs_per_task ×
rollout_steps``), then adapted on the same held-out test tasks with the same keys and the same
protocol (:mod:`metadqn_jax.fewshot`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax

from metadqn_jax.core.validate import positive_int
from metadqn_jax.fewshot import (
    FewShotConfig,
    FewShotResult,
    evaluate_few_shot,
    oracle_returns,
    scratch_params,
)
from metadqn_jax.meta import MetaConfig
from metadqn_jax.driver import TrainResult, ValidationConfig, train_meta


def config_for(base: MetaConfig, algorithm: str) -> MetaConfig:
    """``base`` re-targeted to ``algorithm``. Fields ``base`` leaves ``None`` take that
    algorithm's defaults (:data:`metadqn_jax.meta.defaults.ALGORITHM_DEFAULTS`, resolved by
    :meth:`MetaConfig.setting`); a value the user chose (e.g. ``--meta-lr``) always wins."""
    return dataclasses.replace(base, algorithm=algorithm)


class Comparison(NamedTuple):
    """What :func:`compare` returns."""

    results: dict[str, FewShotResult]  # init name -> few-shot returns
    train_wall_s: dict[str, float]  # init name -> meta-training wall time (incl. compile)
    trained: dict[str, TrainResult]  # algorithm -> training result
    configs: dict[str, MetaConfig]  # algorithm -> the config it was trained with


def compare(
    base: MetaConfig,
    algorithms: Sequence[str],
    fs: FewShotConfig,
    *,
    seed: int = 0,
    validation: ValidationConfig | None = None,
    scratch: bool = True,
    oracle: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    train: Callable[[MetaConfig, jax.Array], TrainResult] | None = None,
    meta_seeds: int = 1,
) -> Comparison:
    """Meta-trains each algorithm (``"pretrained"`` is one of them), then evaluates every
    init — plus ``scratch`` and the ``oracle`` — on the same held-out tasks and keys.

    Args:
      base: the configuration every algorithm starts from (:func:`config_for`).
      algorithms: algorithm names, trained in this order.
      fs: the few-shot protocol.
      seed: ``key(seed)`` splits into the training, evaluation, scratch and oracle keys (every
        algorithm is trained from the same key and evaluated with the same key).
      validation: validation / early stopping during meta-training (default
        :class:`~metadqn_jax.driver.ValidationConfig`); the evaluated parameters are the best
        validated ones (``early_stop.best_params``).
      scratch: also evaluate a fresh initialisation (``"scratch"``).
      oracle: also train a DQN per held-out task (``"oracle"``, :func:`~metadqn_jax.fewshot.oracle_returns`).
      progress: show meta-training progress bars.
      log: receives one line per evaluated init.
      train: ``train(cfg, key) -> TrainResult`` replaces the default ``train_meta(cfg, key, ...)``
        (the CLI uses it for checkpoints, logging and resume).
      meta_seeds: meta-training seeds per algorithm, trained as one vmapped program
        (:func:`~metadqn_jax.driver.train_meta` with a batch of keys): seed ``i`` trains from the
        key a ``seed + i`` comparison would use, so seed 0 is the one-seed comparison. Every seed
        is evaluated on the same tasks and keys; the results' returns carry the seed axis
        (``[meta_seed, task, adapt_seed, budget]``), and ``scratch`` gets one fresh init per
        seed. The oracle (no meta-training) has a single seed.

    Returns:
      A :class:`Comparison`.
    """
    positive_int("meta_seeds", meta_seeds)
    key = jax.random.key(seed)
    k_train, k_eval, k_scratch, k_oracle = jax.random.split(key, 4)
    batched = None if meta_seeds == 1 else meta_seeds
    if batched:  # seed i: the training and scratch keys of a comparison with seed + i
        per_seed = [jax.random.split(jax.random.key(seed + i), 4) for i in range(meta_seeds)]
        k_train = jax.numpy.stack([k[0] for k in per_seed])
        k_scratch = jax.numpy.stack([k[2] for k in per_seed])
    results: dict[str, FewShotResult] = {}
    wall: dict[str, float] = {}
    trained: dict[str, TrainResult] = {}
    configs: dict[str, MetaConfig] = {}
    for algo in algorithms:
        cfg = config_for(base, algo)
        configs[algo] = cfg
        t = time.perf_counter()
        if train is None:
            res = train_meta(cfg, k_train, validation=validation, progress=progress)
        else:
            res = train(cfg, k_train)
        wall[algo] = time.perf_counter() - t
        trained[algo] = res
        t = time.perf_counter()
        results[algo] = evaluate_few_shot(cfg, res.early_stop.best_params, res.early_stop.best_target, fs, k_eval,
                                          meta_seeds=batched)
        log(f"{algo}: trained {wall[algo]:.0f}s, evaluated {time.perf_counter() - t:.0f}s; "
            f"return at {fs.budgets}: {[round(float(x), 2) for x in results[algo].mean]}")
    if scratch:
        cfg = dataclasses.replace(base, algorithm="maml")
        learner, params = scratch_params(cfg, k_scratch)
        results["scratch"] = evaluate_few_shot(cfg, params, params, fs, k_eval, learner=learner, meta_seeds=batched,
                                               meta_learned=False)
        wall["scratch"] = 0.0
        log(f"scratch: return at {fs.budgets}: {[round(float(x), 2) for x in results['scratch'].mean]}")
    if oracle:
        t = time.perf_counter()
        results["oracle"] = oracle_returns(base.task_family, fs, k_oracle)
        wall["oracle"] = time.perf_counter() - t
        log(f"oracle: trained {wall['oracle']:.0f}s; return {float(results['oracle'].mean[0]):.2f}")
    return Comparison(results, wall, trained, configs)
