"""The meta-training driver: the Python chunk loop around the jitted meta-step scan, with
validation and early stopping.

:func:`train_meta` calls the compiled :func:`metadqn_jax.meta.step.meta_train` (``chunk_size``
meta-steps in one ``lax.scan``) again and again; Python only sees chunk boundaries, where it
logs, validates (few-shot return on *validation* tasks after the learner's adaptation rule)
and optionally checkpoints. The program is compiled once: the same shapes and traced
hyper-parameters every chunk.

Early stopping keeps the meta-parameters with the best validation return and stops after
``patience`` validations without improvement; its state is a pytree (:class:`EarlyStop`)
so a checkpoint resumes it exactly.

Divergence guard: every meta-step reports, inside the compiled chunk, its query loss, its
meta-gradient norm and whether every meta-parameter is finite after the update
(:class:`metadqn_jax.meta.step.MetaStepMetrics`); the driver reads them with the chunk's other
metrics at the chunk edge (no extra host synchronisation, no recompilation) and raises
:class:`DivergenceError` naming the first bad meta-step *before* validating or calling the
callback for that chunk, so a caller's last checkpoint stays the last good one
(``allow_divergence=True`` keeps going instead).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import sharding
from metadqn_jax.core.compile import jit
from metadqn_jax.core.divergence import DivergenceError, first_divergence
from metadqn_jax.core.tree import tree_where
from metadqn_jax.core.validate import nonneg_int, positive_int, require
from metadqn_jax.progress import ChunkBar
from metadqn_jax.fewshot import FewShotConfig, few_shot_tasks, make_few_shot
from metadqn_jax.meta import (
    PER_TASK_FIELDS,
    MetaConfig,
    MetaHParams,
    MetaProgram,
    MetaState,
    make_meta_step,
    meta_train,
    meta_train_seeds,
)


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """How often and how meta-training validates (meta-steps; 0 disables validation)."""

    every: int | None = None  # meta-steps between validations (rounded up to whole chunks);
    #                           None: a tenth of the run (about ten validations), 0: no validation
    num_tasks: int = 32  # validation tasks (one adaptation run each)
    patience: int = 0  # validations without improvement before stopping (0: never stop)
    budgets: tuple[int, ...] = ()  # env-step budgets whose greedy returns the validation return
    #                                averages (the checkpoint kept is best for these); (): support_size

    def __post_init__(self):
        if self.every is not None:
            nonneg_int("validation.every", self.every)
        positive_int("validation.num_tasks", self.num_tasks)
        nonneg_int("validation.patience", self.patience)
        budgets = tuple(sorted(set(int(b) for b in self.budgets)))
        require(all(b >= 0 for b in budgets), "validation.budgets", "a list of env-step counts >= 0", self.budgets)
        object.__setattr__(self, "budgets", budgets)

    def interval(self, num_meta_steps: int) -> int:
        """Meta-steps between validations of a run of ``num_meta_steps`` (0: none): ``every``, or
        ``ceil(num_meta_steps / 10)`` when it is ``None``."""
        return -(-num_meta_steps // 10) if self.every is None else self.every


class EarlyStop(NamedTuple):
    """Early-stopping state (a pytree, checkpointed with the meta-state)."""

    best_return: jax.Array  # shape=() float32, best validation return so far (-inf: none)
    best_step: jax.Array  # shape=() int32, meta-step of the best validation (-1: none)
    bad_validations: jax.Array  # shape=() int32, validations since the last improvement
    best_params: Any  # meta-parameters at best_step
    best_target: Any  # meta-target at best_step


def init_early_stop(state: MetaState) -> EarlyStop:
    """No validation yet: best return ``-inf`` at step ``-1``, a copy of the state's parameters
    (every field ``[N]`` for a seed-batched state, like ``state.step``)."""
    copy = lambda t: jax.tree.map(jnp.copy, t)
    shape = jnp.shape(state.step)
    return EarlyStop(jnp.full(shape, -jnp.inf, jnp.float32), jnp.full(shape, -1, jnp.int32),
                     jnp.zeros(shape, jnp.int32), copy(state.params), copy(state.target_params))


def num_seeds(key=None, state: MetaState | None = None) -> int | None:
    """The meta-training seed count of a batch of keys ``[N]`` or a seed-batched state (``step [N]``);
    ``None`` for one key / an unbatched state."""
    if state is not None:
        return None if jnp.ndim(state.step) == 0 else int(jnp.shape(state.step)[0])
    return None if key is None or jnp.ndim(key) == 0 else int(jnp.shape(key)[0])


def hparam_rows(hp: MetaHParams) -> int | None:
    """``M`` when every leaf of ``hp`` has a leading axis ``[M]`` (one row of hyper-parameters
    per seed-batched run: a sweep), ``None`` when every leaf is a scalar (shared by all seeds).

    Raises:
      ValueError: the leaves mix scalars and vectors, or vectors of different lengths, or have
        more than one axis.
    """
    shapes = {name: tuple(jnp.shape(v)) for name, v in zip(type(hp)._fields, hp)}
    if all(s == () for s in shapes.values()):
        return None
    lengths = {s[0] for s in shapes.values() if len(s) == 1}
    if len(lengths) != 1 or any(len(s) != 1 for s in shapes.values()):
        raise ValueError(f"hp: every leaf must be a scalar, or every leaf a vector [M] of one length M "
                         f"(one row per seed-batched run); got shapes {shapes}")
    return lengths.pop()


def meta_train_hparam_rows(meta_step: Callable, state: MetaState, hp: MetaHParams, num_steps: int):
    """:func:`~metadqn_jax.meta.step.meta_train` vmapped over a leading axis ``[M]`` of BOTH the
    state and the traced hyper-parameters: run ``m`` trains with the hyper-parameter row
    ``hp[m]`` (a hyper-parameter sweep × meta-training seeds in one program). Jit it like
    ``meta_train``. Returns ``(state, MetaStepMetrics with leaves [M, num_steps])``."""
    return jax.vmap(lambda s, h: meta_train(meta_step, s, h, num_steps))(state, hp)


def _steps_taken(state: MetaState) -> int:
    return int(np.asarray(state.step).reshape(-1)[0])  # every seed takes the same steps


def seeded_init(program: MetaProgram, batched: bool, hp_axis: int | None = None):
    """``init(key, hp) -> MetaState``: ``program.init``, or (``batched``) vmapped over a batch of
    keys ``[N]`` — the seed axis — and over ``hp``'s rows when ``hp_axis`` is 0 (a sweep)."""
    return jax.vmap(program.init, in_axes=(0, hp_axis)) if batched else program.init


