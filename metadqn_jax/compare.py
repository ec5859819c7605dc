"""Side-by-side few-shot comparison: meta-learned inits vs. pretrained, scratch and oracle.

Shared by ``metadqn train`` and ``benchmarks/few_shot.py``: every initialisation is trained
with the *same* environment-step budget (``num_meta_steps × num_tasks × envs_per_task ×
rollout_steps``), then adapted on the same held-out test tasks with the same keys and the same
protocol (:mod:`metadqn_jax.fewshot`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metadqn_jax.core.validate import positive_int
from metadqn_jax.fewshot import (
    FewShotConfig,
    FewShotResult,
    GuardChoice,
    choose_guard,
    evaluate_few_shot,
    oracle_returns,
    scratch_params,
)
from metadqn_jax.meta import MetaConfig
from metadqn_jax.driver import TrainResult, ValidationConfig, train_meta


def config_for(base: MetaConfig, algorithm: str) -> MetaConfig:
    """``base`` re-targeted to ``algorithm`` (:meth:`MetaConfig.rebuilt`): the fields ``base``'s
    constructor was not given take that algorithm's defaults — the family's recommendations for
    it (``TaskFamily.meta_defaults_for``), then
    :data:`metadqn_jax.meta.defaults.ALGORITHM_DEFAULTS`; a value the user chose (e.g.
    ``--meta-lr``) always wins."""
    return base.rebuilt(algorithm=algorithm)


class Comparison(NamedTuple):
    """What :func:`compare` returns."""

    results: dict[str, FewShotResult]  # init name -> few-shot returns
    train_wall_s: dict[str, float]  # init name -> meta-training wall time (incl. compile)
    trained: dict[str, TrainResult]  # algorithm -> training result
    configs: dict[str, MetaConfig]  # algorithm -> the config it was trained with
    # init name -> its guard decision on validation tasks (fewshot.choose_guard): the inits
    # whose adaptation nothing meta-learned (pretrained, scratch), when fs.guard_adaptation is None
    guards: Mapping[str, GuardChoice] = MappingProxyType({})  # (read-only: no dict shared between instances)


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

    The inits whose adaptation rule nothing meta-learned (``pretrained``, ``scratch``) have
    their one-shot adaptation guarded or not as :func:`~metadqn_jax.fewshot.choose_guard`
    decides on ``validation.num_tasks`` validation tasks (when ``fs.guard_adaptation`` is
    ``None``; the decisions are in ``Comparison.guards``, the test keys are not used for them).

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
    k_train, k_eval, k_scratch, k_oracle = comparison_keys(seed, meta_seeds)
    batched = None if meta_seeds == 1 else meta_seeds
    results: dict[str, FewShotResult] = {}
    wall: dict[str, float] = {}
    trained: dict[str, TrainResult] = {}
    configs: dict[str, MetaConfig] = {}
    guards: dict[str, GuardChoice] = {}
    k_guard = jax.random.fold_in(k_eval, 1)  # validation tasks only; the test keys stay k_eval's
    val_tasks = (validation or ValidationConfig()).num_tasks

    def protocol(name, cfg, params, target, learner=None) -> FewShotConfig:
        """``fs``, with the guard of a baseline ``name`` chosen on validation tasks."""
        if fs.guard_adaptation is not None:
            return fs
        guards[name] = g = choose_guard(cfg, params, target, fs, k_guard, num_tasks=val_tasks, learner=learner,
                                        meta_seeds=batched)
        log(f"{name}: adaptation {'guarded' if g.guard else 'not guarded'} (validation return "
            f"{g.unadapted:.2f} unadapted, {g.adapted:.2f} adapted)")
        return dataclasses.replace(fs, guard_adaptation=g.guard)

    train = train or functools.partial(train_meta, validation=validation, progress=progress)
    for algo in algorithms:
        configs[algo] = cfg = config_for(base, algo)
        t = time.perf_counter()
        trained[algo] = res = train(cfg, k_train)
        wall[algo] = time.perf_counter() - t
        t = time.perf_counter()
        params, target = res.early_stop.best_params, res.early_stop.best_target
        fs_algo = protocol(algo, cfg, params, target) if algo == "pretrained" else fs
        results[algo] = evaluate_few_shot(cfg, params, target, fs_algo, k_eval, meta_seeds=batched)
        log(f"{algo}: trained {wall[algo]:.0f}s, evaluated {time.perf_counter() - t:.0f}s; "
            f"return at {fs.budgets}: {[round(float(x), 2) for x in results[algo].mean]}")
    if scratch:
        cfg = config_for(base, "pretrained")  # an untrained network with the baseline's adaptation rule
        learner, params = scratch_params(cfg, k_scratch)
        fs_scratch = protocol("scratch", cfg, params, params, learner)
        results["scratch"] = evaluate_few_shot(cfg, params, params, fs_scratch, k_eval, learner=learner,
                                               meta_seeds=batched, meta_learned=False)
        wall["scratch"] = 0.0
        log(f"scratch: return at {fs.budgets}: {[round(float(x), 2) for x in results['scratch'].mean]}")
    if oracle:
        t = time.perf_counter()
        results["oracle"] = oracle_returns(base.task_family, fs, k_oracle)
        wall["oracle"] = time.perf_counter() - t
        log(f"oracle: trained {wall['oracle']:.0f}s; return {float(results['oracle'].mean[0]):.2f}")
    return Comparison(results, wall, trained, configs, guards)


def comparison_keys(seed: int, meta_seeds: int = 1) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(train, evaluation, scratch, oracle)`` keys of a comparison: ``split(key(seed), 4)``; with
    several meta-training seeds, the training and scratch keys are ``[meta_seeds]``, seed ``i``'s
    those of a one-seed comparison with ``seed + i`` (every seed is evaluated with the same key)."""
    k_train, k_eval, k_scratch, k_oracle = jax.random.split(jax.random.key(seed), 4)
    if meta_seeds > 1:
        per_seed = [jax.random.split(jax.random.key(seed + i), 4) for i in range(meta_seeds)]
        k_train = jnp.stack([k[0] for k in per_seed])
        k_scratch = jnp.stack([k[2] for k in per_seed])
    return k_train, k_eval, k_scratch, k_oracle
