"""Run-level settings of the commands (the ``run``, ``eval`` and ``sweep`` sections of a config file).

Each is a frozen dataclass that checks its own fields on construction and raises one
:class:`~metadqn_jax.core.errors.ConfigError` naming the qualified field. Settings that need a
registry (``DQNSettings.family`` and its task index) are checked by the command configuration
that holds them (:class:`metadqn_jax.runs.configs.DQNRunConfig`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from metadqn_jax.core.validate import boolean, in_range, nonneg_int, positive_int, require
from metadqn_jax.meta.defaults import ALGORITHMS
from metadqn_jax.regression import REGRESSION_ALGORITHMS
from metadqn_jax.sweep import Grid, parse_grid

__all__ = ["BASELINES", "TrainSettings", "DQNSettings", "RegressSettings", "RegressEvalSettings", "SweepSettings"]

BASELINES: tuple[str, ...] = ("pretrained", "scratch", "oracle")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Run-level settings of ``metadqn train`` (section ``run``)."""

    algorithms: tuple[str, ...] = ("context",)  # meta-learning algorithms to train and compare
    baselines: tuple[str, ...] = ("pretrained", "scratch")  # subset of BASELINES
    seed: int = 0  # seeds meta-training, evaluation and the scratch init (compare.compare)
    meta_seeds: int = 1  # meta-training seeds per algorithm (seed, seed+1, ...), one vmapped program
    checkpoint_every: int = 500  # meta-steps between checkpoints (0: only at the end)
    keep: int = 3  # checkpoints kept per algorithm (the most recent ones)
    num_devices: int | None = None  # devices the task axis is sharded over (None: all; 1: no sharding)
    fast_compile: bool = False  # compile for compilation speed (small runs: XLA optimisation level 0; core.compile)

    def __post_init__(self):
        algos = _unique(self.algorithms)
        require(len(algos) > 0 and all(a in ALGORITHMS for a in algos), "run.algorithms",
                f"a non-empty list of {ALGORITHMS}", list(self.algorithms))
        object.__setattr__(self, "algorithms", algos)
        base = _unique(self.baselines)
        require(all(b in BASELINES for b in base), "run.baselines", f"a list of {BASELINES}",
                list(self.baselines))
        object.__setattr__(self, "baselines", base)
        nonneg_int("run.seed", self.seed)
        positive_int("run.meta_seeds", self.meta_seeds)
        nonneg_int("run.checkpoint_every", self.checkpoint_every)
        positive_int("run.keep", self.keep)
        if self.num_devices is not None:
            positive_int("run.num_devices", self.num_devices)
        boolean("run.fast_compile", self.fast_compile)

    @property
    def trained(self) -> tuple[str, ...]:
        """Algorithms that are meta-trained: ``algorithms`` (+ ``pretrained`` as a baseline)."""
        extra = ("pretrained",) if "pretrained" in self.baselines and "pretrained" not in self.algorithms else ()
        return self.algorithms + extra


@dataclasses.dataclass(frozen=True)
class DQNSettings:
    """Run-level settings of ``metadqn dqn`` (section ``run``)."""

    seed: int = 0  # first seed; seeds are seed, seed+1, ... (one vmapped program)
    seeds: int = 1  # independent training runs
    family: str | None = None  # train on one task of this family (None: dqn.env_id's default task)
    task: int = 0  # index of the task in the family's split (< its size: DQNRunConfig checks)
    split: str = "test"  # the family split the task comes from
    fast_compile: bool = False  # compile for compilation speed (small runs: XLA optimisation level 0; core.compile)

    def __post_init__(self):
        nonneg_int("run.seed", self.seed)
        positive_int("run.seeds", self.seeds)
        nonneg_int("run.task", self.task)
        require(self.split in ("train", "val", "test"), "run.split", "'train', 'val' or 'test'", self.split)
        boolean("run.fast_compile", self.fast_compile)


@dataclasses.dataclass(frozen=True)
class RegressSettings:
    """Run-level settings of ``metadqn regress`` (section ``run``)."""

    algorithms: tuple[str, ...] = ("maml", "pretrained")
    fast_compile: bool = False  # compile for compilation speed (small runs: XLA optimisation level 0; core.compile)

    def __post_init__(self):
        algos = _unique(self.algorithms)
        require(len(algos) > 0 and all(a in REGRESSION_ALGORITHMS for a in algos), "run.algorithms",
                f"a non-empty list of {REGRESSION_ALGORITHMS}", list(self.algorithms))
        object.__setattr__(self, "algorithms", algos)
        boolean("run.fast_compile", self.fast_compile)


@dataclasses.dataclass(frozen=True)
class RegressEvalSettings:
    """Few-shot evaluation of ``metadqn regress`` (section ``eval``)."""

    num_tasks: int = 1000  # held-out sinusoid tasks
    shots: tuple[int, ...] = (5, 10)  # support points per task (K)
    steps: tuple[int, ...] = (0, 1, 5, 10)  # inner SGD steps reported (0: the unadapted prior)
    inner_lr: float = 0.01  # SGD step size of the test-time adaptation
    seed: int = 1234  # seed of the held-out tasks and their support points

    def __post_init__(self):
        require(isinstance(self.num_tasks, int) and not isinstance(self.num_tasks, bool) and self.num_tasks >= 2,
                "eval.num_tasks", "an integer >= 2", self.num_tasks)
        shots = tuple(sorted(set(self.shots)))
        require(len(shots) > 0 and all(isinstance(k, int) and k > 0 for k in shots), "eval.shots",
                "a non-empty list of positive integers", list(self.shots))
        object.__setattr__(self, "shots", shots)
        steps = tuple(sorted(set(self.steps)))
        require(len(steps) > 0 and all(isinstance(k, int) and k >= 0 for k in steps), "eval.steps",
                "a non-empty list of integers >= 0", list(self.steps))
        object.__setattr__(self, "steps", steps)
        in_range("eval.inner_lr", self.inner_lr, 0.0, math.inf, low_open=True)
        nonneg_int("eval.seed", self.seed)


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """The ``sweep`` section of ``metadqn sweep``: what is swept and how many meta-training seeds
    per combination."""

    algorithm: str = "context"  # the meta-learning algorithm swept (one: it is static)
    grid: tuple[str, ...] = ()  # "hparams.FIELD=V1,V2,..." items (metadqn_jax.sweep.parse_grid)
    seeds: int = 3  # meta-training seeds per combination
    seed: int = 0  # the first run seed (seed i trains from the key of 'metadqn train --seed seed+i')
    num_devices: int | None = None  # devices the task axis is sharded over (None: all; 1: no sharding)
    fast_compile: bool = False  # compile for compilation speed (small runs: XLA optimisation level 0; core.compile)

    def __post_init__(self):
        require(self.algorithm in ALGORITHMS, "sweep.algorithm", f"one of {ALGORITHMS}", self.algorithm)
        if self.grid:  # checked (one message) and written canonically: hparams.FIELD=V1,V2
            object.__setattr__(self, "grid", parse_grid(self.grid).items)
        positive_int("sweep.seeds", self.seeds)
        nonneg_int("sweep.seed", self.seed)
        if self.num_devices is not None:
            positive_int("sweep.num_devices", self.num_devices)
        boolean("sweep.fast_compile", self.fast_compile)

    @property
    def parsed_grid(self) -> Grid:
        """The :class:`metadqn_jax.sweep.Grid` of ``grid``."""
        return parse_grid(self.grid)


def _unique(values: Any) -> tuple:
    """``values`` as a tuple without repeats, in first-seen order (a string is one value)."""
    if isinstance(values, str):
        values = (values,)
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return tuple(out)
