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
broadcast), floats are float32 and ints int32, so a batch of tasks is one ``jax.vmap``::

    import jax
    from metadqn_jax.tasks import TaskFamily, get_family

    family = TaskFamily("my-pole", "CartPole-v1", ranges={"length": (0.3, 1.2)})
    env, base_params = family.env()
    params = family.sample(jax.random.key(0), 8)           # EnvParams, leaves [8]
    keys = jax.random.split(jax.random.key(1), 8)
    obs, state = jax.vmap(env.reset)(keys, params)          # obs [8, 4]
    actions = jax.numpy.zeros(8, jax.numpy.int32)
    obs, state, reward, terminated, truncated, info = jax.vmap(env.step)(
        keys, state, actions, params)
    print(family.describe())
    print(get_family("pointnav-rotated").describe())

``sample`` is pure JAX (an on-device random index into a constant pool), so it can be called
inside ``jax.jit`` with static ``n`` and ``split``. Built-in families: :mod:`.builtin`, registered
in :mod:`.registry` (``list_families()``, ``get_family(name)``, ``register_family``).

Validation is a sequence of named checks (``validate_*`` below), each raising ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import envs
from metadqn_jax.tasks import pools
from metadqn_jax.tasks.pools import SPLITS, EnvParams, SampleFn, canonical_split

# The names of the MetaConfig fields (metadqn_jax.meta) a family may recommend values for in
# TaskFamily.meta_defaults. This lower layer names an upper layer's fields on purpose, in this
# one place only (validate_meta_defaults); tasks never imports meta. The meta package checks
# that it resolves exactly these fields (tests/test_meta.py).
FAMILY_META_FIELDS = ("task_lifetime", "query_source", "buffer_size")


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


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


# the largest magnitudes the canonical dtypes hold: bounds beyond them would give inf / wrapped tasks
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT32 = np.iinfo(np.int32)


def _representable(kind: str, x: float) -> bool:
    """``x`` fits the canonical dtype of a field of ``kind`` (float32 finite / int32 range)."""
    if kind == "i":
        return _INT32.min <= x <= _INT32.max
    if kind == "f":
        return abs(x) <= _FLOAT32_MAX
    return True


# ------------------------------------------------------------------------ validation
def validate_name(name: Any) -> None:
    """``name`` (the registry key, shown in tables and run folder names) is a non-empty string
    without surrounding whitespace."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"TaskFamily: name must be a non-empty string without surrounding whitespace, "
                         f"got {name!r}")


def validate_env_id(name: str, env_id: Any) -> None:
    """``env_id`` is a non-empty string (that it names an environment, make_env checks)."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"family {name!r}: env_id must be a non-empty environment id string, got {env_id!r}")


class EnvFields(NamedTuple):
    """The environment side of a family, as its checks see it."""

    env_id: str
    # the env's default params; their class names the params type in messages
    default: EnvParams
    # the family's base task (an instance of the default's class)
    base: EnvParams
    # numeric pytree fields, in declaration order -> canonical dtype (float32 / int32 / bool)
    dtypes: Mapping[str, np.dtype]
    # fields the env's derived-field hook recomputes -> formula
    derived: Mapping[str, str]


def validate_meta_defaults(name: str, meta_defaults: Any) -> dict[str, Any]:
    """``meta_defaults`` is a mapping over :data:`FAMILY_META_FIELDS`; returns it as a dict.

    The one check that knows about an upper layer (the MetaConfig field names); the values
    are checked by MetaConfig like values the user gave.
    """
    if not isinstance(meta_defaults, Mapping):
        raise ValueError(f"family {name!r}: meta_defaults must be a mapping field -> value")
    bad = [k for k in meta_defaults if k not in FAMILY_META_FIELDS]
    if bad:
        raise ValueError(f"family {name!r}: meta_defaults field(s) {bad} cannot be set by a family; "
                         f"allowed: {', '.join(FAMILY_META_FIELDS)}")
    return dict(meta_defaults)


def validate_base_params(name: str, env_id: str, base_params: Any, default: EnvParams) -> EnvParams:
    """``base_params`` (``None``: the env's defaults) is an instance of the env's params class."""
    base = default if base_params is None else base_params
    if not isinstance(base, type(default)):
        raise ValueError(
            f"family {name!r}: base_params is a {type(base).__name__}, but "
            f"{env_id} needs a {type(default).__name__}"
        )
    return base


def validate_numeric_fields(name: str, env_id: str, default: EnvParams) -> dict[str, np.dtype]:
    """Every pytree field of the params class is numeric; returns ``field -> canonical dtype``."""
    dtypes: dict[str, np.dtype] = {}
    for f in dataclasses.fields(default):
        if not f.metadata.get("pytree_node", True):
            continue
        dt = pools.canonical_dtype(getattr(default, f.name))
        if dt is None:
            raise ValueError(
                f"family {name!r}: field {f.name!r} of {env_id} is not numeric; "
                "TaskFamily can only batch numeric EnvParams"
            )
        dtypes[f.name] = dt
    return dtypes


