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

Definitions. :meth:`TaskFamily.to_spec` gives a family's full definition as plain data (the
``family:`` block of a YAML file and of a run folder's ``config.yaml``) and
:meth:`TaskFamily.from_spec` rebuilds it; Python code (``sample_fn`` / ``derive``) cannot be
written down, so its definition names the module that registers it
(:mod:`metadqn_jax.runs.families` imports it). Budgets: ``TaskFamily.budgets`` (env steps;
default :func:`default_budgets`, in units of the episode length).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import envs
from metadqn_jax.core.errors import ConfigError
from metadqn_jax.tasks import pools
from metadqn_jax.tasks.pools import SPLITS, EnvParams, SampleFn, canonical_split

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


# the keys of a family definition (TaskFamily.to_spec / from_spec), in the order written
SPEC_KEYS: tuple[str, ...] = ("name", "env_id", "description", "ranges", "choices", "base_params", "gamma",
                              "meta_defaults", "budgets", "split_seed", "num_train", "num_val", "num_test",
                              "sample_desc", "code", "module")


def _plain_value(x: Any) -> Any:
    """A scalar or array field value as plain YAML data (Python number / bool, or a list)."""
    if isinstance(x, (str, bool, int, float)) or x is None:
        return x
    a = np.asarray(x)
    return a.item() if a.ndim == 0 else a.tolist()


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return a is b


def _like(value: Any, ref: Any) -> Any:
    """``value`` (plain data) in the form of the default field value ``ref`` (an array field
    becomes an array of ``ref``'s dtype; a scalar stays a Python scalar)."""
    if np.ndim(ref) > 0 and isinstance(value, (list, tuple)):
        return jnp.asarray(value, dtype=jnp.asarray(ref).dtype)
    return value


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
    """``meta_defaults`` is a mapping of setting names to values, where a value that is itself a
    mapping (of setting names to values) holds one learner's own recommendations under that
    learner's name (``{"tau": 0.99, "cavia": {"model_loss": 1.0}}``); returns it as a dict (a
    learner's entry as a dict too).

    Only the shape is checked here: which names and values are valid is the meta-learning
    layer's to say (:func:`metadqn_jax.meta.config.check_recommendations`, run by every
    ``MetaConfig`` of the family and when a family is read from a file).

    Raises:
      ConfigError: not a mapping, a name that is not a string, or a learner's entry whose
        names are not strings.
    """
    if not isinstance(meta_defaults, Mapping):
        raise ConfigError(f"family {name!r}: meta_defaults must be a mapping field -> value")
    out = dict(meta_defaults)
    for key, value in meta_defaults.items():
        if not isinstance(key, str):
            raise ConfigError(f"family {name!r}: meta_defaults field {key!r} is not a name (a string)")
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise ConfigError(f"family {name!r}: meta_defaults.{key} field {bad[0]!r} is not a name (a string)")
            out[key] = dict(value)
    return out


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


def validate_budgets(name: str, budgets: Any) -> tuple[int, ...] | None:
    """``budgets`` is ``None`` (derived from the episode length) or a non-empty sequence of
    distinct ints >= 0 (env steps); returns it sorted, as a tuple."""
    if budgets is None:
        return None
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Sequence) or len(budgets) == 0 \
            or not all(_is_int(b) and b >= 0 for b in budgets):
        raise ValueError(f"family {name!r}: budgets must be a non-empty list of env-step counts (ints >= 0), "
                         f"got {budgets!r}")
    if len(set(int(b) for b in budgets)) != len(budgets):
        raise ValueError(f"family {name!r}: budgets must be distinct, got {list(budgets)!r}")
    return tuple(sorted(int(b) for b in budgets))


# the adaptation budgets of a family that gives none, in units of its episode length L:
# 0 (the unadapted init), L/20, L/5, L/2, one episode, two and four episodes
DEFAULT_BUDGET_EPISODES: tuple[float, ...] = (0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 4.0)


