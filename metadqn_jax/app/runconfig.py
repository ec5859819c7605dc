"""Command configurations: the frozen config dataclasses of ``metadqn train``, ``dqn`` and
``regress``, their YAML sections, and their resolution from layers.

A command's configuration is one frozen dataclass (:class:`TrainConfig`, :class:`DQNRunConfig`,
:class:`RegressRunConfig`) made of the package's own frozen, self-validating configs
(:class:`~metadqn_jax.meta.MetaConfig`, :class:`~metadqn_jax.fewshot.FewShotConfig`,
:class:`~metadqn_jax.driver.ValidationConfig`, :class:`~metadqn_jax.dqn.DQNConfig`,
:class:`~metadqn_jax.regression.RegressionConfig`) plus the run-level settings of
:mod:`metadqn_jax.app.settings`.

On disk (YAML) a configuration is a mapping of *sections* to fields. Static settings and
traced hyper-parameters live in different sections: ``meta`` / ``dqn`` hold the static
settings (shapes, loop lengths — changing one recompiles), ``hparams`` the defaults of the
traced hyper-parameters (:class:`~metadqn_jax.meta.MetaHParams`,
:class:`~metadqn_jax.dqn.DQNHParams` — changing one never recompiles)::

    command: train
    meta:        {family: pointnav-goal, num_tasks: 32, hidden: [64, 64], ...}
    hparams:     {inner_lr: 0.1, meta_lr: 0.001, gamma: null, ...}
    few_shot:    {budgets: [0, 25, 50, 100, 250, 500], num_tasks: 20, seeds: 3, ...}
    validation:  {every: 500, num_tasks: 32, patience: 0}
    run:         {algorithms: [context], baselines: [pretrained, scratch], seed: 0, ...}

A configuration is resolved from *layers* (later wins): the dataclass defaults, a preset
(:mod:`metadqn_jax.app.presets`), a YAML file, command-line flags and ``--set section.field=value``
overrides (:mod:`metadqn_jax.app.yamlio` reads and parses them). Every error is one
:class:`~metadqn_jax.core.validate.ConfigError` (a ``ValueError``) whose message starts with the
qualified field name, e.g. ``meta.num_tasks must be a positive integer, got 0``.

>>> from metadqn_jax.app.runconfig import TrainConfig
>>> from metadqn_jax.app.yamlio import parse_overrides
>>> cfg = TrainConfig.resolve({"meta": {"num_meta_steps": 100}}, parse_overrides(["hparams.inner_lr=0.05"]))
>>> cfg.meta.num_meta_steps, float(cfg.meta.inner_lr)
(100, 0.05)
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml

from metadqn_jax.app.settings import (
    DQNSettings,
    RegressEvalSettings,
    RegressSettings,
    TrainSettings,
)
from metadqn_jax.app.yamlio import coerce, load_yaml, plain
from metadqn_jax.core.validate import ConfigError, require
from metadqn_jax.dqn import DQNConfig, DQNHParams
from metadqn_jax.driver import ValidationConfig
from metadqn_jax.fewshot import FewShotConfig
from metadqn_jax.meta import ALGORITHM_RESOLVED, MetaConfig, MetaHParams

__all__ = [
    "Section",
    "TrainConfig",
    "DQNRunConfig",
    "RegressRunConfig",
    "meta_config_dict",
    "field_defaults",
]


# ----------------------------------------------------------------------------- sections
@dataclasses.dataclass(frozen=True)
class Section:
    """One YAML section: ``fields`` of the dataclass ``cls`` held in the attribute ``attr``."""

    name: str
    attr: str
    cls: type
    fields: tuple[str, ...]
    doc: str


def _fields(cls, *, only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> tuple[str, ...]:
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if only is not None:
        only = tuple(only)
        names = [n for n in names if n in only]
    return tuple(n for n in names if n not in set(exclude))


class _Composite:
    """Shared machinery of the command configurations (a frozen dataclass of dataclasses)."""

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
    def field_type(cls, section: str, field: str) -> Any:
        sec = cls.section(section)
        return typing.get_type_hints(sec.cls)[field]

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
            layer = cls._take_family(layer)
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
    def _take_family(cls, layer: Any) -> Any:
        """A layer with a ``family:`` block (a family's definition, as in a run's config.yaml)
        installs it (:func:`metadqn_jax.app.userfamily.take_family_block`) and, unless the layer
        names a family, chooses it; returned without the block. Commands without a family keep
        the block (an unknown section)."""
        if cls.FAMILY_SECTION is None or not isinstance(layer, Mapping) or "family" not in layer:
            return layer
        from metadqn_jax.app.userfamily import take_family_block

        layer, name = take_family_block(layer, "the configuration's family: block")
        section = cls.FAMILY_SECTION
        values = layer.get(section)
        if isinstance(values, Mapping) and values.get("family") is not None:
            return layer
        return {**layer, section: {**(values if isinstance(values, Mapping) else {}), "family": name}}

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

    @classmethod
    def from_yaml_file(cls, path: str | Path, *more_layers: Mapping[str, Any] | None):
        """Resolves a configuration from a YAML file (plus override layers)."""
        return cls.resolve(load_yaml(path), *more_layers)

    def diff(self, other: _Composite, *, ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
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


# --------------------------------------------------------------------------------- train
_META_STATIC = _fields(MetaConfig, exclude=MetaHParams._fields)
_META_HPARAMS = _fields(MetaConfig, only=MetaHParams._fields)


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Composite):
    """Everything ``metadqn train`` needs: meta-training, validation, the few-shot evaluation
    and the run settings. Sections: ``meta`` (static), ``hparams`` (traced), ``few_shot``,
    ``validation``, ``run``.

    Derived defaults: unless set explicitly, ``few_shot.support_size`` follows
    ``meta.support_size`` and ``few_shot.support_epsilon`` follows ``hparams.epsilon`` (the
    test-time protocol collects its support set as meta-training does), and
    ``few_shot.budgets`` are the family's (:attr:`metadqn_jax.tasks.TaskFamily.few_shot_budgets`:
    its ``budgets``, by default 0, 1/20, 1/5, 1/2, 1, 2 and 4 episodes).
    """

    meta: MetaConfig
    few_shot: FewShotConfig
    validation: ValidationConfig
    run: TrainSettings

    COMMAND: ClassVar[str] = "train"
    FAMILY_SECTION: ClassVar[str | None] = "meta"
    SECTIONS: ClassVar[tuple[Section, ...]] = (
        Section("meta", "meta", MetaConfig, tuple(f for f in _META_STATIC if f != "algorithm"),
                "meta: static meta-training settings (shapes, loop lengths; changing one recompiles); "
                "the algorithms are run.algorithms"),
        Section("hparams", "meta", MetaConfig, _META_HPARAMS,
                "hparams: traced meta-training hyper-parameters (changing one never recompiles; "
                "gamma null = the family's, inner_lr / meta_lr null = the algorithm's)"),
        Section("few_shot", "few_shot", FewShotConfig, _fields(FewShotConfig),
                "few_shot: the few-shot evaluation on held-out tasks (budgets in env steps)"),
        Section("validation", "validation", ValidationConfig, _fields(ValidationConfig),
                "validation: validation / early stopping during meta-training (meta-steps)"),
        Section("run", "run", TrainSettings, _fields(TrainSettings),
                "run: what to train and compare, seeds, checkpoints"),
    )

    @classmethod
    def _derive(cls, merged):
        meta = merged.get("meta", {})
        hp = merged.get("hparams", {})
        fs = merged.setdefault("few_shot", {})
        from metadqn_jax import tasks

        try:
            family = tasks.get_family(str(meta.get("family") or MetaConfig.family))
        except ValueError:  # an unknown family: meta.family's own error follows
            family = None
        # the family's recommendations come before the class defaults (as in meta.config.resolve)
        recommended = family.meta_defaults if family is not None else {}
        if "support_size" not in fs:
            fs["support_size"] = meta.get("support_size", recommended.get("support_size", MetaConfig.support_size))
        if "support_epsilon" not in fs:
            fs["support_epsilon"] = hp.get("epsilon", recommended.get("epsilon", MetaConfig.epsilon))
        if fs.get("budgets") is None:
            if family is not None:
                fs["budgets"] = list(family.few_shot_budgets)
            else:
                fs.pop("budgets", None)


# ----------------------------------------------------------------------------------- dqn
_DQN_STATIC = _fields(DQNConfig, exclude=DQNHParams._fields)
_DQN_HPARAMS = _fields(DQNConfig, only=DQNHParams._fields)


@dataclasses.dataclass(frozen=True)
class DQNRunConfig(_Composite):
    """Everything ``metadqn dqn`` needs. Sections: ``dqn`` (static), ``hparams`` (traced), ``run``."""

    dqn: DQNConfig
    run: DQNSettings

    COMMAND: ClassVar[str] = "dqn"
    FAMILY_SECTION: ClassVar[str | None] = "run"
    SECTIONS: ClassVar[tuple[Section, ...]] = (
        Section("dqn", "dqn", DQNConfig, _DQN_STATIC,
                "dqn: static single-task DQN settings (env steps, sizes; changing one recompiles)"),
        Section("hparams", "dqn", DQNConfig, _DQN_HPARAMS,
                "hparams: traced DQN hyper-parameters (changing one never recompiles)"),
        Section("run", "run", DQNSettings, _fields(DQNSettings), "run: seeds and the task"),
    )

    @classmethod
    def _build(cls, merged):
        family = merged.get("run", {}).get("family")
        fam = None
        if family is not None:  # looked up once: its environment, discount and task count
            from metadqn_jax import tasks

            try:
                fam = tasks.get_family(str(family))
            except ValueError as e:
                raise ConfigError(f"run.family: {e}") from None
            if "env_id" not in merged.get("dqn", {}):
                merged.setdefault("dqn", {})["env_id"] = fam.env_id
            if (merged.get("hparams") or {}).get("gamma") is None:
                # the family's discount, as for meta-training, unless the user sets one
                merged["hparams"] = {**(merged.get("hparams") or {}), "gamma": fam.gamma}
        cfg = super()._build(merged)
        if fam is not None:
            n = fam.num_tasks(cfg.run.split)
            require(cfg.run.task < n, "run.task", f"< {n} (tasks in the {cfg.run.split} split of "
                    f"{cfg.run.family})", cfg.run.task)
            require(cfg.dqn.env_id == fam.env_id, "dqn.env_id", f"{fam.env_id!r} (the environment of "
                    "run.family)", cfg.dqn.env_id)
        return cfg


# ------------------------------------------------------------------------------- regress
def _regression_config_cls():
    from metadqn_jax.regression import RegressionConfig

    return RegressionConfig


class _LazyRegressSections:
    """``RegressRunConfig.SECTIONS`` (built on first use: regression.py is imported lazily)."""

    def __get__(self, obj, owner):
        rc = _regression_config_cls()
        sections = (
            Section("regression", "regression", rc, _fields(rc, exclude=("algorithm",)),
                    "regression: sinusoid meta-training settings (shared by every algorithm)"),
            Section("eval", "eval", RegressEvalSettings, _fields(RegressEvalSettings),
                    "eval: few-shot evaluation on held-out sinusoids (MSE on a 100-point grid)"),
            Section("run", "run", RegressSettings, _fields(RegressSettings), "run: algorithms to compare"),
        )
        owner.SECTIONS = sections  # cache on the class
        return sections


@dataclasses.dataclass(frozen=True)
class RegressRunConfig(_Composite):
    """Everything ``metadqn regress`` needs. Sections: ``regression``, ``eval``, ``run``.

    ``regression`` holds :class:`~metadqn_jax.regression.RegressionConfig` without its
    ``algorithm`` (that comes from ``run.algorithms``); use :meth:`for_algorithm`.
    """

    regression: Any
    eval: RegressEvalSettings
    run: RegressSettings

    COMMAND: ClassVar[str] = "regress"
    # not annotated: the dataclass decorator reads annotated class attributes, which would
    # trigger the lazy descriptor (and import the regression package) when this module loads
    SECTIONS = _LazyRegressSections()

    def for_algorithm(self, algorithm: str):
        return dataclasses.replace(self.regression, algorithm=algorithm)


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


# ------------------------------------------------------------------------ checkpoints
def meta_config_dict(meta: MetaConfig, validation: ValidationConfig | None = None) -> dict[str, Any]:
    """The settings that determine a meta-training trajectory, as stored in checkpoints:
    ``meta`` (static, without ``num_meta_steps``), ``hparams`` and ``validation``."""
    # algorithm-dependent fields are stored resolved (MetaConfig.setting): a config that leaves
    # them unset and one that names the same value train the same thing
    value = lambda name: plain(meta.setting(name) if name in ALGORITHM_RESOLVED else getattr(meta, name))
    static = {name: value(name) for name in _META_STATIC if name != "num_meta_steps"}
    out: dict[str, Any] = {"meta": static, "hparams": {name: value(name) for name in _META_HPARAMS}}
    if validation is not None:
        out["validation"] = {f: plain(getattr(validation, f)) for f in _fields(ValidationConfig)}
    return out


def field_defaults() -> dict[str, Any]:
    """``{"meta.<field>" | "hparams.<field>" | "validation.<field>": default}`` for every setting
    of :func:`meta_config_dict` with a fixed default: what a checkpoint written before that
    setting existed behaved as (``Checkpointer.restore(absent=...)``), so adding a setting to
    the library does not orphan older run folders that keep its default."""
    out: dict[str, Any] = {}
    for section, cls, names in (("meta", MetaConfig, _META_STATIC), ("hparams", MetaConfig, _META_HPARAMS),
                                ("validation", ValidationConfig, _fields(ValidationConfig))):
        for f in dataclasses.fields(cls):
            if f.name in names and f.default is not None and f.default is not dataclasses.MISSING:
                out[f"{section}.{f.name}"] = plain(f.default)
    return out