def validate_field(name: str, env: EnvFields, field: Any, where: str) -> None:
    """``field`` (listed in ``where``) is a scalar, non-derived field of the params class."""
    if not isinstance(field, str) or field not in env.dtypes:
        raise ValueError(
            f"family {name!r}: {where} field {field!r} is not a field of "
            f"{env.env_id}'s {type(env.default).__name__}; valid fields: {', '.join(env.dtypes)}"
        )
    if field in env.derived:
        raise ValueError(
            f"family {name!r}: {where} field {field!r} is derived "
            f"({field} = {env.derived[field]}) and recomputed automatically; vary its "
            "inputs instead"
        )
    if np.ndim(getattr(env.base, field)) != 0:
        raise ValueError(
            f"family {name!r}: {where} field {field!r} is not a scalar; only "
            "scalar fields can vary"
        )


def validate_ranges(name: str, env: EnvFields, ranges: Any) -> Mapping[str, tuple[float, float]]:
    """Each ``field -> (low, high)`` is a finite numeric pair, ``low <= high``, bounds that fit
    the field's dtype (float32: ``|x| <= 3.4e38``; int32), integer bounds for int fields, no bool
    fields; returns ``field -> (float low, float high)`` (read-only)."""
    if not isinstance(ranges, Mapping):
        raise ValueError(f"family {name!r}: ranges must be a mapping field -> (low, high)")
    checked: dict[str, tuple[float, float]] = {}
    for field, bounds in ranges.items():
        validate_field(name, env, field, "ranges")
        if not isinstance(bounds, Sequence) or len(bounds) != 2 or not all(_is_number(b) for b in bounds):
            raise ValueError(
                f"family {name!r}: ranges[{field!r}] must be a pair (low, high) of "
                f"numbers, got {bounds!r}"
            )
        low, high = float(bounds[0]), float(bounds[1])
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"family {name!r}: ranges[{field!r}] = ({low}, {high}) is not finite")
        if low > high:
            raise ValueError(f"family {name!r}: ranges[{field!r}] has low {low} > high {high}")
        kind = env.dtypes[field].kind
        if not (_representable(kind, low) and _representable(kind, high)):
            raise ValueError(
                f"family {name!r}: ranges[{field!r}] = ({low:g}, {high:g}) does not fit the field's "
                f"{env.dtypes[field].name} (tasks would hold inf or wrapped values)"
            )
        if kind == "b":
            raise ValueError(f"family {name!r}: field {field!r} is boolean; vary it with choices")
        if kind == "i" and not (low.is_integer() and high.is_integer()):
            raise ValueError(
                f"family {name!r}: field {field!r} is an integer field; "
                f"ranges[{field!r}] = ({low}, {high}) needs integer bounds"
            )
        checked[field] = (low, high)
    return types.MappingProxyType(checked)


def validate_choices(
    name: str, env: EnvFields, choices: Any, ranges: Mapping[str, Any]
) -> Mapping[str, tuple[Any, ...]]:
    """Each ``field -> values`` is a non-empty sequence of finite numbers that fit the field's
    dtype (integers for int fields) for a field not in ``ranges``; returns
    ``field -> tuple(values)`` (read-only)."""
    if not isinstance(choices, Mapping):
        raise ValueError(f"family {name!r}: choices must be a mapping field -> values")
    checked: dict[str, tuple[Any, ...]] = {}
    for field, values in choices.items():
        validate_field(name, env, field, "choices")
        if field in ranges:
            raise ValueError(f"family {name!r}: field {field!r} is in both ranges and choices")
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise ValueError(f"family {name!r}: choices[{field!r}] must be a sequence of values")
        if len(values) == 0:
            raise ValueError(f"family {name!r}: choices[{field!r}] is empty")
        if not all(_is_number(v) or isinstance(v, bool) for v in values):
            raise ValueError(f"family {name!r}: choices[{field!r}] must hold numbers, got {values!r}")
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f"family {name!r}: choices[{field!r}] = {tuple(values)!r} is not finite")
        if not all(_representable(env.dtypes[field].kind, float(v)) for v in values):
            raise ValueError(
                f"family {name!r}: choices[{field!r}] = {tuple(values)!r} does not fit the field's "
                f"{env.dtypes[field].name} (tasks would hold inf or wrapped values)"
            )
        if env.dtypes[field].kind == "i" and not all(float(v).is_integer() for v in values):
            raise ValueError(
                f"family {name!r}: field {field!r} is an integer field; "
                f"choices[{field!r}] = {tuple(values)!r} must be integers"
            )
        checked[field] = tuple(values)
    return types.MappingProxyType(checked)


def validate_pool_sizes(name: str, num_train: Any, num_val: Any, num_test: Any) -> None:
    """Every pool size is an int > 0."""
    for attr, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"family {name!r}: {attr} must be an int > 0, got {value!r}")


