"""The configurations of the commands — ``metadqn train`` (:class:`TrainConfig`, which
:func:`metadqn_jax.load_policy` reads back from a run folder), ``dqn``, ``regress`` and
``sweep`` — as :class:`~metadqn_jax.runs.sections.CommandConfig` s, and the settings a
meta-training checkpoint records (:func:`meta_config_dict`).

Each is made of the package's own frozen, self-validating configs
(:class:`~metadqn_jax.meta.MetaConfig`, :class:`~metadqn_jax.fewshot.FewShotConfig`,
:class:`~metadqn_jax.driver.ValidationConfig`, :class:`~metadqn_jax.dqn.DQNConfig`,
:class:`~metadqn_jax.regression.RegressionConfig`) plus the run-level settings of
:mod:`metadqn_jax.runs.settings`.

>>> from metadqn_jax.runs.configs import TrainConfig
>>> from metadqn_jax.runs.yamlio import parse_overrides
>>> cfg = TrainConfig.resolve({"meta": {"num_meta_steps": 100}}, parse_overrides(["hparams.inner_lr=0.05"]))
>>> cfg.meta.num_meta_steps, float(cfg.meta.inner_lr)
(100, 0.05)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from metadqn_jax import tasks
from metadqn_jax.core.errors import ConfigError
from metadqn_jax.core.validate import require
from metadqn_jax.dqn import DQNConfig, DQNHParams
from metadqn_jax.driver import ValidationConfig
from metadqn_jax.fewshot import FewShotConfig
from metadqn_jax.meta import ALGORITHM_RESOLVED, MetaConfig, MetaHParams
from metadqn_jax.meta.derive import acting_epsilon
from metadqn_jax.regression import RegressionConfig
from metadqn_jax.runs.sections import CommandConfig, Section, fields_of
from metadqn_jax.runs.settings import (
    DQNSettings,
    RegressEvalSettings,
    RegressSettings,
    SweepSettings,
    TrainSettings,
)
from metadqn_jax.runs.yamlio import plain

__all__ = ["TrainConfig", "DQNRunConfig", "RegressRunConfig", "SweepConfig", "meta_config_dict", "field_defaults"]


# --------------------------------------------------------------------------------- train
_META_STATIC = fields_of(MetaConfig, exclude=MetaHParams._fields)
_META_HPARAMS = fields_of(MetaConfig, only=MetaHParams._fields)


_NULLS = "gamma null = the family's, inner_lr / meta_lr null = the algorithm's"


def _meta_sections(algorithms: str, hparams: str) -> tuple[Section, Section]:
    """The ``meta`` (static, without the algorithm: ``algorithms`` says where the command sets it)
    and ``hparams`` (traced; ``hparams``: the section's comment) sections of a ``MetaConfig``."""
    return (Section("meta", "meta", MetaConfig, tuple(f for f in _META_STATIC if f != "algorithm"),
                    "meta: static meta-training settings (shapes, loop lengths; changing one recompiles); "
                    f"{algorithms}"),
            Section("hparams", "meta", MetaConfig, _META_HPARAMS, f"hparams: {hparams}"))


@dataclasses.dataclass(frozen=True)
class TrainConfig(CommandConfig):
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
        *_meta_sections("the algorithms are run.algorithms",
                        f"traced meta-training hyper-parameters (changing one never recompiles; {_NULLS})"),
        Section("few_shot", "few_shot", FewShotConfig, fields_of(FewShotConfig),
                "few_shot: the few-shot evaluation on held-out tasks (budgets in env steps)"),
        Section("validation", "validation", ValidationConfig, fields_of(ValidationConfig),
                "validation: validation / early stopping during meta-training (meta-steps)"),
        Section("run", "run", TrainSettings, fields_of(TrainSettings),
                "run: what to train and compare, seeds, checkpoints"),
    )

    @classmethod
    def _derive(cls, merged):
        meta = merged.get("meta", {})
        hp = merged.get("hparams", {})
        fs = merged.setdefault("few_shot", {})
        try:
            family = tasks.get_family(str(meta.get("family") or MetaConfig.family))
        except ValueError:  # an unknown family: meta.family's own error follows
            family = None
        # the family's recommendations come before the class defaults (as in meta.config.resolve)
        recommended = family.meta_defaults if family is not None else {}
        if "support_size" not in fs:
            fs["support_size"] = meta.get("support_size", recommended.get("support_size", MetaConfig.support_size))
        if "support_epsilon" not in fs:
            fs["support_epsilon"] = hp.get("epsilon", recommended.get(
                "epsilon", acting_epsilon(family.profile) if family is not None else MetaConfig.epsilon))
        if fs.get("budgets") is None:
            if family is not None:
                fs["budgets"] = list(family.few_shot_budgets)
            else:
                fs.pop("budgets", None)


