"""Configuration layers as YAML and text: reading and writing files, ``--set`` overrides, and
the coercion of YAML / command-line values to the annotated field types.

A *layer* is a mapping ``{section: {field: value}}`` (see :mod:`metadqn_jax.app.runconfig`).
Every error is one :class:`~metadqn_jax.core.validate.ConfigError` (a ``ValueError``) naming
the file or the qualified field.

>>> parse_overrides(["meta.hidden=[32, 32]", "hparams.tau=0.9"])
{'meta': {'hidden': [32, 32]}, 'hparams': {'tau': 0.9}}
>>> coerce("[8, 8]", tuple[int, ...], "meta.hidden")
(8, 8)
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from metadqn_jax.core.validate import ConfigError

__all__ = ["plain", "coerce", "load_yaml", "dump_yaml", "parse_overrides", "merge"]


def plain(value: Any) -> Any:
    """A YAML-safe plain value (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):  # pragma: no cover
            return value
    if isinstance(value, float) and math.isinf(value):
        return value
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Converts a YAML / command-line value to the annotated type ``tp``.

    Args:
      value: a YAML value or a command-line string (``"[8, 8]"``, ``"1e-3"``, ``"null"``).
      tp: the field's annotation: ``int``, ``float``, ``bool``, ``str``, ``tuple[T, ...]``,
        a fixed-length ``tuple[A, B]`` or a union with ``None``; other annotations pass
        ``value`` through.
      name: the qualified field name, for the error message.

    Returns:
      The value as ``tp`` (lists become tuples; integral floats become ints).

    Raises:
      ConfigError: ``"<name> must be <kind>, got <value>"``.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: cannot parse {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            items = [v.strip() for v in value.strip().strip("[]()").split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], name) for v in items)
        if len(items) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} values, got {value!r}")
        return tuple(coerce(v, a, name) for v, a in zip(items, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", "")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            return float(str(value).replace("_", "")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value  # pragma: no cover - Any and other annotations pass through


# --------------------------------------------------------------------------- files
def load_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a YAML configuration file.

    Returns:
      Its mapping of sections (``{}`` for an empty file).

    Raises:
      ConfigError: the file is missing or unreadable, is not YAML, or is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def dump_yaml(cfg: Any, path: str | Path) -> Path:
    """Writes ``cfg.to_yaml()`` to ``path`` atomically (temp file + rename); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(cfg.to_yaml())
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------- layers
def parse_overrides(items: Sequence[str], schema: Any = None) -> dict[str, dict[str, Any]]:
    """``["section.field=value", ...]`` -> ``{section: {field: value}}``.

    Values are parsed as YAML (``[32, 32]``, ``0.1``, ``true``, ``null``). With ``schema`` (a
    command configuration class, :class:`metadqn_jax.app.runconfig.TrainConfig` and the like) a
    bare ``field=value`` is accepted when exactly one section has that field.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if "." in key:
            sec, name = key.split(".", 1)
        elif schema is not None:
            owners = schema.field_section(key)
            if len(owners) != 1:
                where = f"it is in {', '.join(owners)}" if owners else "no section has it"
                raise ConfigError(f"--set {key}: qualify the field as section.{key} ({where})")
            sec, name = owners[0], key
        else:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        out.setdefault(sec, {})[name] = value
    return out


def merge(*layers: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Merges layers of ``{section: {field: value}}`` (later wins)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for sec, values in (layer or {}).items():
            if sec == "command":
                out["command"] = values
                continue
            out.setdefault(sec, {}).update(values or {})
    return out
