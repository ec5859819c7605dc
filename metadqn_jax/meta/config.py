"""Meta-training configuration.

* :class:`MetaConfig` — static settings (a frozen dataclass, hashed into ``jit``: sizes, step
  counts, the algorithm);
* :class:`MetaHParams` — traced hyper-parameters (a pytree of float32 scalars: changing them
  never recompiles, a sweep over them is one ``vmap``);
* :func:`resolve` — the one function that turns a ``None`` field into its default
  (tables in :mod:`metadqn_jax.meta.defaults`);
* ``validate_*`` — the named checks a config passes when it is built; each raises one
  :class:`~metadqn_jax.core.validate.ConfigError` that names the field and what it must be.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple

from metadqn_jax import tasks
from metadqn_jax.core.hparams import as_hparams, check_hparams
from metadqn_jax.core.validate import (
    ConfigError,
    in_range,
    nonneg_int,
    positive_int,
    require,
)
from metadqn_jax.meta.derive import DERIVED_FIELDS, derived_settings
from metadqn_jax.meta.defaults import (
    ALGORITHM_DEFAULTS,
    ALGORITHM_RESOLVED,
    ALGORITHM_SETTINGS,
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    FAMILY_RESOLVED,
    LIBRARY_DEFAULTS,
    STRUCTURAL_FIELDS,
)


class MetaHParams(NamedTuple):
    """Traced meta-training hyper-parameters (float32 leaves; changing them never recompiles)."""

    inner_lr: Any  # shape=() float32: inner-loop learning rate, > 0
    meta_lr: Any  # shape=() float32: meta-optimiser (Adam) learning rate, > 0
    weight_decay: Any  # shape=() float32: decoupled weight decay of the meta-optimiser, >= 0
    gamma: Any  # shape=() float32: discount in [0, 1]
    epsilon: Any  # shape=() float32: ε of the data-collecting meta-policy, in [0, 1]
    tau: Any  # shape=() float32: Polyak factor of the meta-target, in [0, 1)


# name -> (low, high, low_open, high_open), checked by core.hparams.check_hparams
META_HPARAM_RULES = {
    "inner_lr": (0.0, math.inf, True, True),
    "meta_lr": (0.0, math.inf, True, True),
    "weight_decay": (0.0, math.inf, False, True),
    "gamma": (0.0, 1.0, False, False),
    "epsilon": (0.0, 1.0, False, False),
    "tau": (0.0, 1.0, False, True),
}


_PRIVATE = ("_given", "_from_family")  # what a MetaConfig records beyond its fields (not fields)


def _track_given(cls):
    """Class decorator (outside ``@dataclass``): every instance records the fields its
    constructor was *given* (``_given``, a frozenset of names; a field passed as ``None`` counts
    as not given), so that :func:`resolve` lets a family's recommendation fill exactly the
    fields nobody set — including fields whose dataclass default is a concrete value.
    ``dataclasses.replace`` passes every field, so a replaced config keeps the values it holds."""
    init = cls.__init__
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for private in _PRIVATE:  # MetaConfig(**cfg.__dict__) copies a config: every field given
            kwargs.pop(private, None)
        given = {n for n, v in zip(names, args) if v is not None}
        given.update(n for n, v in kwargs.items() if v is not None)
        object.__setattr__(self, "_given", frozenset(given))
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


@_track_given
@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """Static meta-training settings plus defaults for the traced :class:`MetaHParams`.

    Sizes and counts: per meta-step ``num_tasks × envs_per_task × rollout_steps`` environment
    steps acting (plus ``updates_per_step`` times as many for the adapted policy's query
    rollouts when ``query_source == "adapted"``: :attr:`env_steps_per_meta_step`), then
    ``updates_per_step`` meta-gradient updates, each on ``num_tasks`` tasks; one meta-training
    run is ``num_meta_steps × env_steps_per_meta_step`` environment steps
    (:attr:`env_steps`) and ``num_meta_steps × updates_per_step`` updates of the
    meta-parameters (:attr:`gradient_updates`) — the same for every learner of a comparison,
    ``pretrained`` included. Per-task replay memory ``num_tasks × buffer_size`` transitions
    (see :func:`metadqn_jax.meta.step.memory_bytes`).

    **Defaults** (one function, :func:`resolve`): a field the constructor is not given (or is
    given ``None``) takes, in this order, the task family's recommendation
    (:attr:`TaskFamily.meta_defaults <metadqn_jax.tasks.family.TaskFamily>`, any field but
    :data:`~metadqn_jax.meta.defaults.STRUCTURAL_FIELDS`), a value derived from the family
    (:mod:`metadqn_jax.meta.derive`: task lifetime, buffer, queries, updates, target, ε, network,
    learning rates from its episode length and scales), the algorithm's
    (:data:`~metadqn_jax.meta.defaults.ALGORITHM_DEFAULTS`, for ``random_support``, ``inner_lr``,
    ``meta_lr``), :data:`~metadqn_jax.meta.defaults.LIBRARY_DEFAULTS` (the ``None``-default
    fields), else the dataclass default below; ``gamma``: the family's discount. A value given
    explicitly always wins, even when it equals a default. Resolved when the config is built,
    except ``random_support``, ``inner_lr``, ``meta_lr`` and ``gamma``, which stay ``None`` and
    are resolved on use (:meth:`setting`). The built config holds the concrete values
    (``dataclasses.replace(cfg, family=...)`` keeps them: pass ``None`` again to re-resolve);
    :meth:`rebuilt` resolves again every field the constructor was not given: that is how a
    config is re-targeted to another algorithm (``compare.config_for``), since a family may
    recommend values for one algorithm only;
    :attr:`family_defaults_used` names the fields the family's recommendation filled. Layer
    widths are stored as tuples of ints.

    Raises:
      ConfigError: on construction, naming the first invalid field.
    """

    family: str = "pointnav-goal"  # a registered task family (metadqn_jax.tasks.family)
    algorithm: str = DEFAULT_ALGORITHM  # one of ALGORITHMS ("maml")
    num_tasks: int = 32  # tasks per meta-step (the meta-batch, the task axis)
    envs_per_task: int = 4  # environments per task
    rollout_steps: int = 25  # steps of every environment per meta-step
    updates_per_step: int = 1  # meta-gradient updates per meta-step (after acting), each on fresh
    #                            support-mask and query samples, the Polyak target after each
    support_size: int = 100  # most recent transitions forming the support set
    buffer_size: int | None = None  # replay capacity per task, transitions (None: the family's, else 100)
    query_batch: int = 128  # query transitions per task per meta-step
    query_source: str | None = None  # "adapted": query from a rollout of the adapted policy
    #                                 "buffer": query sampled from the task's replay buffer
    #                                 (None: the family's recommendation, else "adapted")
    query_epsilon: float = 0.3  # ε of the adapted policy's query rollout
    task_lifetime: int | None = None  # meta-steps before a slot draws a new task (None: the family's, else 1)
    stagger_tasks: bool = False  # slot i renews its task task_lifetime * i // num_tasks meta-steps out of
    #                              phase (False: every slot at once, all buffers emptied together)
    inner_steps: int = 5  # inner TD-gradient steps (k)
    inner_optimizer: str = "sgd"  # "sgd" or "adam" (adam: eps_root 1e-8 for 2nd order)
    adapt: str = "all"  # adapted parameters: "all" or "head" (ANIL)
    unadapted_weight: float = 0.0  # maml / fomaml: weight w of the support's TD loss at the unadapted
    #                                parameters added to the meta-objective (trains the unadapted
    #                                network too, whose Polyak average is the target; 0: off)
    model_loss: float = 0.0  # gradient learners and CAVIA: weight of a model head's loss in the task loss
    #                          (inner steps and meta-objective: TD + model_loss x squared error of
    #                          predicting each transition's reward and state change from the
    #                          Q-network's last hidden layer; their reported losses include it; 0: off)
    context_dim: int = 8  # CAVIA context / context-encoder output width
    encoder_hidden: tuple[int, ...] = (64,)  # context-encoder per-transition MLP (φ)
    encoder_post: tuple[int, ...] = ()  # context-encoder MLP after pooling (ρ; () = identity)
    random_support: bool | None = None  # train on random support prefixes (robust to small
    #                                     budgets); None: the algorithm's (ALGORITHM_DEFAULTS)
    online_context: bool = True  # context only (ignored otherwise): collect the support acting
    #                              on the context inferred online from each env's transitions so far
    context_decoder: float = 0.0  # context only: weight of an auxiliary loss that trains z to predict
    #                               the query's rewards and state changes (VariBAD-style decoder); 0: off
    context_refine: int = 0  # context only: damped Gauss-Newton steps that refine the encoder's z
    #                          against the decoder's residuals on the support (needs context_decoder > 0)
    context_refine_damping: float = 0.01  # initial damping λ of those steps (meta-learned, in log space)
    decoder_hidden: tuple[int, ...] = ()  # the decoder's hidden layers (() = the Q-network's ``hidden``)
    zero_context: float = 1.0  # context only: weight of the query's TD loss at z = 0 (the policy before any
    #   data, trained on the same queries as the pretrained baseline), added to the loss at the inferred z
    cavia_first_order: bool = False  # CAVIA only: the first-order meta-gradient (no derivative through the
    #                                  context's inner steps)
    cavia_damping: float = 0.0  # CAVIA only: 0 = the context adapts by SGD steps at inner_lr (the
    #                             paper's); > 0 = by damped Gauss-Newton (Levenberg-Marquardt) steps
    #                             with this damping (inner_lr and inner_optimizer unused), stable at
    #                             any curvature of the support loss in the context
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"  # the Q-network's hidden activation: "relu" or "swish"
    dueling: bool = False
    double: bool = True
    huber: bool = True
    max_grad_norm: float = 10.0  # meta-gradient global-norm clip
    task_micro_batch: int = 0  # 0: one vmap over all tasks; n: per-task meta-gradients n tasks
    #                            at a time (lax.map), a smaller working set (same numbers)
    num_meta_steps: int = 2_000
    chunk_size: int = 100  # meta-steps per compiled call (logging granularity)
    # defaults of the traced hyper-parameters (gamma: None = the family's recommendation)
    # (inner_lr / meta_lr None: the algorithm's default, see ALGORITHM_DEFAULTS)
    inner_lr: float | None = None
    meta_lr: float | None = None
    weight_decay: float = 0.0
    gamma: float | None = None
    epsilon: float = 0.5
    tau: float = 0.95

    def __post_init__(self):
        validate_algorithm(self.algorithm)
        family = family_of(self.family)
        check_recommendations(family)
        # the family's recommendations and the None-default fields, resolved now (the
        # algorithm-dependent fields and gamma: on use)
        recommended = family.meta_defaults_for(self.algorithm)
        names = (set(recommended) | set(FAMILY_RESOLVED) | set(DERIVED_FIELDS)
                 | {n for n, d in _FIELD_DEFAULTS.items() if d is not None and getattr(self, n) is None})
        names -= {*ALGORITHM_RESOLVED, "gamma"}
        self._complete({name: resolve(self, name, family) for name in sorted(names)})
        given = getattr(self, "_given", ())
        derived = [name for name in derived_from_family(self, family) if name not in recommended]
        object.__setattr__(self, "_from_family", tuple(
            name for name in (*recommended, *derived) if name not in given))
        validate_sizes(self)
        self._complete(layer_widths(self))
        validate_buffer(self)
        validate_choices(self)
        validate_ranges(self)
        validate_context(self)
        check_hparams(self.hparams(), META_HPARAM_RULES)

    def _complete(self, values: dict[str, Any]) -> None:
        # the one way a built config is written: its family defaults and normalised layer tuples
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def rebuilt(self, **changes) -> MetaConfig:
        """The config the constructor builds from the fields this one was *given*, updated with
        ``changes``: every other field is resolved again. ``cfg.rebuilt(algorithm="cavia")`` is
        ``cfg`` for CAVIA, with the family's recommendations for CAVIA
        (``TaskFamily.meta_defaults_for``) wherever ``cfg`` was not given a value
        (``compare.config_for``). ``dataclasses.replace`` instead keeps every value the config
        holds (and counts them all as given)."""
        return MetaConfig(**{**{n: getattr(self, n) for n in getattr(self, "_given", ())}, **changes})

    @property
    def family_defaults_used(self) -> dict[str, Any]:
        """``{field: value}`` for the fields that took the family's recommendation
        (``TaskFamily.meta_defaults``) or a value derived from the family
        (:mod:`metadqn_jax.meta.derive`) because the constructor was not given them; the
        algorithm-dependent ones (``inner_lr``, ``meta_lr``, ``random_support``) with their
        resolved value. Empty for a config made by ``dataclasses.replace`` (every field given)."""
        return {name: resolve(self, name) if name in ALGORITHM_RESOLVED else getattr(self, name)
                for name in getattr(self, "_from_family", ())}

    @property
    def task_family(self) -> tasks.TaskFamily:
        return tasks.get_family(self.family)

    def setting(self, name: str) -> Any:
        """The value of a field, its default where it is ``None`` (:func:`resolve`); e.g. the
        algorithm-dependent ``random_support``, ``inner_lr``, ``meta_lr``."""
        return resolve(self, name)

    def hparams(self, **overrides) -> MetaHParams:
        """Traced hyper-parameters from this config's defaults (``overrides`` validated).

        Returns:
          :class:`MetaHParams` with float32 scalar leaves.

        Raises:
          ConfigError: ``"MetaHParams.<field> must be in ..."`` for a value out of range.
        """
        values = {f: resolve(self, f) for f in MetaHParams._fields}
        values.update(overrides)
        hp = as_hparams(MetaHParams, **values)
        check_hparams(hp, META_HPARAM_RULES)
        return hp

    @property
    def env_steps_per_meta_step(self) -> int:
        """Environment steps simulated per meta-step: the acting (support) rollout, plus one
        query rollout of the adapted policy per update when ``query_source == "adapted"``."""
        rollouts = 1 + self.updates_per_step if self.query_source == "adapted" else 1
        return rollouts * self.num_tasks * self.envs_per_task * self.rollout_steps

    @property
    def env_steps(self) -> int:
        """Environment steps of one meta-training run: ``num_meta_steps × env_steps_per_meta_step``."""
        return self.num_meta_steps * self.env_steps_per_meta_step

    @property
    def gradient_updates(self) -> int:
        """Meta-parameter updates of one meta-training run: ``num_meta_steps × updates_per_step``."""
        return self.num_meta_steps * self.updates_per_step


# ------------------------------------------------------------------------ defaults
def resolve(cfg: MetaConfig, name: str, family: tasks.TaskFamily | None = None) -> Any:
    """The value of field ``name`` of ``cfg``: the value the constructor was given, else its
    default, in this order (the one place MetaConfig's defaults are applied):

    1. a value given explicitly (not ``None``) — always wins;
    2. ``gamma``: the family's discount;
    3. the family's recommendation for the config's algorithm (``TaskFamily.meta_defaults_for``:
       that algorithm's own entry of ``meta_defaults``, else the family-wide one; any field but
       :data:`STRUCTURAL_FIELDS`);
    4. :data:`~metadqn_jax.meta.derive.DERIVED_FIELDS`: the rule of :mod:`metadqn_jax.meta.derive`
       where one decides for this family (:func:`derived_from_family`);
    5. ``random_support``, ``inner_lr``, ``meta_lr`` (:data:`ALGORITHM_RESOLVED`): the
       algorithm's (:data:`ALGORITHM_DEFAULTS`);
    6. :data:`LIBRARY_DEFAULTS` (the fields whose dataclass default is ``None``);
    7. the dataclass default (the value ``cfg`` holds).

    Args:
      cfg: the config (its ``algorithm`` and ``family`` choose the defaults).
      name: a :class:`MetaConfig` field.
      family: the config's task family, if already looked up.
    """
    value = getattr(cfg, name)
    if value is not None and name in getattr(cfg, "_given", ()):
        return value
    if name in STRUCTURAL_FIELDS and name != "gamma":
        return value
    family = tasks.get_family(cfg.family) if family is None else family
    if name == "gamma":
        return family.gamma if value is None else value
    recommended = family.meta_defaults_for(cfg.algorithm)
    if name in recommended:
        return recommended[name]
    if name in DERIVED_FIELDS:
        derived = derived_from_family(cfg, family)
        if name in derived:
            return derived[name]
    if value is not None:  # the dataclass default (or a value completed when the config was built)
        return value
    if name in ALGORITHM_RESOLVED:
        return ALGORITHM_DEFAULTS.get(cfg.algorithm, {}).get(name, LIBRARY_DEFAULTS[name])
    if name in LIBRARY_DEFAULTS:
        return LIBRARY_DEFAULTS[name]
    return _FIELD_DEFAULTS[name]


def derived_from_family(cfg: MetaConfig, family: tasks.TaskFamily | None = None) -> dict[str, Any]:
    """The settings :mod:`metadqn_jax.meta.derive` derives for ``cfg`` from its family's profile:
    ``{field: value}``, where a value the constructor was given or the family recommends feeds
    the rules below it (a field absent: no rule decides it for this family)."""
    family = tasks.get_family(cfg.family) if family is None else family
    recommended = family.meta_defaults_for(cfg.algorithm)
    given = getattr(cfg, "_given", ())

    def value(name: str) -> Any:
        if name in given and getattr(cfg, name) is not None:
            return getattr(cfg, name)
        if name in recommended:
            return recommended[name]
        return getattr(cfg, name) if name not in DERIVED_FIELDS else None

    return derived_settings(family.profile, value)


# the dataclass default of every field (a field given None, whose default is a value, takes it)
_FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(MetaConfig)}
# the fields annotated ``bool`` (the switches: a value must be True or False, not merely truthy)
_SWITCHES: tuple[str, ...] = tuple(name for name, tp in typing.get_type_hints(MetaConfig).items() if tp is bool)


# ---------------------------------------------------------------------- validation
SIZE_FIELDS = ("num_tasks", "envs_per_task", "rollout_steps", "updates_per_step", "support_size", "buffer_size",
               "query_batch", "task_lifetime", "num_meta_steps", "chunk_size", "context_dim")
LAYER_FIELDS = {"hidden": False, "encoder_hidden": False, "encoder_post": True, "decoder_hidden": True}  # -> may be ()


def validate_algorithm(algorithm: str) -> None:
    require(algorithm in ALGORITHMS, "algorithm", f"one of {ALGORITHMS}", algorithm)


def family_of(name: str) -> tasks.TaskFamily:
    """The registered task family ``name``; :class:`ConfigError` ``"family: ..."`` if there is none."""
    try:
        return tasks.get_family(name)
    except ValueError as e:
        raise ConfigError(f"family: {e}") from None


# What a task family may recommend (TaskFamily.meta_defaults): every field but the structural
# ones, and, under an algorithm's name, how that learner learns: its own settings
# (ALGORITHM_SETTINGS), its learning rates and support prefixes (ALGORITHM_RESOLVED), its weight
# decay and target speed — never what every learner of a comparison must share (the environment
# steps and updates, the Q-network, the acting epsilon, the support size).
FAMILY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MetaConfig)
                                       if f.name not in STRUCTURAL_FIELDS)
LEARNER_FIELDS: tuple[str, ...] = tuple(f for f in FAMILY_FIELDS if f in {
    *(s for settings in ALGORITHM_SETTINGS.values() for s in settings), *ALGORITHM_RESOLVED, "weight_decay", "tau"})


def check_recommendations(family: tasks.TaskFamily) -> None:
    """``family.meta_defaults`` names only :data:`FAMILY_FIELDS` and, under an algorithm's name
    (one of :data:`~metadqn_jax.meta.defaults.ALGORITHMS`), a mapping over :data:`LEARNER_FIELDS`
    (``{"tau": 0.99, "cavia": {"model_loss": 1.0}}``). The values are checked by the
    ``MetaConfig`` that takes them, like values the user gave.

    Raises:
      ConfigError: ``family '<name>': meta_defaults ...`` naming the key (with the closest field
        name) and what it may be.
    """
    name = family.name
    for key, value in family.meta_defaults.items():
        if key in ALGORITHMS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"family {name!r}: meta_defaults.{key} (the {key} learner's own "
                                  f"recommendations) must be a mapping field -> value, got {value!r}")
            for field in value:
                if field not in LEARNER_FIELDS:
                    why = ("every learner of a comparison shares it" if field in FAMILY_FIELDS
                           else "not a MetaConfig field a family can set")
                    raise ConfigError(f"family {name!r}: meta_defaults.{key}.{field} cannot be recommended "
                                      f"for one algorithm ({why}; allowed: {', '.join(LEARNER_FIELDS)})")
        elif key in STRUCTURAL_FIELDS:
            why = ("the family's discount is TaskFamily.gamma" if key == "gamma"
                   else "it is what a comparison varies, not a setting a family recommends")
            raise ConfigError(f"family {name!r}: meta_defaults field {key!r} cannot be set by a family ({why})")
        elif key in FAMILY_FIELDS and isinstance(value, Mapping):
            raise ConfigError(f"family {name!r}: meta_defaults field {key!r} must be a value, got a mapping (only "
                              f"an algorithm's name holds a mapping: {', '.join(ALGORITHMS)})")
        elif key not in FAMILY_FIELDS:
            close = difflib.get_close_matches(str(key), FAMILY_FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"family {name!r}: meta_defaults field {key!r} is not a MetaConfig field a family "
                              f"can set{hint} (allowed: {', '.join(FAMILY_FIELDS)}, or an algorithm's "
                              f"own recommendations under its name: {', '.join(ALGORITHMS)})")


def validate_sizes(cfg: MetaConfig) -> None:
    for name in SIZE_FIELDS:
        positive_int(name, getattr(cfg, name))
    nonneg_int("inner_steps", cfg.inner_steps)
    nonneg_int("task_micro_batch", cfg.task_micro_batch)


def layer_widths(cfg: MetaConfig) -> dict[str, tuple[int, ...]]:
    """Every layer-width field as a tuple of ints (a YAML list becomes a tuple), checked."""
    widths = {}
    for name, may_be_empty in LAYER_FIELDS.items():
        value = tuple(int(h) for h in getattr(cfg, name))
        require((len(value) > 0 or may_be_empty) and all(h > 0 for h in value), name,
                "a list of positive layer widths" if may_be_empty
                else "a non-empty list of positive layer widths", getattr(cfg, name))
        widths[name] = value
    return widths


def validate_buffer(cfg: MetaConfig) -> None:
    per_step = cfg.envs_per_task * cfg.rollout_steps
    require(per_step <= cfg.buffer_size, "buffer_size",
            f">= envs_per_task * rollout_steps ({per_step})", cfg.buffer_size)
    require(cfg.support_size <= cfg.buffer_size, "support_size",
            f"<= buffer_size ({cfg.buffer_size})", cfg.support_size)


def validate_choices(cfg: MetaConfig) -> None:
    require(cfg.inner_optimizer in ("sgd", "adam"), "inner_optimizer", "'sgd' or 'adam'", cfg.inner_optimizer)
    require(cfg.adapt in ("all", "head"), "adapt", "'all' or 'head'", cfg.adapt)
    for name in _SWITCHES:
        require(isinstance(getattr(cfg, name), bool), name, "a bool (True or False)", getattr(cfg, name))
    require(cfg.activation in ("relu", "swish"), "activation", "'relu' or 'swish'", cfg.activation)
    require(cfg.query_source in ("adapted", "buffer"), "query_source", "'adapted' or 'buffer'",
            cfg.query_source)


def validate_ranges(cfg: MetaConfig) -> None:
    in_range("query_epsilon", cfg.query_epsilon, 0.0, 1.0)
    in_range("max_grad_norm", cfg.max_grad_norm, 0.0, math.inf, low_open=True)
    in_range("unadapted_weight", cfg.unadapted_weight, 0.0, math.inf)
    in_range("model_loss", cfg.model_loss, 0.0, math.inf)
    if cfg.model_loss > 0 and "model_loss" in ALGORITHM_SETTINGS[cfg.algorithm]:
        uses_adapt, uses_damping = "adapt" in ALGORITHM_SETTINGS[cfg.algorithm], cfg.algorithm == "cavia"
        require(not uses_adapt or cfg.adapt == "all", "adapt",
                "'all' when model_loss > 0 (head-only steps cannot move the Q-values through the model head)",
                cfg.adapt)
        require(not uses_damping or cfg.cavia_damping == 0, "cavia_damping",
                "0 when model_loss > 0 (the Gauss-Newton steps model the TD loss only)", cfg.cavia_damping)


def validate_context(cfg: MetaConfig) -> None:
    """The context learner's decoder and refinement settings (checked for every algorithm)."""
    in_range("context_decoder", cfg.context_decoder, 0.0, math.inf)
    in_range("zero_context", cfg.zero_context, 0.0, math.inf)
    nonneg_int("context_refine", cfg.context_refine)
    in_range("context_refine_damping", cfg.context_refine_damping, 0.0, math.inf, low_open=True)
    in_range("cavia_damping", cfg.cavia_damping, 0.0, math.inf)
    require(cfg.context_refine == 0 or cfg.context_decoder > 0,
            "context_refine", "0 unless context_decoder > 0 (it refines z against the decoder)",
            cfg.context_refine)