# ----------------------------------------------------------------------------------- dqn
_DQN_STATIC = fields_of(DQNConfig, exclude=DQNHParams._fields)
_DQN_HPARAMS = fields_of(DQNConfig, only=DQNHParams._fields)


@dataclasses.dataclass(frozen=True)
class DQNRunConfig(CommandConfig):
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
        Section("run", "run", DQNSettings, fields_of(DQNSettings), "run: seeds and the task"),
    )

    @classmethod
    def _build(cls, merged):
        family = merged.get("run", {}).get("family")
        fam = None
        if family is not None:  # looked up once: its environment, discount and task count
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
@dataclasses.dataclass(frozen=True)
class RegressRunConfig(CommandConfig):
    """Everything ``metadqn regress`` needs. Sections: ``regression``, ``eval``, ``run``.

    ``regression`` holds :class:`~metadqn_jax.regression.RegressionConfig` without its
    ``algorithm`` (that comes from ``run.algorithms``); use :meth:`for_algorithm`.
    """

    regression: RegressionConfig
    eval: RegressEvalSettings
    run: RegressSettings

    COMMAND: ClassVar[str] = "regress"
    SECTIONS: ClassVar[tuple[Section, ...]] = (
        Section("regression", "regression", RegressionConfig, fields_of(RegressionConfig, exclude=("algorithm",)),
                "regression: sinusoid meta-training settings (shared by every algorithm)"),
        Section("eval", "eval", RegressEvalSettings, fields_of(RegressEvalSettings),
                "eval: few-shot evaluation on held-out sinusoids (MSE on a 100-point grid)"),
        Section("run", "run", RegressSettings, fields_of(RegressSettings), "run: algorithms to compare"),
    )

    def for_algorithm(self, algorithm: str) -> RegressionConfig:
        """The regression config of ``algorithm`` (``regression`` with that ``algorithm``)."""
        return dataclasses.replace(self.regression, algorithm=algorithm)


# --------------------------------------------------------------------------------- sweep
@dataclasses.dataclass(frozen=True)
class SweepConfig(CommandConfig):
    """Everything ``metadqn sweep`` needs. Sections: ``meta`` (static), ``hparams`` (traced
    base values; the grid overrides its fields), ``validation``, ``sweep``."""

    meta: MetaConfig
    validation: ValidationConfig
    sweep: SweepSettings

    COMMAND: ClassVar[str] = "sweep"
    FAMILY_SECTION: ClassVar[str | None] = "meta"  # a --config file's family: block is installed as meta.family
    SECTIONS: ClassVar[tuple[Section, ...]] = (
        *_meta_sections("the algorithm is sweep.algorithm",
                        f"traced hyper-parameters: the values of the fields sweep.grid does not vary ({_NULLS})"),
        Section("validation", "validation", ValidationConfig, fields_of(ValidationConfig),
                "validation: validation / early stopping during meta-training (meta-steps); every != 0"),
        Section("sweep", "sweep", SweepSettings, fields_of(SweepSettings),
                "sweep: the algorithm, the grid (hparams.FIELD=V1,V2,...), meta-training seeds per combination"),
    )

    @classmethod
    def _build(cls, merged):
        cfg = super()._build(merged)
        require(cfg.validation.every != 0, "validation.every",
                "> 0 for a sweep (it chooses the best combination on validation returns)", cfg.validation.every)
        return cfg

    @property
    def meta_config(self) -> MetaConfig:
        """``meta`` re-targeted to ``sweep.algorithm`` (:func:`metadqn_jax.compare.config_for`)."""
        return self.meta.rebuilt(algorithm=self.sweep.algorithm)


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
        out["validation"] = {f: plain(getattr(validation, f)) for f in fields_of(ValidationConfig)}
    return out


def field_defaults() -> dict[str, Any]:
    """``{"meta.<field>" | "hparams.<field>" | "validation.<field>": default}`` for every setting
    of :func:`meta_config_dict` with a fixed default: what a checkpoint written before that
    setting existed behaved as (``Checkpointer.restore(absent=...)``), so adding a setting to
    the library does not orphan older run folders that keep its default."""
    out: dict[str, Any] = {}
    for section, cls, names in (("meta", MetaConfig, _META_STATIC), ("hparams", MetaConfig, _META_HPARAMS),
                                ("validation", ValidationConfig, fields_of(ValidationConfig))):
        for f in dataclasses.fields(cls):
            if f.name in names and f.default is not None and f.default is not dataclasses.MISSING:
                out[f"{section}.{f.name}"] = plain(f.default)
    return out
