"""Configuration: static settings (frozen dataclasses, hashed into ``jit``) apart from
traced hyper-parameters (``NamedTuple`` pytrees of arrays: a sweep over them is one ``vmap``
and changing them never recompiles).

Every dataclass validates itself on construction and raises one ``ValueError`` that names
the field and the allowed range — before anything is traced or compiled.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent."""


def require(ok: bool, field: str, allowed: str, value: Any) -> None:
    """Raises :class:`ConfigError` ``"<field> must be <allowed>, got <value>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field} must be {allowed}, got {value!r}")


def positive_int(name: str, value: Any) -> None:
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0,
            name, "a positive integer", value)


def nonneg_int(name: str, value: Any) -> None:
    require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0,
            name, "an integer >= 0", value)


def in_range(name: str, value: Any, low: float, high: float, *, low_open=False, high_open=False) -> None:
    """Checks ``low (<|<=) value (<|<=) high`` for a scalar or every element of an array."""
    arr = np.asarray(value, dtype=np.float64)
    ok = bool(np.all(np.isfinite(arr)))
    ok = ok and bool(np.all(arr > low) if low_open else np.all(arr >= low))
    ok = ok and bool(np.all(arr < high) if high_open else np.all(arr <= high))
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    shown = (value.item() if hasattr(value, "item") else value) if arr.ndim == 0 else arr.tolist()
    require(ok, name, f"in {lo}{low}, {high}{hi}", shown)


def check_hparams(hp: NamedTuple, rules: dict[str, tuple]) -> None:
    """Validates concrete hyper-parameters (scalars or arrays, e.g. a vmapped sweep)."""
    for name, (low, high, low_open, high_open) in rules.items():
        value = getattr(hp, name)
        if hasattr(value, "aval") and not hasattr(value, "__array__"):
            continue  # a tracer: checked where it was made
        in_range(f"{type(hp).__name__}.{name}", value, low, high, low_open=low_open, high_open=high_open)


def as_hparams(cls, **values) -> Any:
    """Builds a traced-hyper-parameter NamedTuple with float32 leaves."""
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


# ---------------------------------------------------------------------------------- DQN
class DQNHParams(NamedTuple):
    """Traced DQN hyper-parameters (leaves: float32 scalars, or ``[n]`` under a vmapped sweep)."""

    lr: Any  # Adam learning rate, > 0
    gamma: Any  # discount in [0, 1]
    eps_start: Any  # ε at step 0, in [0, 1]
    eps_end: Any  # final ε, in [0, 1]
    eps_decay_steps: Any  # env steps over which ε decays linearly, > 0
    tau: Any  # Polyak factor in [0, 1): target <- tau * target + (1 - tau) * online


DQN_HPARAM_RULES = {
    "lr": (0.0, math.inf, True, True),
    "gamma": (0.0, 1.0, False, False),
    "eps_start": (0.0, 1.0, False, False),
    "eps_end": (0.0, 1.0, False, False),
    "eps_decay_steps": (0.0, math.inf, True, True),
    "tau": (0.0, 1.0, False, True),
}


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Single-task DQN: static settings plus defaults for the traced hyper-parameters.

    The defaults are rejax's CartPole DQN configuration (10 envs, 50k buffer, batch 100,
    5 updates per 10 env steps, double DQN, squared loss, swish 64-64, Polyak 0.98 once per
    iteration, lr 1e-3, ε 1 -> 0.05 over 10k steps). They solve CartPole-v1 (greedy mean
    return >= 475 over 10 episodes) within 100k env steps on 5 of 5 seeds (BENCHMARKS.md).
    A ReLU / Huber / per-update-Polyak variant solved only 1 of the same 5 seeds.

    Static fields fix array shapes and loop lengths (changing one recompiles); ``lr``,
    ``gamma``, ``eps_*`` and ``tau`` are only defaults for :meth:`hparams`.
    """

    env_id: str = "CartPole-v1"
    num_envs: int = 10  # parallel environments
    total_steps: int = 100_000  # environment steps (all envs together)
    buffer_size: int = 50_000  # replay capacity, transitions
    batch_size: int = 100  # transitions per gradient step
    learning_starts: int = 1_000  # env steps before the first update
    updates_per_iteration: int = 5  # gradient steps per iteration (one step of every env)
    hidden: tuple[int, ...] = (64, 64)
    dueling: bool = False
    activation: str = "swish"  # hidden-layer activation: "relu" or "swish"
    double: bool = True  # double-DQN target
    huber: bool = False  # Huber (True) or squared TD loss
    target_update: str = "polyak"  # "polyak" (once per iteration, factor tau) or "period"
    target_period: int = 500  # gradient steps between hard target copies ("period")
    max_grad_norm: float = 10.0  # global-norm gradient clipping (inf: off)
    lr_decay: bool = False  # anneal the learning rate linearly to 0 over total_steps
    eval_every: int = 2_500  # env steps between greedy evaluations
    eval_episodes: int = 10  # greedy episodes per evaluation
    solve_threshold: float = 475.0  # mean greedy return that counts as solved
    # defaults of the traced hyper-parameters
    lr: float = 1e-3
    gamma: float = 0.99
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_steps: float = 10_000.0
    tau: float = 0.98

    def __post_init__(self):
        require(isinstance(self.env_id, str) and bool(self.env_id), "env_id", "a non-empty string", self.env_id)
        from metadqn_jax.envs import make_env  # lazily: envs imports gymnax

        try:
            make_env(self.env_id)
        except ValueError as e:  # names the unknown id and lists the known ones
            raise ConfigError(f"env_id: {e}") from None
        for name in ("num_envs", "total_steps", "buffer_size", "batch_size", "updates_per_iteration",
                     "target_period", "eval_every", "eval_episodes"):
            positive_int(name, getattr(self, name))
        nonneg_int("learning_starts", self.learning_starts)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        require(len(self.hidden) > 0 and all(h > 0 for h in self.hidden), "hidden",
                "a non-empty list of positive layer widths", self.hidden)
        require(self.batch_size <= self.buffer_size, "batch_size",
                f"<= buffer_size ({self.buffer_size})", self.batch_size)
        require(self.num_envs <= self.buffer_size, "num_envs", f"<= buffer_size ({self.buffer_size})", self.num_envs)
        require(self.activation in ("relu", "swish"), "activation", "'relu' or 'swish'", self.activation)
        require(self.target_update in ("polyak", "period"), "target_update", "'polyak' or 'period'", self.target_update)
        require(self.eval_every % self.num_envs == 0, "eval_every", f"a multiple of num_envs ({self.num_envs})", self.eval_every)
        require(self.total_steps >= self.eval_every, "total_steps", f">= eval_every ({self.eval_every})", self.total_steps)
        in_range("max_grad_norm", self.max_grad_norm, 0.0, math.inf, low_open=True)
        check_hparams(self.hparams(), DQN_HPARAM_RULES)

    def hparams(self, **overrides) -> DQNHParams:
        """The traced hyper-parameters (defaults from this config, ``overrides`` applied)."""
        values = {f: getattr(self, f) for f in DQNHParams._fields}
        values.update(overrides)
        hp = as_hparams(DQNHParams, **values)
        if overrides:
            check_hparams(hp, DQN_HPARAM_RULES)
        return hp

    @property
    def num_evals(self) -> int:
        return self.total_steps // self.eval_every

    @property
    def iterations_per_eval(self) -> int:
        return self.eval_every // self.num_envs
