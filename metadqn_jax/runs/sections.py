"""A command's configuration: named YAML *sections* of frozen, self-validating dataclasses,
resolved from *layers* (:class:`CommandConfig`; the commands' own are in :mod:`.configs`).

On disk (YAML) a configuration is a mapping of sections to fields. Static settings and traced
hyper-parameters live in different sections: ``meta`` / ``dqn`` hold the static settings (shapes,
loop lengths — changing one recompiles), ``hparams`` the defaults of the traced
hyper-parameters (:class:`~metadqn_jax.meta.MetaHParams`, :class:`~metadqn_jax.dqn.DQNHParams` —
changing one never recompiles)::

    command: train
    meta:        {family: pointnav-goal, num_tasks: 32, hidden: [64, 64], ...}
    hparams:     {inner_lr: 0.1, meta_lr: 0.001, gamma: null, ...}
    few_shot:    {budgets: [0, 25, 50, 100, 250, 500], num_tasks: 20, seeds: 3, ...}
    validation:  {every: 500, num_tasks: 32, patience: 0}
    run:         {algorithms: [context], baselines: [pretrained, scratch], seed: 0, ...}

A configuration is resolved from layers ``{section: {field: value}}`` (later wins): the
dataclass defaults, a preset (:mod:`metadqn_jax.app.presets`), a YAML file, command-line flags
and ``--set section.field=value`` overrides (:mod:`.yamlio` reads and parses them). Every error
is one :class:`~metadqn_jax.core.errors.ConfigError` (a ``ValueError``) whose message starts
with the qualified field name, e.g. ``meta.num_tasks must be a positive integer, got 0``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import yaml

from metadqn_jax.core.errors import ConfigError
from metadqn_jax.runs.families import take_family_block
from metadqn_jax.runs.yamlio import coerce, plain

__all__ = ["Section", "CommandConfig", "fields_of"]


@dataclasses.dataclass(frozen=True)
class Section:
    """One YAML section: ``fields`` of the dataclass ``cls`` held in the attribute ``attr``."""

    name: str
    attr: str
    cls: type
    fields: tuple[str, ...]
    doc: str


def fields_of(cls, *, only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """The init fields of the dataclass ``cls``, in declaration order (``only`` these / without ``exclude``)."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if only is not None:
        only = tuple(only)
        names = [n for n in names if n in only]
    return tuple(n for n in names if n not in set(exclude))