def default_budgets(episode_length: int) -> tuple[int, ...]:
    """:data:`DEFAULT_BUDGET_EPISODES` times ``episode_length`` in env steps, rounded (a
    non-zero budget is at least 1 step), distinct and sorted; e.g. ``500 -> (0, 25, 100, 250,
    500, 1000, 2000)``, ``200 -> (0, 10, 40, 100, 200, 400, 800)``, ``25 -> (0, 1, 5, 12, 25,
    50, 100)``."""
    steps = {0 if f == 0 else max(1, int(round(f * episode_length))) for f in DEFAULT_BUDGET_EPISODES}
    return tuple(sorted(steps))


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
        """The family's definition as plain data (YAML / JSON types), in :data:`SPEC_KEYS` order.

        Every field is written (``budgets`` resolved: :attr:`few_shot_budgets`; ``base_params``
        as the fields that differ from the environment's defaults, derived fields left out).
        A family with Python code (``sample_fn`` / ``derive``) also gets ``code`` (which of the
        two) and ``module``: the module that registers it (``module``, else the module that
        defines the code, unless that is ``__main__``), so that another process can import it.
        ``TaskFamily.from_spec(spec)`` rebuilds a family without code; for one with code pass
        the callables (``from_spec(spec, sample_fn=..., derive=...)``).
        """
        _, default = envs.make_env(self.env_id)
        hook = envs.derived_fields(default)
        derived = hook.formulas if hook else {}
        base = {}
        for f in dataclasses.fields(default):
            value, ref = getattr(self.base_params, f.name), getattr(default, f.name)
            if f.name in derived or _same_value(value, ref):
                continue
            base[f.name] = _plain_value(value)
        spec: dict[str, Any] = {
            "name": self.name, "env_id": self.env_id, "description": self.description,
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ranges.items()},
            "choices": {k: [_plain_value(v) for v in vals] for k, vals in self.choices.items()},
            "base_params": base, "gamma": float(self.gamma),
            "meta_defaults": {k: ({f: _plain_value(x) for f, x in v.items()} if isinstance(v, Mapping)
                                  else _plain_value(v)) for k, v in self.meta_defaults.items()},
            "budgets": list(self.few_shot_budgets), "split_seed": int(self.split_seed),
            "num_train": int(self.num_train), "num_val": int(self.num_val), "num_test": int(self.num_test),
        }
        code = [n for n in ("sample_fn", "derive") if getattr(self, n) is not None]
        if self.sample_desc:
            spec["sample_desc"] = self.sample_desc
        if code:
            spec["code"] = code
            if module is None:
                mods = [getattr(getattr(self, n), "__module__", None) for n in code]
                module = next((m for m in mods if m and m != "__main__"), None)
            if module is not None:
                spec["module"] = module
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, sample_fn: SampleFn | None = None,
                  derive: Callable[[EnvParams], EnvParams] | None = None) -> TaskFamily:
        """The family a :meth:`to_spec` mapping (or a hand-written one: only ``name`` and
        ``env_id`` are required, every other key of :data:`SPEC_KEYS` takes its default)
        defines.

        ``base_params`` is a mapping of the fields that differ from the environment's defaults.
        A spec whose ``code`` names ``sample_fn`` / ``derive`` needs those callables passed in.

        Raises:
          ValueError: an unknown key (with the closest known one), a missing callable (naming
            the module to import), an unknown ``base_params`` field, or the first failing
            ``validate_*`` check.
        """
        if not isinstance(spec, Mapping):
            raise ValueError(f"a family definition must be a mapping of {', '.join(SPEC_KEYS)}, "
                             f"got {type(spec).__name__}")
        name = spec.get("name")
        label = f"family {name!r}" if isinstance(name, str) else "family"
        unknown = [k for k in spec if k not in SPEC_KEYS]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), SPEC_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{label}: unknown field {unknown[0]!r}{hint} (known: {', '.join(SPEC_KEYS)})")
        for key in ("name", "env_id"):
            if key not in spec:
                raise ValueError(f"{label}: the definition needs {key!r}")
        validate_name(name)
        validate_env_id(name, spec["env_id"])
        code = spec.get("code") or []
        if isinstance(code, str) or not isinstance(code, Sequence) or \
                not set(code) <= {"sample_fn", "derive"}:
            raise ValueError(f"{label}: code must be a list from sample_fn, derive, got {code!r}")
        given = {"sample_fn": sample_fn, "derive": derive}
        for part in code:
            if given[part] is None:
                module = spec.get("module")
                where = (f"import the module that registers it ({module})" if module else
                         "import the module that registers it (the definition does not name one)")
                raise ValueError(f"{label}: its {part} is Python code, which a definition cannot hold; {where}")
        _, default = envs.make_env(spec["env_id"])
        base = spec.get("base_params")
        if base is None:
            base_params = None
        elif isinstance(base, Mapping):
            names = [f.name for f in dataclasses.fields(default)]
            bad = [k for k in base if k not in names]
            if bad:
                raise ValueError(f"{label}: base_params field {bad[0]!r} is not a field of {spec['env_id']}'s "
                                 f"{type(default).__name__}; valid fields: {', '.join(names)}")
            base_params = dataclasses.replace(
                default, **{k: _like(v, getattr(default, k)) for k, v in base.items()})
        else:
            raise ValueError(f"{label}: base_params must be a mapping field -> value, got {base!r}")
        # a key given as null (YAML "description:") takes its default
        kwargs = {k: spec[k] for k in SPEC_KEYS
                  if spec.get(k) is not None and k not in ("base_params", "code", "module")}
        if isinstance(kwargs.get("budgets"), list):
            kwargs["budgets"] = tuple(kwargs["budgets"])
        return cls(**kwargs, base_params=base_params,
                   sample_fn=sample_fn if "sample_fn" in code else None,
                   derive=derive if "derive" in code else None)

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
