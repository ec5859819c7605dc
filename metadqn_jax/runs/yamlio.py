"""Configuration layers as YAML and text: reading and writing files, ``--set`` overrides, and
the coercion of YAML / command-line values to the annotated field types.

A *layer* is a mapping ``{section: {field: value}}`` (see :mod:`metadqn_jax.runs.sections`).
Every error is one :class:`~metadqn_jax.core.errors.ConfigError` (a ``ValueError``) naming
the file or the qualified field. Nothing is accepted silently: a value that is not valid YAML,
a key given twice in one mapping, or a file that is not UTF-8 text is refused (:func:`safe_load`,
:func:`load_yaml`, :func:`parse_overrides`).

>>> parse_overrides(["meta.hidden=[32, 32]", "hparams.tau=0.9"])
{'meta': {'hidden': [32, 32]}, 'hparams': {'tau': 0.9}}
>>> coerce("[8, 8]", tuple[int, ...], "meta.hidden")
(8, 8)
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from metadqn_jax.core.errors import ConfigError

__all__ = ["plain", "coerce", "safe_load", "load_yaml", "parse_overrides"]


# ------------------------------------------------------------------------- YAML text
class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping holds the same key twice (``key``, 1-based ``line`` and ``first_line``)."""

    def __init__(self, key: Any, line: int, first_line: int, mark: Any):
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(None, None, f"duplicate key {key!r} at line {line} (first at line {first_line})", mark)


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML 1.2 forbids it;
    PyYAML keeps the last value). Merge keys (``<<``) keep their usual meaning."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, line, seen[key], key_node.start_mark)
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader raises its own error below
                    continue
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing duplicate keys.

    Raises:
      yaml.YAMLError: ``text`` is not valid YAML, or a mapping in it holds a key twice
        (:class:`DuplicateKeyError`, a ``yaml.YAMLError``).
    """
    return yaml.load(text, Loader=_StrictLoader)


def _yaml_problem(e: yaml.YAMLError, *, where: bool = True) -> str:
    """A one-line description of a YAML error: its problem and (``where``) its 1-based line."""
    if isinstance(e, DuplicateKeyError):
        return f"duplicate key {e.key!r}" + (f" at line {e.line} (first at line {e.first_line})" if where else "")
    problem = getattr(e, "problem", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
    mark = getattr(e, "problem_mark", None) if where else None
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{at}".split())


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
            items = _split_list(value, name)
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


def _split_list(text: str, name: str) -> list[str]:
    """The items of a list written as text: ``"8, 8"``, ``"[8, 8]"`` or ``"(8, 8)"`` (a trailing
    comma is allowed, as in YAML); an unclosed bracket or an empty item is a ConfigError."""
    body = text.strip()
    pairs = {"[": "]", "(": ")"}
    if body[:1] in pairs or body[-1:] in pairs.values():
        if len(body) < 2 or pairs.get(body[0]) != body[-1]:
            raise ConfigError(f"{name} must be a list such as [8, 8], got {text!r} (unbalanced brackets)")
        body = body[1:-1].strip()
    if not body:
        return []
    items = [v.strip() for v in body.split(",")]
    if items[-1] == "" and len(items) > 1:
        items = items[:-1]
    if any(v == "" for v in items):
        raise ConfigError(f"{name} must be a list such as [8, 8], got {text!r} (an empty item)")
    return items


# --------------------------------------------------------------------------- files
def load_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a YAML configuration file.

    Returns:
      Its mapping of sections (``{}`` for an empty file).

    Raises:
      ConfigError: naming the file: it is missing or unreadable, is not UTF-8 text (e.g. a
        binary file), is not valid YAML, holds a key twice in one mapping (naming the key and
        its lines), or is not a mapping.
    """
    path = Path(path)
    name = repr(str(path))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {name} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {name}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {name} is not a UTF-8 text file (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start}); a config file is YAML text") from None
    try:
        data = safe_load(text)
    except yaml.YAMLError as e:
        if isinstance(e, DuplicateKeyError):
            raise ConfigError(f"config file {name}: {_yaml_problem(e)}") from None
        raise ConfigError(f"config file {name} is not valid YAML: {_yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {name} must hold a mapping of sections, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------- layers
def parse_overrides(items: Sequence[str], schema: Any = None) -> dict[str, dict[str, Any]]:
    """``["section.field=value", ...]`` -> ``{section: {field: value}}``.

    Values are parsed as YAML (``[32, 32]``, ``0.1``, ``true``, ``null``). With ``schema`` (a
    command configuration class, :class:`metadqn_jax.runs.configs.TrainConfig` and the like) a
    bare ``field=value`` is accepted when exactly one section has that field.

    Raises:
      ConfigError: an item without ``=``, a value that is not valid YAML (``meta.hidden=[32,``:
        refused, never read as ``[32]``), or a bare field that is in no section / in several.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            hint = "" if isinstance(e, DuplicateKeyError) else "; quote a string that holds YAML syntax"
            raise ConfigError(f"--set {key}: {raw!r} is not a valid YAML value "
                              f"({_yaml_problem(e, where=False)}){hint}") from None
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
