"""A family's definition as plain data (the ``family:`` block of a YAML file and of a run
folder's ``config.yaml``): :func:`spec_of` writes it, :func:`family_arguments` reads it back into
:class:`~metadqn_jax.tasks.family.TaskFamily`'s arguments (``TaskFamily.to_spec`` /
``TaskFamily.from_spec`` call them). Python code (``sample_fn`` / ``derive``) cannot be written
down, so a definition names the module that registers it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from metadqn_jax import envs
from metadqn_jax.tasks.checks import validate_env_id, validate_name
from metadqn_jax.tasks.pools import EnvParams, SampleFn

__all__ = ["SPEC_KEYS", "spec_of", "family_arguments"]

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


def spec_of(family: Any, module: str | None = None) -> dict[str, Any]:
    """The definition of ``family`` (a :class:`~metadqn_jax.tasks.family.TaskFamily`) as plain
    data (YAML / JSON types), in :data:`SPEC_KEYS` order.

    Every field is written (``budgets`` resolved: ``few_shot_budgets``; ``base_params`` as the
    fields that differ from the environment's defaults, derived fields left out). A family with
    Python code (``sample_fn`` / ``derive``) also gets ``code`` (which of the two) and ``module``:
    the module that registers it (``module``, else the module that defines the code, unless that
    is ``__main__``), so that another process can import it.
    """
    _, default = envs.make_env(family.env_id)
    hook = envs.derived_fields(default)
    derived = hook.formulas if hook else {}
    base = {}
    for f in dataclasses.fields(default):
        value, ref = getattr(family.base_params, f.name), getattr(default, f.name)
        if f.name in derived or _same_value(value, ref):
            continue
        base[f.name] = _plain_value(value)
    spec: dict[str, Any] = {
        "name": family.name, "env_id": family.env_id, "description": family.description,
        "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in family.ranges.items()},
        "choices": {k: [_plain_value(v) for v in vals] for k, vals in family.choices.items()},
        "base_params": base, "gamma": float(family.gamma),
        "meta_defaults": {k: ({f: _plain_value(x) for f, x in v.items()} if isinstance(v, Mapping)
                              else _plain_value(v)) for k, v in family.meta_defaults.items()},
        "budgets": list(family.few_shot_budgets), "split_seed": int(family.split_seed),
        "num_train": int(family.num_train), "num_val": int(family.num_val), "num_test": int(family.num_test),
    }
    code = [n for n in ("sample_fn", "derive") if getattr(family, n) is not None]
    if family.sample_desc:
        spec["sample_desc"] = family.sample_desc
    if code:
        spec["code"] = code
        if module is None:
            mods = [getattr(getattr(family, n), "__module__", None) for n in code]
            module = next((m for m in mods if m and m != "__main__"), None)
        if module is not None:
            spec["module"] = module
    return spec


def family_arguments(spec: Mapping[str, Any], sample_fn: SampleFn | None = None,
                     derive: Callable[[EnvParams], EnvParams] | None = None) -> dict[str, Any]:
    """The ``TaskFamily`` keyword arguments a definition (a :func:`spec_of` mapping, or a
    hand-written one: only ``name`` and ``env_id`` are required, every other key of
    :data:`SPEC_KEYS` takes its default) gives.

    ``base_params`` is a mapping of the fields that differ from the environment's defaults. A
    spec whose ``code`` names ``sample_fn`` / ``derive`` needs those callables passed in.

    Raises:
      ValueError: an unknown key (with the closest known one), a missing callable (naming the
        module to import), an unknown ``base_params`` field, a bad name or environment id.
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
    return {**kwargs, "base_params": base_params, "sample_fn": sample_fn if "sample_fn" in code else None,
            "derive": derive if "derive" in code else None}