class CommandConfig:
    """The machinery of a command configuration: a frozen dataclass whose fields are the
    sections' dataclasses (subclasses declare ``COMMAND``, ``SECTIONS`` and, if the command has a
    task family, ``FAMILY_SECTION``)."""

    COMMAND: ClassVar[str]
    SECTIONS: ClassVar[tuple[Section, ...]]

    # ---- schema
    @classmethod
    def section(cls, name: str) -> Section:
        for s in cls.SECTIONS:
            if s.name == name:
                return s
        raise ConfigError(_unknown("section", name, [s.name for s in cls.SECTIONS], cls.COMMAND))

    @classmethod
    def field_section(cls, field: str) -> list[str]:
        return [s.name for s in cls.SECTIONS if field in s.fields]

    @classmethod
    def defaults(cls) -> dict[str, dict[str, Any]]:
        """The dataclass defaults, as a YAML-ready mapping of sections."""
        out: dict[str, dict[str, Any]] = {}
        for s in cls.SECTIONS:
            fields = {f.name: f for f in dataclasses.fields(s.cls)}
            values = {}
            for name in s.fields:
                f = fields[name]
                if f.default is not dataclasses.MISSING:
                    values[name] = plain(f.default)
                elif f.default_factory is not dataclasses.MISSING:  # pragma: no cover
                    values[name] = plain(f.default_factory())
            out[s.name] = values
        return out

    # ---- resolution
    @classmethod
    def resolve(cls, *layers: Mapping[str, Any] | None):
        """Builds the configuration from layers of ``{section: {field: value}}`` (later wins).

        Values are coerced to the dataclass field types (YAML lists -> tuples, numeric strings
        -> numbers); unknown sections / fields and out-of-range values raise
        :class:`ConfigError` naming the qualified field.
        """
        merged: dict[str, dict[str, Any]] = {}
        for layer in layers:
            if not layer:
                continue
            layer = cls.take_family(layer)
            cls._check_layer(layer)
            for sec, values in layer.items():
                if sec == "command":
                    continue
                merged.setdefault(sec, {}).update(values or {})
        cls._derive(merged)
        return cls._build(merged)

    # the section holding the command's "family" field; a layer's family: block sets it
    FAMILY_SECTION: ClassVar[str | None] = None

    @classmethod
    def take_family(cls, layer: Any, source: str = "the configuration's family: block") -> Any:
        """A layer with a ``family:`` block (a family's definition, as in a run's config.yaml)
        installs it (:func:`metadqn_jax.runs.families.take_family_block`; its errors name
        ``source``) and, unless the layer names a family, chooses it in ``FAMILY_SECTION``;
        returned without the block. Commands without a family keep the block (an unknown
        section)."""
        if cls.FAMILY_SECTION is None or not isinstance(layer, Mapping) or "family" not in layer:
            return layer
        layer, name = take_family_block(layer, source)
        values = layer.get(cls.FAMILY_SECTION)
        if (values is None or isinstance(values, Mapping)) and (values or {}).get("family") is None:
            layer = {**layer, cls.FAMILY_SECTION: {**(values or {}), "family": name}}
        return layer

    @classmethod
    def _check_layer(cls, layer: Mapping[str, Any]) -> None:
        if not isinstance(layer, Mapping):
            raise ConfigError(f"a configuration must be a mapping of sections, got {type(layer).__name__}")
        command = layer.get("command")
        if command is not None and command != cls.COMMAND:
            raise ConfigError(f"command: this configuration is for 'metadqn {command}', not 'metadqn {cls.COMMAND}'")
        for sec, values in layer.items():
            if sec == "command":
                continue
            section = cls.section(sec)
            if values is None:
                continue
            if not isinstance(values, Mapping):
                raise ConfigError(f"{sec} must be a mapping of fields, got {values!r}")
            for name in values:
                if name not in section.fields:
                    raise ConfigError(_unknown("field", f"{sec}.{name}", [f"{sec}.{f}" for f in section.fields]))

    @classmethod
    def _derive(cls, merged: dict[str, dict[str, Any]]) -> None:
        """Fills derived defaults (values not set by any layer)."""

    @classmethod
    def _build(cls, merged: dict[str, dict[str, Any]]):
        kwargs_by_attr: dict[str, tuple[type, dict[str, Any], dict[str, str]]] = {}
        for s in cls.SECTIONS:
            hints = typing.get_type_hints(s.cls)
            values = merged.get(s.name, {})
            entry = kwargs_by_attr.setdefault(s.attr, (s.cls, {}, {}))
            for name, value in values.items():
                entry[1][name] = coerce(value, hints[name], f"{s.name}.{name}")
                entry[2][name] = s.name
        built = {}
        for attr, (klass, kwargs, where) in kwargs_by_attr.items():
            built[attr] = _construct(klass, kwargs, cls._section_of(attr), cls.COMMAND)
        return cls(**built)

    @classmethod
    def _section_of(cls, attr: str) -> dict[str, str]:
        """field name -> section name, for the dataclass held in ``attr``."""
        return {f: s.name for s in cls.SECTIONS if s.attr == attr for f in s.fields}

    # ---- output
    def to_dict(self) -> dict[str, Any]:
        """``{"command": ..., section: {field: value}}`` with plain YAML types."""
        out: dict[str, Any] = {"command": self.COMMAND}
        for s in self.SECTIONS:
            obj = getattr(self, s.attr)
            out[s.name] = {name: plain(getattr(obj, name)) for name in s.fields}
        return out

    def as_layer(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields a section's config was not *given* (``MetaConfig``
        records them): a layer that resolves to this configuration again. ``to_dict()`` as a
        layer would give every field, so a ``MetaConfig`` built for one algorithm would keep that
        algorithm's values when re-targeted to another (a family's per-algorithm
        recommendations, ``TaskFamily.meta_defaults_for``)."""
        out = self.to_dict()
        for s in self.SECTIONS:
            given = getattr(getattr(self, s.attr), "_given", None)
            if given is not None:
                out[s.name] = {name: value for name, value in out[s.name].items() if name in given}
        return out

    def to_yaml(self) -> str:
        """The resolved configuration as commented YAML (loadable with ``--config``)."""
        lines = [f"# metadqn {self.COMMAND}: resolved configuration (load it with --config FILE)",
                 f"command: {self.COMMAND}"]
        data = self.to_dict()
        for s in self.SECTIONS:
            lines.append(f"# {s.doc}")
            lines.append(yaml.safe_dump({s.name: data[s.name]}, sort_keys=False, default_flow_style=None,
                                        width=100).rstrip())
        return "\n".join(lines) + "\n"

    def diff(self, other: CommandConfig, *, ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
        """``[(section.field, self value, other value)]`` for every differing field."""
        ignore = set(ignore)
        a, b = self.to_dict(), other.to_dict()
        out = []
        for s in self.SECTIONS:
            if f"{s.name}.*" in ignore:
                continue
            for name in s.fields:
                key = f"{s.name}.{name}"
                if key in ignore:
                    continue
                if a[s.name][name] != b[s.name][name]:
                    out.append((key, a[s.name][name], b[s.name][name]))
        return out


# ------------------------------------------------------------------------ construction
def _construct(klass: type, kwargs: dict[str, Any], section_of: dict[str, str], command: str):
    """``klass(**kwargs)``; a ValueError is re-raised as one ConfigError with a qualified name."""
    try:
        return klass(**kwargs)
    except ConfigError as e:
        raise ConfigError(_qualify(str(e), section_of)) from None
    except (ValueError, TypeError) as e:
        raise ConfigError(_qualify(str(e), section_of)) from None


_HPARAM_PREFIX = re.compile(r"^(MetaHParams|DQNHParams)\.")
_LEADING_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _qualify(msg: str, section_of: dict[str, str]) -> str:
    """Prefixes the field a validation message starts with by its section."""
    msg = _HPARAM_PREFIX.sub("hparams.", msg)
    m = _LEADING_NAME.match(msg)
    if m is None:
        return msg
    head = m.group(1)
    sections = set(section_of.values())
    if head in sections and m.group(2):  # already qualified
        return msg
    if head in section_of:
        return f"{section_of[head]}.{msg}"
    return msg


def _unknown(kind: str, name: str, known: Sequence[str], command: str | None = None) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f" for 'metadqn {command}'" if command else ""
    return f"{name}: unknown {kind}{where}{hint} (known: {', '.join(known)})"
