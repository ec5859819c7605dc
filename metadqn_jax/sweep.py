"""Hyper-parameter search in one program: every combination of a grid over the traced
hyper-parameters (:class:`~metadqn_jax.meta.MetaHParams`) times every meta-training seed is one
row of a single vmapped meta-training program, and the best combination is chosen on
*validation* tasks only.

How it works:

* :func:`parse_grid` reads ``FIELD=V1,V2,...`` items (``hparams.tau=0.9,0.99`` or ``tau=...``)
  into a :class:`Grid`; every combination is the Cartesian product of the fields' values, in
  the order the fields were given (the first varies slowest).
* :func:`sweep_hparams` lays the ``C`` combinations × ``N`` seeds out as ``M = C·N`` rows
  (row ``c·N + i`` is combination ``c`` with seed ``i``): a :class:`MetaHParams` whose every
  leaf is ``[M]``. :func:`sweep_keys` gives row ``c·N + i`` the training key of
  ``compare(seed=seed + i)``, the same for every combination (common random numbers: the
  combinations start from the same initial parameters and tasks).
* :func:`run_sweep` trains the ``M`` rows with :func:`metadqn_jax.driver.train_meta` (a batch of
  ``M`` keys and an ``hp`` with a leading ``[M]`` axis: ONE compiled meta-training program;
  each row validates and early-stops on its own), then evaluates each row's kept parameters
  once more on the validation split (the validation protocol,
  :func:`~metadqn_jax.driver.validation_protocol`, with a key no training-time validation used)
  and chooses the combination with the highest mean of that final validation return over its
  seeds and validation tasks. The test split is never touched.

Intervals (:func:`metadqn_jax.core.stats.summarize_runs`) resample whole meta-training seeds and,
within them, whole validation tasks. Row ``c·N + i`` equals ``train_meta(cfg, sweep_keys(...)[i],
hp_c)`` trained alone, up to float round-off of the batched kernels.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import driver
from metadqn_jax.core.compile import jit
from metadqn_jax.core import stats
from metadqn_jax.core.hparams import check_hparams
from metadqn_jax.core.validate import ConfigError, in_range, positive_int
from metadqn_jax.fewshot import few_shot_tasks, make_few_shot
from metadqn_jax.meta import META_HPARAM_RULES, MetaConfig, MetaHParams
from metadqn_jax.meta.step import all_finite, make_meta_step

# the traced hyper-parameters a grid may vary
GRID_FIELDS: tuple[str, ...] = MetaHParams._fields
FINAL_VALIDATION_SEED = 67890  # key of the final validation (training-time validations use key(12345))
SELECTION = ("the combination with the highest mean final validation return (mean over its meta-training seeds "
             "and validation tasks); validation split only, the test split is never evaluated")


class Grid(NamedTuple):
    """A parsed grid: ``fields`` (MetaHParams names, in the order given) and their ``values``."""
    fields: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]

    @property
    def combinations(self) -> list[dict[str, float]]:
        """Every combination ``{field: value}`` (Cartesian product; the first field varies slowest)."""
        return [dict(zip(self.fields, combo)) for combo in itertools.product(*self.values)]

    @property
    def items(self) -> tuple[str, ...]:
        """The canonical ``hparams.FIELD=V1,V2`` items (what :func:`parse_grid` reads back)."""
        return tuple(f"hparams.{f}={','.join(_fmt(v) for v in vs)}" for f, vs in zip(self.fields, self.values))

    def label(self, combo: dict[str, float]) -> str:
        """``"tau=0.9, meta_lr=0.001"``."""
        return ", ".join(f"{f}={_fmt(combo[f])}" for f in self.fields)


def _fmt(v: float) -> str:
    return f"{float(v):g}"


def parse_grid(items: Sequence[str], where: str = "--grid") -> Grid:
    """Parses ``FIELD=V1,V2,...`` items (``FIELD``: ``hparams.<name>`` or ``<name>``, a traced
    hyper-parameter of :data:`GRID_FIELDS`; values: numbers in the field's range,
    :data:`~metadqn_jax.meta.config.META_HPARAM_RULES`).

    Args:
      items: the items (one ``--grid`` option each).
      where: how the items are named in error messages.

    Raises:
      ConfigError: one message naming the problem: no item, an item without ``=``, an unknown
        (or static) field, a field given twice, no value, a value that is not a number or is
        given twice, a value out of range.
    """
    if isinstance(items, str):
        items = [items]
    items = list(items or [])
    if not items:
        raise ConfigError(f"{where}: a sweep needs at least one {where} FIELD=V1,V2,... (e.g. hparams.tau=0.9,0.99; "
                          f"fields: {', '.join('hparams.' + f for f in GRID_FIELDS)})")
    fields: list[str] = []
    values: list[tuple[float, ...]] = []
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"{where} {item!r}: expected FIELD=V1,V2,... (e.g. hparams.tau=0.9,0.99)")
        name, _, text = item.partition("=")
        name = name.strip()
        field = name.removeprefix("hparams.")
        if field not in GRID_FIELDS:
            raise ConfigError(f"{where} {item!r}: {_unknown_field(name)}")
        if field in fields:
            raise ConfigError(f"{where}: hparams.{field} is given twice; give all its values in one "
                              f"{where} hparams.{field}=V1,V2,...")
        parts = [p.strip() for p in text.strip().strip("[]").split(",")]
        if not any(parts):
            raise ConfigError(f"{where} {item!r}: no values for hparams.{field}")
        if not all(parts):
            raise ConfigError(f"{where} {item!r}: an empty value (two commas in a row, or a trailing comma)")
        vals = []
        for p in parts:
            try:
                v = float(p)
            except ValueError:
                raise ConfigError(f"{where} {item!r}: {p!r} is not a number") from None
            if v in vals:
                raise ConfigError(f"{where} {item!r}: the value {p} is given twice")
            vals.append(v)
        low, high, low_open, high_open = META_HPARAM_RULES[field]
        try:
            in_range(f"hparams.{field}", vals, low, high, low_open=low_open, high_open=high_open)
        except ConfigError as e:
            raise ConfigError(f"{where} {item!r}: {e}") from None
        fields.append(field)
        values.append(tuple(vals))
    return Grid(tuple(fields), tuple(values))


def _unknown_field(name: str) -> str:

    known = [f"hparams.{f}" for f in GRID_FIELDS]
    bare = name.split(".", 1)[1] if name.startswith("meta.") else name
    static = {f.name for f in dataclasses.fields(MetaConfig)} - set(GRID_FIELDS)
    if bare in static:
        return (f"meta.{bare} is a static setting (changing it recompiles, so it cannot be one axis of one "
                f"program; set it with --set meta.{bare}=VALUE); a sweep varies the traced hyper-parameters: "
                f"{', '.join(known)}")
    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], GRID_FIELDS, n=1)
    hint = f"; did you mean 'hparams.{close[0]}'?" if close else ""
    return f"unknown field {name!r}{hint} (a sweep varies the traced hyper-parameters: {', '.join(known)})"


# ----------------------------------------------------------------------------- layout
def sweep_hparams(cfg, grid: Grid, seeds: int):
    """The ``M = C·N`` hyper-parameter rows: row ``c·N + i`` holds combination ``c`` (the grid's
    values over ``cfg.hparams()``, the config's resolved defaults) for seed ``i``.

    Returns:
      :class:`~metadqn_jax.meta.MetaHParams` with float32 leaves ``[C·N]``.
    """
    positive_int("seeds", seeds)
    base = {f: float(v) for f, v in zip(MetaHParams._fields, cfg.hparams())}
    rows = [{**base, **combo} for combo in grid.combinations for _ in range(seeds)]
    hp = MetaHParams(**{f: jnp.asarray([r[f] for r in rows], jnp.float32) for f in MetaHParams._fields})
    check_hparams(hp, META_HPARAM_RULES)
    return hp


def sweep_keys(seed: int, seeds: int, combinations: int):
    """Training keys ``[C·N]``: row ``c·N + i`` gets the training key of
    ``compare(seed=seed + i)`` (``split(key(seed + i), 4)[0]``), the same for every combination."""

    per_seed = [jax.random.split(jax.random.key(seed + i), 4)[0] for i in range(seeds)]
    return jnp.stack(per_seed * combinations)


# ----------------------------------------------------------------------------- result
class SweepResult(NamedTuple):
    """What :func:`run_sweep` returns (``C`` combinations, ``N`` seeds, ``T`` validation tasks,
    ``B`` validation budgets)."""

    grid: Grid
    combinations: list[dict[str, float]]  # [C] the grid values of each combination
    hparams: list[dict[str, float]]  # [C] every traced hyper-parameter of each combination (resolved)
    seeds: tuple[int, ...]  # [N] the run seeds (seed + i)
    val_runs: np.ndarray  # [C, N, T, B] final validation returns (validation split)
    val_budgets: tuple[int, ...]  # [B]
    train_val_return: np.ndarray  # [C, N] best validation return during training (early stopping)
    best_step: np.ndarray  # [C, N] meta-step of the kept parameters (-1: never validated)
    diverged: np.ndarray  # [C, N] bool: non-finite parameters at the end of training
    meta_steps: np.ndarray  # [C, N] meta-steps taken
    best: int  # index of the chosen combination (-1: none has a finite validation return)
    train: Any  # the TrainResult of the one program (state / early_stop leaves [C*N, ...])
    train_wall_s: float  # meta-training wall time, compilation included
    sequential: bool  # the combinations were trained one after another (run_sweep(sequential=True))
    eval_wall_s: float  # final validation wall time, compilation included

    @property
    def val_return(self) -> np.ndarray:
        """``[C, N]``: each run's final validation return (mean over tasks and budgets)."""
        return self.val_runs.mean(axis=(2, 3))

    def summary(self):
        """``[C]`` :class:`metadqn_jax.core.stats.Summary` of each combination's final validation
        return (budgets averaged first; intervals resample seeds, then tasks)."""

        per = self.val_runs.mean(axis=3, keepdims=True)  # [C, N, T, 1]
        return [stats.summarize_runs(per[c][:, :, None, :]) for c in range(per.shape[0])]


def select_best(val_runs: np.ndarray) -> int:
    """The combination with the highest mean validation return over seeds, tasks and budgets
    (``val_runs [C, N, T, B]``); a combination with any non-finite return is never chosen;
    ``-1`` when every combination has one. Ties: the first."""
    means = np.asarray(val_runs, np.float64).reshape(np.shape(val_runs)[0], -1).mean(axis=1)
    finite = np.isfinite(means)
    if not finite.any():
        return -1
    return int(np.argmax(np.where(finite, means, -np.inf)))


def run_sweep(
    cfg,
    grid: Grid,
    *,
    seeds: int,
    seed: int = 0,
    validation=None,
    progress: bool = True,
    callback: Callable | None = None,
    num_devices: int | None = None,
    program=None,
    log: Callable[[str], None] | None = None,
    sequential: bool = False,
) -> SweepResult:
    """Trains every combination of ``grid`` × ``seeds`` meta-training seeds as ONE vmapped
    program, evaluates each run's kept parameters on the validation split, and chooses the best
    combination on that validation return (see the module docstring).

    Args:
      cfg: the :class:`~metadqn_jax.meta.MetaConfig` (its traced hyper-parameters are the values
        of the fields the grid leaves alone).
      grid: :func:`parse_grid`'s result.
      seeds: meta-training seeds per combination (``N``).
      seed: the first run seed; seed ``i`` trains from the key of ``compare(seed=seed + i)``.
      validation: a :class:`~metadqn_jax.driver.ValidationConfig` with ``every`` not 0 (default
        :class:`~metadqn_jax.driver.ValidationConfig()`).
      progress, callback, num_devices, program: passed to :func:`~metadqn_jax.driver.train_meta`.
      log: receives a line when runs diverged (their parameters became non-finite: training goes
        on for the others, and such a run keeps its last validated parameters).
      sequential: train the combinations one after another instead (each a program over its
        ``N`` seeds, the same compiled meta-step for all: the hyper-parameters are traced; the
        validator is rebuilt per combination): ``C`` times less memory, the same numbers up to
        float round-off; the final validation is the same one program.

    Returns:
      A :class:`SweepResult`.

    Raises:
      ConfigError: ``seeds`` is not a positive integer, or ``validation.every`` is 0.
    """
    positive_int("seeds", seeds)
    validation = validation or driver.ValidationConfig()
    if validation.every == 0:
        raise ConfigError("validation.every must be > 0 for a sweep (it chooses on validation returns)")
    combos = grid.combinations
    C, N = len(combos), seeds
    hp = sweep_hparams(cfg, grid, N)
    train_kw = dict(validation=validation, progress=progress, callback=callback, program=program,
                    num_devices=num_devices)
    t0 = time.perf_counter()
    res = train_rows(cfg, sweep_keys(seed, N, C), hp, N, sequential=sequential, **train_kw)
    train_wall = time.perf_counter() - t0
    es = res.early_stop
    diverged = ~np.asarray(jax.vmap(all_finite)(res.state.params))
    if diverged.any() and log is not None:
        bad = sorted({int(m) // N for m in np.flatnonzero(diverged)})
        log(f"warning: {int(diverged.sum())} of {C * N} runs diverged (non-finite parameters) in combination(s) "
            f"{', '.join(grid.label(combos[c]) for c in bad)}; each keeps its last validated parameters")
    t1 = time.perf_counter()
    fs = driver.validation_protocol(cfg, validation)
    returns = final_validation(cfg, fs, es.best_params, es.best_target, hp)
    eval_wall = time.perf_counter() - t1
    B = len(fs.budgets)
    val_runs = returns.reshape(C, N, -1, B)
    never = np.asarray(es.best_step).reshape(C, N) < 0
    val_runs[never] = np.nan  # never validated with finite parameters: not a candidate
    base = [float(v) for v in cfg.hparams()]
    names = type(cfg.hparams())._fields
    full = [{**dict(zip(names, base)), **combo} for combo in combos]
    return SweepResult(
        grid=grid, combinations=combos, hparams=full, seeds=tuple(seed + i for i in range(N)),
        val_runs=val_runs, val_budgets=tuple(fs.budgets),
        train_val_return=np.asarray(es.best_return, np.float64).reshape(C, N),
        best_step=np.asarray(es.best_step).reshape(C, N), diverged=diverged.reshape(C, N),
        meta_steps=np.asarray(res.state.step).reshape(C, N), best=select_best(val_runs), train=res,
        train_wall_s=train_wall, eval_wall_s=eval_wall, sequential=sequential,
    )


def train_rows(cfg, keys: jax.Array, hp, seeds: int, *, sequential: bool, program=None, **train_kw):
    """Meta-trains the ``M = C·N`` rows of a sweep (:func:`sweep_keys`, :func:`sweep_hparams`;
    ``seeds = N``) with :func:`~metadqn_jax.driver.train_meta` and ``allow_divergence`` (a
    diverged run keeps its last validated parameters): as ONE program over every row, or with
    ``sequential`` one combination after another (its ``N`` seeds vmapped, the hyper-parameters
    shared, the same compiled meta-step for all), concatenated back into the ``[M]`` layout."""
    with warnings.catch_warnings():  # reported by run_sweep, per run
        warnings.filterwarnings("ignore", message="meta-training diverged", category=RuntimeWarning)
        if not sequential:
            return driver.train_meta(cfg, keys, hp, program=program, allow_divergence=True, **train_kw)
        program = program or make_meta_step(cfg)
        parts = [driver.train_meta(cfg, keys[:seeds], jax.tree.map(lambda x, c=c: x[c * seeds], hp), program=program,
                                   allow_divergence=True, **train_kw)
                 for c in range(keys.shape[0] // seeds)]
    cat = lambda *xs: jnp.concatenate(xs)
    return driver.TrainResult(jax.tree.map(cat, *[r.state for r in parts]),
                              jax.tree.map(cat, *[r.early_stop for r in parts]),
                              [row for r in parts for row in r.history], all(r.stopped_early for r in parts))


def final_validation(cfg, fs, params, target, hp) -> np.ndarray:
    """The greedy returns ``[M, tasks, B]`` float64 of every row's kept parameters (leaves
    ``[M, ...]``, with its hyper-parameter row of ``hp``) on the validation tasks of protocol ``fs``
    (:func:`~metadqn_jax.driver.validation_protocol`), with a key no training-time validation
    used, in one program."""
    run, _ = make_few_shot(cfg, fs)
    n = min(fs.num_tasks, cfg.task_family.num_tasks("val"))
    task_params, val_keys = few_shot_tasks(cfg.task_family, dataclasses.replace(fs, num_tasks=n),
                                           jax.random.key(FINAL_VALIDATION_SEED))
    evaluate = jit(jax.vmap(run, in_axes=(0, 0, None, None, 0)))
    return np.asarray(evaluate(params, target, task_params, val_keys, hp), np.float64)


# ----------------------------------------------------------------------------- output
def to_dict(result: SweepResult) -> dict[str, Any]:
    """JSON-ready: ``rows`` (one per combination and seed), ``combinations`` (one summary per
    combination: mean, 95 % interval, IQM of the final validation return), ``best`` (the chosen
    combination and, when there is another, its paired difference from the runner-up), the
    validation protocol and the selection rule."""

    summ = result.summary()
    val = result.val_return
    rows = []
    for c, combo in enumerate(result.combinations):
        for i, s in enumerate(result.seeds):
            rows.append({
                "combination": c, "seed": s, "grid": {k: float(v) for k, v in combo.items()},
                "hparams": dict(result.hparams[c]),
                "val_return": _num(val[c, i]),
                "val_return_per_budget": [_num(x) for x in result.val_runs[c, i].mean(axis=0)],
                "train_val_return": _num(result.train_val_return[c, i]),
                "best_step": int(result.best_step[c, i]), "meta_steps": int(result.meta_steps[c, i]),
                "diverged": bool(result.diverged[c, i]),
            })
    combos = [{"combination": c, "grid": {k: float(v) for k, v in combo.items()}, "label": result.grid.label(combo),
               "val_return": _num(s.mean[0]), "ci_low": _num(s.ci_low[0]), "ci_high": _num(s.ci_high[0]),
               "iqm": _num(s.iqm[0]), "iqm_low": _num(s.iqm_low[0]), "iqm_high": _num(s.iqm_high[0]),
               "diverged_runs": int(result.diverged[c].sum())}
              for c, (combo, s) in enumerate(zip(result.combinations, summ))]
    out: dict[str, Any] = {
        "grid": {f: list(v) for f, v in zip(result.grid.fields, result.grid.values)},
        "meta_seeds": list(result.seeds),
        "num_runs": len(rows),
        "validation": {"split": "val", "tasks": int(result.val_runs.shape[2]), "budgets": list(result.val_budgets),
                       "key_seed": FINAL_VALIDATION_SEED,
                       "val_return": "greedy return (2 episodes) on validation tasks after the learner's adaptation "
                                     "rule, no fine-tuning, averaged over the budgets"},
        "ci_method": stats.CI_METHOD, "selection": SELECTION,
        "rows": rows, "combinations": combos, "best": None,
        "train_wall_s": result.train_wall_s, "eval_wall_s": result.eval_wall_s,
        "mode": "sequential: one combination after another" if result.sequential
                else "one program: every combination x seed vmapped",
    }
    if result.best >= 0:
        b = result.best
        best = {**combos[b], "hparams": dict(result.hparams[b])}
        runner = _runner_up(result)
        if runner is not None:
            pr = stats.paired_compare(_runs(result, b), _runs(result, runner))
            best["vs_runner_up"] = {"combination": runner, "label": combos[runner]["label"],
                                    "diff": _num(pr.diff[0]), "diff_low": _num(pr.diff_low[0]),
                                    "diff_high": _num(pr.diff_high[0]), "p_improve": _num(pr.p_improve[0])}
        out["best"] = best
    return out


def _runs(result: SweepResult, c: int) -> np.ndarray:
    """``[N, T, 1, 1]`` budget-averaged validation returns of combination ``c``."""
    return result.val_runs[c].mean(axis=2, keepdims=True)[:, :, :, None]


def _runner_up(result: SweepResult) -> int | None:
    means = result.val_return.mean(axis=1)
    order = [int(c) for c in np.argsort(-np.where(np.isfinite(means), means, -np.inf), kind="stable")
             if c != result.best and np.isfinite(means[c])]
    return order[0] if order else None


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
