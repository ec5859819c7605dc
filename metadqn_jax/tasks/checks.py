"""The named checks a :class:`~metadqn_jax.tasks.family.TaskFamily` runs when it is built
(flashbax-style ``validate_*`` functions), each raising one ``ValueError`` that names the family
and the field. Which meta-training settings a family may recommend is the meta layer's to check
(:func:`metadqn_jax.meta.config.check_recommendations`); here only their shape.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from metadqn_jax.core.errors import ConfigError
from metadqn_jax.tasks import pools
from metadqn_jax.tasks.pools import EnvParams

__all__ = ["EnvFields", "validate_name", "validate_env_id", "validate_meta_defaults", "validate_base_params",
           "validate_numeric_fields", "validate_field", "validate_ranges", "validate_choices", "validate_pool_sizes",
           "validate_split_seed", "validate_gamma", "validate_derive", "validate_budgets", "validate_sample_fn",
           "validate_support"]


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
