"""Task families: distributions over gymnax ``EnvParams`` with disjoint train / val / test splits.

A *task* is one environment's ``EnvParams`` (a flax struct dataclass). A :class:`TaskFamily`
describes how tasks vary: some fields drawn uniformly from ``ranges``, some from discrete
``choices``, optionally some from a custom ``sample_fn``; every other field keeps its value in
``base_params``. Derived fields are recomputed after sampling: first by the environment's hook
(:func:`metadqn_jax.envs.derived_fields`; CartPole's ``total_mass`` and ``polemass_length`` for
every CartPole-based environment), then by the family's own ``derive``.

Splits. From ``split_seed`` the family deterministically draws a finite pool of *distinct*
tasks per split (``num_train`` / ``num_val`` / ``num_test``); no task appears twice, so the
splits are disjoint. Each split has its own random stream and the pools are filled in the
order test, val, train, so the test tasks depend only on ``(split_seed, num_test)`` (plus the
family definition), not on how many training tasks you ask for (:mod:`.pools`).

Batched tasks. ``family.tasks(split)`` returns the whole pool and ``family.sample(key, n,
split)`` a random batch of it; in both every leaf carries a leading task axis (fixed fields are
broadcast), floats are float32 and ints int32, so a batch of tasks is one ``jax.vmap``:

>>> import jax
>>> from metadqn_jax.tasks import TaskFamily
>>> family = TaskFamily("my-pole", "CartPole-v1", ranges={"length": (0.3, 1.2)})
>>> env, base_params = family.env()
>>> params = family.sample(jax.random.key(0), 8)            # EnvParams, leaves [8]
>>> params.length.shape, params.gravity.shape, str(params.length.dtype)
((8,), (8,), 'float32')
>>> keys = jax.random.split(jax.random.key(1), 8)
>>> obs, state = jax.vmap(env.reset)(keys, params)
>>> obs.shape
(8, 4)
>>> family.describe()
'my-pole: CartPole-v1; length~U[0.3, 1.2]; gamma 0.99, 500 steps, splits 1024/128/128'

``sample`` is pure JAX (an on-device random index into a constant pool), so it can be called
inside ``jax.jit`` with static ``n`` and ``split``. Built-in families: :mod:`.builtin`, registered
in :mod:`.registry` (``list_families()``, ``get_family(name)``, ``register_family``).

Validation is a sequence of named checks (:mod:`.checks`), each raising ``ValueError``.

Definitions (:mod:`.spec`). :meth:`TaskFamily.to_spec` gives a family's full definition as
plain data (the ``family:`` block of a YAML file and of a run folder's ``config.yaml``) and
:meth:`TaskFamily.from_spec` rebuilds it; Python code (``sample_fn`` / ``derive``) cannot be
written down, so its definition names the module that registers it
(:mod:`metadqn_jax.runs.families` imports it). Budgets: ``TaskFamily.budgets`` (env steps;
default :func:`default_budgets`, in units of the episode length).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import envs
from metadqn_jax.tasks import pools
from metadqn_jax.tasks.checks import (
    EnvFields,
    validate_base_params,
    validate_budgets,
    validate_choices,
    validate_derive,
    validate_env_id,
    validate_gamma,
    validate_meta_defaults,
    validate_name,
    validate_numeric_fields,
    validate_pool_sizes,
    validate_ranges,
    validate_sample_fn,
    validate_split_seed,
    validate_support,
)
from metadqn_jax.tasks.pools import SPLITS, EnvParams, SampleFn, canonical_split
from metadqn_jax.tasks.spec import family_arguments, spec_of
from metadqn_jax.tasks.profile import FamilyProfile
from metadqn_jax.tasks.profile import profile as measure_profile

# --------------------------------------------------------------------------- helpers
def stack_params(params: Sequence[EnvParams]) -> EnvParams:
    """Stacks single tasks into one batched task: ``n x (leaves [...]) -> leaves [n, ...]``."""
    if len(params) == 0:
        raise ValueError("stack_params needs at least one EnvParams")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *params)


def index_params(batched: EnvParams, i: int | jax.Array) -> EnvParams:
    """Task ``i`` of a batch: ``leaves [n, ...] -> leaves [...]`` (``i`` an int, or an index
    array ``[m]`` giving ``leaves [m, ...]``)."""
    return jax.tree.map(lambda x: x[i], batched)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


DEFAULT_BUDGET_EPISODES: tuple[float, ...] = (0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 4.0)


def default_budgets(episode_length: int) -> tuple[int, ...]:
    """:data:`DEFAULT_BUDGET_EPISODES` times ``episode_length`` in env steps, rounded (a
    non-zero budget is at least 1 step), distinct and sorted; e.g. ``500 -> (0, 25, 100, 250,
    500, 1000, 2000)``, ``200 -> (0, 10, 40, 100, 200, 400, 800)``, ``25 -> (0, 1, 5, 12, 25,
    50, 100)``."""
    steps = {0 if f == 0 else max(1, int(round(f * episode_length))) for f in DEFAULT_BUDGET_EPISODES}
    return tuple(sorted(steps))


# ----------------------------------------------------------------------- TaskFamily
@dataclasses.dataclass(frozen=True, eq=False)
class TaskFamily:
    """A distribution over one environment's ``EnvParams``, with disjoint fixed splits.

    Attributes:
      name: family name (registry key), e.g. ``"cartpole-physics"``: a non-empty string.
      env_id: any id :func:`metadqn_jax.envs.make_env` accepts.
      ranges: ``field -> (low, high)``: the field is drawn uniformly from ``[low, high]``
        (an int field, e.g. ``max_steps_in_episode``, uniformly from the integers in it).
        Stored as read-only ``field -> (float, float)``.
      choices: ``field -> (v1, v2, ...)``: the field is drawn uniformly from these values.
      sample_fn: optional ``fn(key, n) -> {field: array [n]}`` for tasks that need a custom
        (e.g. joint) distribution; its fields must not also be in ``ranges`` / ``choices``.
      base_params: the values of every non-varying field (default: the env's defaults).
      derive: optional ``fn(EnvParams) -> EnvParams`` on one task recomputing derived fields,
        applied after sampling (after the environment's own derived fields, e.g. CartPole's).
      description: free text shown by :meth:`describe`.
      gamma: recommended DQN discount for this family, in ``(0, 1]``.
      meta_defaults: recommended meta-training settings, ``{field: value}`` for ``MetaConfig``
        fields (all but ``family``, ``algorithm`` and ``gamma``), plus, under an algorithm's
        name, a mapping of that algorithm's own recommendations (``{"cavia": {"model_loss":
        1.0}}``; they win over the family-wide ones for that algorithm: :meth:`meta_defaults_for`);
        a ``MetaConfig`` that is not given such a field takes the family's value (one given
        explicitly wins: :func:`metadqn_jax.meta.config.resolve`), and checks the names and
        values (:func:`metadqn_jax.meta.config.check_recommendations`).
      split_seed: seed of the deterministic task pools.
      num_train, num_val, num_test: pool sizes (distinct tasks per split, all > 0).
      sample_desc: how ``sample_fn`` varies tasks, for :meth:`describe`.
      budgets: the family's few-shot adaptation budgets in env steps (what ``metadqn
        train/evaluate`` and ``benchmarks/few_shot.py`` use when no budgets are given);
        ``None``: :func:`default_budgets` of the episode length (``(0, 1/20, 1/5, 1/2, 1, 2,
        4)`` episodes). Read them with :attr:`few_shot_budgets`.

    Raises:
      ValueError: on construction, from the first failing ``validate_*`` check (or
        :func:`metadqn_jax.envs.make_env` for an unknown ``env_id``).

    Equality and hashing are by identity (a family can be a static ``jit`` argument);
    use ``dataclasses.replace(family, split_seed=1)`` for a variant.
    """

    name: str
    env_id: str
    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    _: dataclasses.KW_ONLY
    choices: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    sample_fn: SampleFn | None = None
    base_params: EnvParams | None = None
    derive: Callable[[EnvParams], EnvParams] | None = None
    description: str = ""
    gamma: float = 0.99
    meta_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    split_seed: int = 0
    num_train: int = 1024
    num_val: int = 128
    num_test: int = 128
    sample_desc: str = ""
    budgets: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        name = self.name
        validate_name(name)
        validate_env_id(name, self.env_id)
        env, default = envs.make_env(self.env_id)  # ValueError naming the unknown id
        meta_defaults = validate_meta_defaults(name, self.meta_defaults)
        base = validate_base_params(name, self.env_id, self.base_params, default)
        dtypes = validate_numeric_fields(name, self.env_id, default)
        hook = envs.derived_fields(default)
        fields = EnvFields(self.env_id, default, base, dtypes, hook.formulas if hook else {})
        ranges = validate_ranges(name, fields, self.ranges)
        choices = validate_choices(name, fields, self.choices, ranges)
        validate_pool_sizes(name, self.num_train, self.num_val, self.num_test)
        validate_split_seed(name, self.split_seed)
        validate_gamma(name, self.gamma)
        validate_derive(name, self.derive)
        budgets = validate_budgets(name, self.budgets)
        sample_fields = validate_sample_fn(name, fields, self.sample_fn, ranges, choices)
        validate_support(name, fields, ranges, choices, self.sample_fn, self.total_tasks)

        space = pools.TaskSpace(base, tuple(dtypes), dtypes, ranges, choices, self.sample_fn,
                                hook.derive if hook else None, self.derive)
        normalised = dict(meta_defaults=meta_defaults, base_params=base, ranges=ranges, choices=choices,
                          budgets=budgets, _env=env, _space=space, _sample_fields=sample_fields)
        for attr, value in normalised.items():  # frozen: the validated, normalised values
            object.__setattr__(self, attr, value)

    # -------------------------------------------------------------------- accessors
    def meta_defaults_for(self, algorithm: str) -> dict[str, Any]:
        """The family's recommendations for ``algorithm``: the family-wide fields of
        ``meta_defaults``, updated with that algorithm's own entry (``meta_defaults[algorithm]``)."""
        own = self.meta_defaults.get(algorithm)
        return {**self._family_wide_defaults(), **(own if isinstance(own, Mapping) else {})}

    def _family_wide_defaults(self) -> dict[str, Any]:
        """``meta_defaults`` without the algorithms' own entries."""
        return {k: v for k, v in self.meta_defaults.items() if not isinstance(v, Mapping)}

    @property
    def varying_fields(self) -> tuple[str, ...]:
        """Fields that vary across tasks (ranges, choices, then sample_fn outputs)."""
        return (*self.ranges, *self.choices, *self._sample_fields)

    @functools.cached_property
    def profile(self) -> FamilyProfile:
        """The family's scales from a random-action rollout in its training tasks
        (:func:`metadqn_jax.tasks.profile.profile`; measured on first use, then cached): the
        numbers :mod:`metadqn_jax.meta.derive` turns into default settings."""
        return measure_profile(self)

    @property
    def total_tasks(self) -> int:
        """``num_train + num_val + num_test``."""
        return int(self.num_train + self.num_val + self.num_test)

    @property
    def episode_length(self) -> int:
        """``base_params.max_steps_in_episode``."""
        return int(self.base_params.max_steps_in_episode)

    @property
    def few_shot_budgets(self) -> tuple[int, ...]:
        """The adaptation budgets in env steps: ``budgets``, else :func:`default_budgets` of
        :attr:`episode_length`."""
        return self.budgets if self.budgets is not None else default_budgets(self.episode_length)

    def num_tasks(self, split: str = "train") -> int:
        """Pool size of ``split`` (``"train"``, ``"val"``/``"validation"``, ``"test"``)."""
        return int(getattr(self, {"train": "num_train", "val": "num_val", "test": "num_test"}[
            canonical_split(split)
        ]))

    def env(self) -> tuple[Any, EnvParams]:
        """``(env, base_params)``: the (cached) environment and the family's base task with
        derived fields recomputed. The same env object is returned every call, so jitted
        ``env.step`` / ``env.reset`` are compiled once."""
        return self._env, pools.derive_task(self._space, self.base_params)

    def describe_varying(self) -> str:
        """One line: the varying fields and their distributions, e.g.
        ``"length~U[0.4, 0.6], force_sign in {-1, 1}"`` (``"no varying fields"`` if none)."""
        parts = [f"{f}~U[{_fmt(lo)}, {_fmt(hi)}]" for f, (lo, hi) in self.ranges.items()]
        parts += [
            f"{f} in {{{', '.join(_fmt(float(v)) for v in vals)}}}"
            for f, vals in self.choices.items()
        ]
        if self._sample_fields:
            parts.append(self.sample_desc or f"{', '.join(self._sample_fields)} ~ sample_fn")
        return " ".join((", ".join(parts) if parts else "no varying fields").split())

    def describe(self) -> str:
        """One line: name, environment, varying fields and their distributions."""
        line = (
            f"{self.name}: {self.env_id}; {self.describe_varying()}; gamma {self.gamma:g}, "
            f"{self.episode_length} steps, splits {self.num_train}/{self.num_val}/{self.num_test}"
        )
        wide = self._family_wide_defaults()
        if wide:
            line += "; meta " + ", ".join(f"{k}={v}" for k, v in wide.items())
        for algorithm, own in self.meta_defaults.items():
            if isinstance(own, Mapping) and own:
                line += f"; {algorithm} " + ", ".join(f"{k}={v}" for k, v in own.items())
        if self.description:
            line += f" - {self.description}"
        return " ".join(line.split())  # one line, whatever the description holds

    # ------------------------------------------------------------------ definition
    def to_spec(self, module: str | None = None) -> dict[str, Any]:
        """The family's definition as plain data (YAML / JSON types), in :data:`~metadqn_jax.tasks.spec.SPEC_KEYS` order
        (:func:`metadqn_jax.tasks.spec.spec_of`). ``TaskFamily.from_spec(spec)`` rebuilds a family
        without code; for one with code pass the callables (``from_spec(spec, sample_fn=...,
        derive=...)``)."""
        return spec_of(self, module)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, sample_fn: SampleFn | None = None,
                  derive: Callable[[EnvParams], EnvParams] | None = None) -> TaskFamily:
        """The family a :meth:`to_spec` mapping (or a hand-written one: only ``name`` and
        ``env_id`` are required) defines (:func:`metadqn_jax.tasks.spec.family_arguments`).

        Raises:
          ValueError: an unknown key, a missing callable (naming the module to import), an
            unknown ``base_params`` field, or the first failing ``validate_*`` check.
        """
        return cls(**family_arguments(spec, sample_fn, derive))

    # --------------------------------------------------------------------- sampling
    def tasks(self, split: str = "train") -> EnvParams:
        """The whole pool of ``split``: EnvParams with every leaf ``[num_tasks(split), ...]``
        (floats float32, ints int32); the same values on every call and in every process."""
        pool = self._pools[canonical_split(split)]
        return jax.tree.map(jnp.asarray, pool)

    def sample(
        self, key: jax.Array, n: int, split: str = "train", *, replace: bool = True
    ) -> EnvParams:
        """``n`` tasks drawn uniformly from the pool of ``split``.

        Pure JAX (a random index into a constant pool): callable inside ``jit`` / ``vmap``
        with static ``n``, ``split`` and ``replace``.

        Args:
          key: PRNG key.
          n: number of tasks (> 0; ``<= num_tasks(split)`` when ``replace=False``).
          split: ``"train"``, ``"val"`` (or ``"validation"``) or ``"test"``.
          replace: draw with replacement (default) or ``n`` distinct tasks.

        Returns:
          EnvParams with every leaf ``[n, ...]`` (floats float32, ints int32).
        """
        split = canonical_split(split)
        size = self.num_tasks(split)
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"sample: n must be a static int > 0, got {n!r}")
        if replace:
            idx = jax.random.randint(key, (n,), 0, size)
        else:
            if n > size:
                raise ValueError(
                    f"sample: cannot draw {n} distinct tasks from the {size} {split} tasks "
                    f"of {self.name!r}"
                )
            idx = jax.random.choice(key, size, (n,), replace=False)
        return jax.tree.map(lambda x: jnp.asarray(x)[idx], self._pools[split])

    @functools.cached_property
    def _pools(self) -> dict[str, EnvParams]:
        """Per split, the pool of distinct tasks (numpy leaves ``[num_tasks(split), ...]``)."""
        sizes = {split: self.num_tasks(split) for split in SPLITS}
        with jax.ensure_compile_time_eval():  # concrete even if first used inside jit
            return pools.build_pools(self._space, sizes, self.split_seed, self.name)