def update_early_stop(early_stop: EarlyStop, state: MetaState, val_return, step: int) -> EarlyStop:
    """Early stopping after a validation at meta-step ``step``: where ``val_return`` (``[]``, or
    ``[N]`` for a seed-batched state) beats the best so far, the state's parameters (new buffers,
    safe from the next chunk's donation) become the best; elsewhere one more bad validation."""
    val = jnp.asarray(val_return, jnp.float32)
    better = val > early_stop.best_return
    return EarlyStop(jnp.where(better, val, early_stop.best_return),
                     jnp.where(better, jnp.int32(step), early_stop.best_step),
                     jnp.where(better, 0, early_stop.bad_validations + 1).astype(jnp.int32),
                     tree_where(better, state.params, early_stop.best_params),
                     tree_where(better, state.target_params, early_stop.best_target))


class TrainResult(NamedTuple):
    """What :func:`train_meta` returns."""

    state: MetaState  # final meta-state
    early_stop: EarlyStop  # best parameters and their validation return
    history: list[dict]  # one row per chunk (meta_step, losses, val_return, wall_s, ...)
    stopped_early: bool


def validation_protocol(cfg: MetaConfig, val: ValidationConfig) -> FewShotConfig:
    """The few-shot protocol of a validation: ``val.num_tasks`` tasks of the ``"val"`` split, one
    run each, greedy return (2 episodes) after the learner's adaptation rule on ``support_size``
    fresh transitions (no fine-tuning), at ``val.budgets`` (default: ``support_size``)."""
    return FewShotConfig(budgets=val.budgets or (cfg.support_size,), num_tasks=val.num_tasks, seeds=1, split="val",
                         support_size=cfg.support_size, finetune=False, eval_episodes=2)


def make_validator(cfg: MetaConfig, val: ValidationConfig):
    """``validate(params, target, key, hp) -> mean greedy return`` on validation tasks after
    the learner's adaptation rule on ``support_size`` fresh transitions (no fine-tuning), or
    averaged over ``val.budgets`` (transitions seen) when those are given
    (:func:`validation_protocol`). Pure and traceable: jit it (vmapped over seeds, if any)."""
    fs = validation_protocol(cfg, val)
    run, _ = make_few_shot(cfg, fs)
    n = min(val.num_tasks, cfg.task_family.num_tasks("val"))

    def validate(params, target, key, hp):
        task_params, keys = few_shot_tasks(cfg.task_family, dataclasses.replace(fs, num_tasks=n), key)
        return run(params, target, task_params, keys, hp).mean()

    return validate


