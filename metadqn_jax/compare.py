"""Side-by-side few-shot comparison: meta-learned inits vs. pretrained, scratch and oracle.

Shared by ``metadqn train`` and ``benchmarks/few_shot.py``: every initialisation is trained
with the *same* environment-step budget (``num_meta_steps × num_tasks × envs_per_task ×
rollout_steps``), then adapted on the same held-out test tasks with the same keys and the same
protocol (:mod:`metadqn_jax.fewshot`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from metadqn_jax.core.validate import positive_int
from metadqn_jax.fewshot import (
    FewShotConfig,
    FewShotResult,
    GuardChoice,
    choose_guard,
    evaluate_few_shot,
    oracle_cache_path,
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


class Cancelled(Exception):
    """Raised in a learner's thread at its next chunk edge once another part of the comparison
    failed or was interrupted (:func:`compare`'s callback)."""


class StopComparison(Exception):
    """Raised by a train hook to end the comparison at a point of its own (e.g. ``metadqn train
    --stop-after``): the parts not yet started are dropped, the running ones go on until they end
    or stop at their own point, and then :func:`compare` raises the first of these."""


class TrainHook(Protocol):
    def __call__(self, cfg: MetaConfig, key: jax.Array, *, callback: Callable, position: int | None) -> TrainResult:
        """Meta-trains ``cfg`` from ``key`` (like :func:`~metadqn_jax.driver.train_meta`), calling
        ``callback(state, early_stop, row)`` after every chunk (it raises :class:`Cancelled`
        when the comparison stops) and drawing any progress bar on terminal line ``position``
        (``None``: the current line; several learners may train at once)."""


def default_workers(jobs: int) -> int:
    """Parts of a comparison run at once by default: one per CPU core (XLA runs one small
    program on about 1.3 of 2 cores), at most 2 and at most ``jobs``; 1 on an accelerator, whose
    programs already fill it."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(2, os.cpu_count() or 1, jobs))


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
    train: TrainHook | None = None,
    meta_seeds: int = 1,
    workers: int | None = None,
    oracle_cache: str | Path | None = None,
) -> Comparison:
    """Meta-trains each algorithm (``"pretrained"`` is one of them), then evaluates every
    init — plus ``scratch`` and the ``oracle`` — on the same held-out tasks and keys.

    The inits whose adaptation rule nothing meta-learned (``pretrained``, ``scratch``) have
    their one-shot adaptation guarded or not as :func:`~metadqn_jax.fewshot.choose_guard`
    decides on ``validation.num_tasks`` validation tasks (when ``fs.guard_adaptation`` is
    ``None``; the decisions are in ``Comparison.guards``, the test keys are not used for them).

    The parts — each algorithm (trained, then evaluated), ``scratch``, the ``oracle`` — are
    independent programs run by ``workers`` threads, in that order (every part's numbers are
    those of a sequential run: each is its own deterministic program). When one part fails (or
    the process is interrupted), the others stop at their next chunk edge and the first error
    is raised.

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
      progress: show meta-training progress bars (one line per learner training at once).
      log: receives one line when ``scratch`` and the oracle start, and one per evaluated init.
      train: a :class:`TrainHook` replacing the default ``train_meta(cfg, key, ...)`` (the CLI
        uses it for checkpoints, logging and resume).
      meta_seeds: meta-training seeds per algorithm, trained as one vmapped program
        (:func:`~metadqn_jax.driver.train_meta` with a batch of keys): seed ``i`` trains from the
        key a ``seed + i`` comparison would use, so seed 0 is the one-seed comparison. Every seed
        is evaluated on the same tasks and keys; the results' returns carry the seed axis
        (``[meta_seed, task, adapt_seed, budget]``), and ``scratch`` gets one fresh init per
        seed. The oracle (no meta-training) has a single seed.
      workers: parts run at once (default :func:`default_workers`).
      oracle_cache: a folder for the oracle's returns (:func:`~metadqn_jax.fewshot.oracle_returns`'
        ``cache_dir``; e.g. :func:`~metadqn_jax.fewshot.default_oracle_cache`): a comparison with the
        same family, protocol and seed reads them instead of training the oracle again.

    Returns:
      A :class:`Comparison`, its entries in the order algorithms, scratch, oracle.
    """
    positive_int("meta_seeds", meta_seeds)
    k_train, k_eval, k_scratch, k_oracle = comparison_keys(seed, meta_seeds)
    batched = None if meta_seeds == 1 else meta_seeds
    guards: dict[str, GuardChoice] = {}
    k_guard = jax.random.fold_in(k_eval, 1)  # validation tasks only; the test keys stay k_eval's
    val_tasks = (validation or ValidationConfig()).num_tasks
    cancel = threading.Event()
    lines: queue.SimpleQueue[int] = queue.SimpleQueue()  # the progress bars' free terminal lines

    def protocol(name, cfg, params, target, learner=None) -> FewShotConfig:
        """``fs``, with the guard of a baseline ``name`` chosen on validation tasks."""
        if fs.guard_adaptation is not None:
            return fs
        guards[name] = g = choose_guard(cfg, params, target, fs, k_guard, num_tasks=val_tasks, learner=learner,
                                        meta_seeds=batched)
        log(f"{name}: adaptation {'guarded' if g.guard else 'not guarded'} (validation return "
            f"{g.unadapted:.2f} unadapted, {g.adapted:.2f} adapted)")
        return dataclasses.replace(fs, guard_adaptation=g.guard)

    def stop_check(*_) -> None:  # every learner's chunk callback
        if cancel.is_set():
            raise Cancelled("another part of the comparison stopped")

    def default_train(cfg, key, *, callback, position):
        return train_meta(cfg, key, validation=validation, callback=callback,
                          progress=progress and (True if position is None else position))

    def learner(algo: str):
        cfg = config_for(base, algo)
        line = lines.get()
        try:
            t = time.perf_counter()
            res = (train or default_train)(cfg, k_train, callback=stop_check, position=line if parallel else None)
            wall = time.perf_counter() - t
        finally:
            lines.put(line)
        t = time.perf_counter()
        params, target = res.early_stop.best_params, res.early_stop.best_target
        fs_algo = protocol(algo, cfg, params, target) if algo == "pretrained" else fs
        result = evaluate_few_shot(cfg, params, target, fs_algo, k_eval, meta_seeds=batched)
        log(f"{algo}: trained {wall:.0f}s, evaluated {time.perf_counter() - t:.0f}s; "
            f"return at {fs.budgets}: {[round(float(x), 2) for x in result.mean]}")
        return result, wall, res, cfg

    def fresh_init():
        log(f"scratch: evaluating a fresh initialisation on {protocol_text(fs)}")
        cfg = config_for(base, "pretrained")  # an untrained network with the baseline's adaptation rule
        init_learner, params = scratch_params(cfg, k_scratch)
        fs_scratch = protocol("scratch", cfg, params, params, init_learner)
        result = evaluate_few_shot(cfg, params, params, fs_scratch, k_eval, learner=init_learner,
                                   meta_seeds=batched, meta_learned=False)
        log(f"scratch: return at {fs.budgets}: {[round(float(x), 2) for x in result.mean]}")
        return result, 0.0, None, None

    def per_task_dqn():
        cached = oracle_cache_path(base.task_family, fs, k_oracle, oracle_cache)
        if cached is not None and cached.is_file():
            log(f"oracle: reading the returns of the DQNs trained on these test tasks before ({cached})")
        else:
            log(f"oracle: training a DQN from scratch on each of the {fs.num_tasks} test tasks ({fs.num_tasks} "
                "runs in one program; no progress until it ends)")
        t = time.perf_counter()
        result = oracle_returns(base.task_family, fs, k_oracle, cache_dir=oracle_cache)
        wall = time.perf_counter() - t
        log(f"oracle: {wall:.0f}s; return {float(result.mean[0]):.2f}")
        return result, wall, None, None

    parts = {a: functools.partial(learner, a) for a in algorithms}
    parts.update({"scratch": fresh_init} if scratch else {}, **({"oracle": per_task_dqn} if oracle else {}))
    workers = default_workers(len(parts)) if workers is None else workers
    positive_int("workers", workers)
    parallel = workers > 1
    for line in range(workers):
        lines.put(line)
    done = _run_parts(parts, workers, cancel)
    return Comparison({n: d[0] for n, d in done.items()}, {n: d[1] for n, d in done.items()},
                      {n: d[2] for n, d in done.items() if d[2] is not None},
                      {n: d[3] for n, d in done.items() if d[3] is not None},
                      {n: guards[n] for n in done if n in guards})  # in the parts' order, whatever finished first


def _run_parts(parts: Mapping[str, Callable[[], Any]], workers: int, cancel: threading.Event) -> dict[str, Any]:
    """``{name: part()}`` in the order of ``parts``, ``workers`` at a time. The first failure (or
    an interruption of the waiting thread) sets ``cancel``, waits for the running parts to stop,
    and is raised; a :class:`StopComparison` drops the parts not yet started and is raised once
    the running ones have ended."""
    if workers == 1:
        return {name: part() for name, part in parts.items()}
    stops: list[StopComparison] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compare") as pool:
        futures = {name: pool.submit(part) for name, part in parts.items()}
        try:
            for future in as_completed(futures.values()):
                error = None if future.cancelled() else future.exception()
                if isinstance(error, StopComparison):
                    stops.append(error)
                    for other in futures.values():
                        other.cancel()  # only those not started
                elif error is not None:
                    raise error
        except BaseException:
            cancel.set()
            for future in futures.values():
                future.cancel()
            wait(futures.values())
            raise
    if stops:
        raise stops[0]
    return {name: future.result() for name, future in futures.items()}


def protocol_text(fs: FewShotConfig) -> str:
    """``"N held-out test tasks x S seeds at budgets [...] env steps"``: the few-shot protocol ``fs``."""
    return f"{fs.num_tasks} held-out test tasks x {fs.seeds} seeds at budgets {list(fs.budgets)} env steps"


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