def validate_split_seed(name: str, split_seed: Any) -> None:
    """``split_seed`` is an int."""
    if not _is_int(split_seed):
        raise ValueError(f"family {name!r}: split_seed must be an int, got {split_seed!r}")


def validate_gamma(name: str, gamma: Any) -> None:
    """``gamma`` is a number in ``(0, 1]``."""
    if not (_is_number(gamma) and 0.0 < float(gamma) <= 1.0):
        raise ValueError(f"family {name!r}: gamma must be in (0, 1], got {gamma!r}")


def validate_derive(name: str, derive: Any) -> None:
    """``derive`` is ``None`` or callable."""
    if derive is not None and not callable(derive):
        raise ValueError(f"family {name!r}: derive must be callable")


def validate_sample_fn(
    name: str, env: EnvFields, sample_fn: Any, ranges: Mapping[str, Any], choices: Mapping[str, Any]
) -> tuple[str, ...]:
    """``sample_fn(key, n)`` returns a non-empty ``{field: [n]}`` over valid fields not in
    ``ranges`` / ``choices`` (checked on abstract values: no compute); returns its fields."""
    if sample_fn is None:
        return ()
    if not callable(sample_fn):
        raise ValueError(f"family {name!r}: sample_fn must be callable")
    out = jax.eval_shape(lambda: sample_fn(jax.random.key(0), 3))
    if not isinstance(out, Mapping) or not out:
        raise ValueError(
            f"family {name!r}: sample_fn(key, n) must return a non-empty dict field -> array [n]"
        )
    for field, value in out.items():
        validate_field(name, env, field, "sample_fn")
        if field in ranges or field in choices:
            raise ValueError(
                f"family {name!r}: field {field!r} is produced by sample_fn and "
                "also listed in ranges/choices"
            )
        if getattr(value, "shape", None) != (3,):
            raise ValueError(
                f"family {name!r}: sample_fn(key, n)[{field!r}] must have shape "
                f"[n], got {getattr(value, 'shape', None)}"
            )
    return tuple(out)


def validate_support(
    name: str,
    env: EnvFields,
    ranges: Mapping[str, tuple[float, float]],
    choices: Mapping[str, tuple[Any, ...]],
    sample_fn: Any,
    total_tasks: int,
) -> None:
    """Enough distinct tasks for the disjoint splits (known statically only when every
    varying field is discrete: int ranges and choices, no sample_fn)."""
    if sample_fn is not None or any(env.dtypes[f].kind == "f" for f in ranges):
        return
    support = math.prod(int(hi - lo) + 1 for lo, hi in ranges.values()) * math.prod(
        len({float(v) for v in vals}) for vals in choices.values()
    )
    if support < total_tasks:
        raise ValueError(
            f"family {name!r} has only {support} distinct tasks but its disjoint "
            f"splits need num_train + num_val + num_test = {total_tasks}; lower "
            "the pool sizes or add a continuous range"
        )


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
      meta_defaults: recommended meta-training settings, ``{field: value}`` for the
        ``MetaConfig`` fields in :data:`FAMILY_META_FIELDS`; a ``MetaConfig`` that leaves such
        a field at ``None`` takes the family's value (else the library's default).
      split_seed: seed of the deterministic task pools.
      num_train, num_val, num_test: pool sizes (distinct tasks per split, all > 0).
      sample_desc: how ``sample_fn`` varies tasks, for :meth:`describe`.

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
        sample_fields = validate_sample_fn(name, fields, self.sample_fn, ranges, choices)
        validate_support(name, fields, ranges, choices, self.sample_fn, self.total_tasks)

        space = pools.TaskSpace(base, tuple(dtypes), dtypes, ranges, choices, self.sample_fn,
                                hook.derive if hook else None, self.derive)
        normalised = dict(meta_defaults=meta_defaults, base_params=base, ranges=ranges, choices=choices,
                          _env=env, _space=space, _sample_fields=sample_fields)
        for attr, value in normalised.items():  # frozen: the validated, normalised values
            object.__setattr__(self, attr, value)

    # -------------------------------------------------------------------- accessors
    @property
    def varying_fields(self) -> tuple[str, ...]:
        """Fields that vary across tasks (ranges, choices, then sample_fn outputs)."""
        return (*self.ranges, *self.choices, *self._sample_fields)

    @property
    def total_tasks(self) -> int:
        """``num_train + num_val + num_test``."""
        return int(self.num_train + self.num_val + self.num_test)

    @property
    def episode_length(self) -> int:
        """``base_params.max_steps_in_episode``."""
        return int(self.base_params.max_steps_in_episode)

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
        if self.meta_defaults:
            line += "; meta " + ", ".join(f"{k}={v}" for k, v in self.meta_defaults.items())
        if self.description:
            line += f" - {self.description}"
        return " ".join(line.split())  # one line, whatever the description holds

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