def train_meta(
    cfg: MetaConfig,
    key: jax.Array | None = None,
    hp: MetaHParams | None = None,
    *,
    validation: ValidationConfig | None = None,
    state: MetaState | None = None,
    early_stop: EarlyStop | None = None,
    callback: Callable[[MetaState, EarlyStop, dict], None] | None = None,
    progress: bool | int = True,
    program: MetaProgram | None = None,
    mesh: Any = None,
    num_devices: int | None = None,
    allow_divergence: bool = False,
) -> TrainResult:
    """Meta-trains ``cfg.num_meta_steps`` meta-steps (or continues ``state`` up to it): the
    Python loop over chunks of the jitted :func:`metadqn_jax.meta.step.meta_train` scan
    (``cfg.chunk_size`` meta-steps per call), validating and early-stopping between chunks.

    Args:
      cfg: static configuration.
      key: PRNG key for a fresh start (ignored when ``state`` is given), or a batch of keys
        ``[N]``: ``N`` meta-training seeds trained as ONE vmapped program (a seed axis in front of
        every leaf of the state; the task axis stays shardable). Each seed validates and
        early-stops on its own (``patience`` stops when every seed has run out of it); the
        returned state and early-stopping state carry the seed axis and the history rows
        average over seeds. Seed ``i`` follows the same computation as a one-key run with
        ``key[i]`` (equal up to float round-off of the batched kernels).
      hp: traced hyper-parameters (default ``cfg.hparams()``), shared by every seed; or, with a
        batch of keys ``[N]`` (or a seed-batched state), hyper-parameters whose every leaf is a
        vector ``[N]``: run ``i`` then trains with the row ``hp[i]`` (a sweep: combinations ×
        seeds flattened into one axis, one program, :func:`meta_train_hparam_rows`) and
        validates with it. Run ``i`` equals a one-key run with ``key[i]`` and ``hp[i]`` (up to
        float round-off of the batched kernels).
      validation: validation / early-stopping settings (default :class:`ValidationConfig`).
      state, early_stop: a state to resume from (e.g. a restored checkpoint).
      callback: ``callback(state, early_stop, row)`` after every chunk (logging, checkpoints).
      progress: show a tqdm progress bar (meta-step, loss, validation return; "compiling" until
        the first chunk ends, then a rate and ETA measured from there: :class:`metadqn_jax.progress.ChunkBar`);
        an int: show it on that terminal line (0, 1, ...: runs that train at once).
      mesh, num_devices: shard the task axis over devices (:mod:`metadqn_jax.sharding`):
        a 1-D ``jax.sharding.Mesh`` with axis ``"tasks"``, or the number of devices to build
        one over. Default (both ``None``): all devices (``jax.devices()``); with a single
        device, or ``num_devices=1``, the program is the plain single-device ``jit``.
      allow_divergence: keep training after a non-finite query loss, gradient norm or
        meta-parameter (one ``RuntimeWarning``, the first time; each chunk's row that holds
        a bad meta-step records the first one as ``row["diverged_step"]``). Default: raise.

    Returns:
      :class:`TrainResult`. Validation uses keys derived from the meta-step number only, so a
      resumed run sees exactly what an uninterrupted one would.

    Raises:
      DivergenceError: (unless ``allow_divergence``) at the edge of the first chunk in which a
        meta-step's query loss or meta-gradient norm is non-finite, or a meta-parameter is
        non-finite after its update; it names that meta-step and quantity. That chunk is neither
        validated nor passed to ``callback``: the callback's last state is the last good one.
    """
    validation = validation or ValidationConfig()
    hp = cfg.hparams() if hp is None else hp
    if mesh is None:  # validated before any compute; None: a single device
        mesh = sharding.task_mesh(cfg.num_tasks, num_devices, cfg.task_micro_batch)
    else:
        sharding.check_micro_batch(cfg.task_micro_batch, mesh)
    program = program or make_meta_step(cfg)
    seeds, hp_axis = run_axes(key, state, hp)
    if state is None:
        key = jax.random.key(0) if key is None else key
        state = seeded_init(program, seeds is not None, hp_axis)(key, hp)
    state, run = compiled_chunks(state, seeds is not None, hp_axis is not None, mesh)
    early_stop = early_stop or init_early_stop(state)
    val_interval = validation.interval(cfg.num_meta_steps)
    validate = make_validator(cfg, validation) if val_interval else None
    if validate is not None:
        validate = jit(validate if seeds is None else jax.vmap(validate, in_axes=(0, 0, None, hp_axis)))
    val_every_chunks = max(1, -(-val_interval // cfg.chunk_size)) if val_interval else 0
    val_key = jax.random.key(12345)
    history: list[dict] = []
    stopped = warned = False
    bar = None
    if progress is not False and progress is not None:  # an int (not a bool): the bar's terminal line
        line = None if isinstance(progress, bool) else int(progress)
        bar = ChunkBar(f"meta-train {cfg.algorithm}", cfg.num_meta_steps, _steps_taken(state), line)
    t0 = time.perf_counter()  # the bar's rate starts from the end of the first (compiling) chunk
    try:
        while not stopped and _steps_taken(state) < cfg.num_meta_steps:
            before = _steps_taken(state)
            state, metrics = run(program.meta_step, state, hp, min(cfg.chunk_size, cfg.num_meta_steps - before))
            step = _steps_taken(state)
            host = {k: np.asarray(v) for k, v in metrics._asdict().items()}
            bad = chunk_divergence(host, before, seeds)
            if bad is not None and not allow_divergence:
                raise DivergenceError(*bad)
            row = {k: float(np.mean(v)) for k, v in host.items() if k != "params_finite"}
            if bad is not None:
                row["diverged_step"] = bad[0]
                if not warned:
                    warnings.warn(f"{DivergenceError(*bad, hint='').detail}; continuing (allow_divergence=True)",
                                  RuntimeWarning, stacklevel=2)
                    warned = True
            row["meta_step"] = step
            row["env_steps"] = step * cfg.env_steps_per_meta_step
            if validate is not None and (-(-step // cfg.chunk_size) % val_every_chunks == 0 or
                                         step >= cfg.num_meta_steps):
                val = validate(state.params, state.target_params, jax.random.fold_in(val_key, step), hp)
                early_stop = update_early_stop(early_stop, state, val, step)
                row["val_return"] = float(np.mean(np.asarray(val)))  # the mean over seeds
                stopped = bool(validation.patience) and \
                    int(np.min(np.asarray(early_stop.bad_validations))) >= validation.patience
            row["wall_s"] = time.perf_counter() - t0
            history.append(row)
            if bar is not None:
                bar.chunk(row)
            if callback is not None:
                callback(state, early_stop, row)
    finally:
        if bar is not None:
            bar.close()
    if validate is None or int(np.min(np.asarray(early_stop.best_step))) < 0:  # no validation: the final parameters
        early_stop = EarlyStop(jnp.full(jnp.shape(state.step), jnp.nan, jnp.float32), state.step,
                               jnp.zeros(jnp.shape(state.step), jnp.int32), state.params, state.target_params)
    return TrainResult(state, early_stop, history, stopped)


def run_axes(key: jax.Array | None, state: MetaState | None, hp: MetaHParams) -> tuple[int | None, int | None]:
    """``(seeds, hp_axis)`` of a :func:`train_meta` call: the number of meta-training seeds
    (:func:`num_seeds`; ``None``: one run) and ``0`` when ``hp`` has one row per seed (a sweep), else ``None``.

    Raises:
      ValueError: ``hp`` has rows, but not one per seed.
    """
    seeds = num_seeds(key, state)
    rows = hparam_rows(hp)
    if rows is not None and rows != seeds:
        raise ValueError(f"hp has a row axis of {rows} hyper-parameter rows but the runs have "
                         f"{'no seed axis' if seeds is None else f'{seeds} seeds'}; give {rows} keys (or a state "
                         f"batched over {rows} runs)")
    return seeds, None if rows is None else 0


def compiled_chunks(state: MetaState, seeds: bool, hp_rows: bool, mesh: Any) -> tuple[MetaState, Callable]:
    """``(state, run)``: ``run(meta_step, state, hp, n)`` is the jitted chunk of ``n`` meta-steps
    (:func:`~metadqn_jax.meta.step.meta_train`, vmapped over the ``seeds`` axis, and over ``hp``'s
    rows with ``hp_rows``; the state donated), sharded over ``mesh``'s task axis when there is one
    (``state`` then placed on it)."""
    chunk, batch_axes = (meta_train_seeds, 1) if seeds else (meta_train, 0)
    if hp_rows:
        chunk = meta_train_hparam_rows
    if mesh is None:
        return state, jit(chunk, static_argnums=(0, 3), donate_argnums=(1,))
    spec = sharding.task_axis_spec(state, PER_TASK_FIELDS, axis=batch_axes)
    state = sharding.shard_meta_state(state, mesh, spec)
    return state, sharding.jit_meta_train(chunk, mesh, spec, batch_axes=batch_axes)


def chunk_divergence(host: dict[str, np.ndarray], before: int, seeds: int | None) -> tuple[int, str, float] | None:
    """The first diverged meta-step of a chunk (:func:`~metadqn_jax.core.divergence.first_divergence`
    of its query loss, gradient norm and finite-parameter flags; ``before``: meta-steps taken
    before it), over every seed when there are ``seeds``; ``None`` when every step is fine."""
    checks = {"query_loss": host["query_loss"], "grad_norm": host["grad_norm"],
              "meta_params_finite": host["params_finite"]}
    if seeds is None:
        return first_divergence(checks, before)
    per_seed = [first_divergence({k: v[i] for k, v in checks.items()}, before) for i in range(seeds)]
    return min((b for b in per_seed if b is not None), key=lambda b: b[0], default=None)
