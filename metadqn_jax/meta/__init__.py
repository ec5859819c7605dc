"""Meta-learning: the loss-agnostic meta-gradient core (:mod:`.gradient`) and meta-DQN.

Layout (one concept per module; one meta-step reads top to bottom in :mod:`.step`):

* :mod:`.defaults` — the defaults tables (plain data, no JAX);
* :mod:`.config` — :class:`MetaConfig`, :class:`MetaHParams`, the one resolve step, the checks;
* :mod:`.learners` — one factory per algorithm, chosen through ``LEARNERS``;
* :mod:`.acting` — support collection, the adapted policy's query rollout, online statistics;
* :mod:`.step` — :class:`MetaState`, :func:`make_meta_step`, :func:`meta_train`.

Names are imported lazily (PEP 562), so ``import metadqn_jax.meta.defaults`` does not import JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metadqn_jax._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # defaults (plain data)
    "ALGORITHMS": "metadqn_jax.meta.defaults",
    "ALGORITHM_DEFAULTS": "metadqn_jax.meta.defaults",
    "ALGORITHM_RESOLVED": "metadqn_jax.meta.defaults",
    "ALGORITHM_SETTINGS": "metadqn_jax.meta.defaults",
    "FAMILY_RESOLVED": "metadqn_jax.meta.defaults",
    "LIBRARY_DEFAULTS": "metadqn_jax.meta.defaults",
    # the loss-agnostic meta-gradient core (also reachable as ``metadqn_jax.meta.gradient``)
    "adapt": "metadqn_jax.meta.gradient",
    "meta_gradient": "metadqn_jax.meta.gradient",
    "batched_meta_gradient": "metadqn_jax.meta.gradient",
    "MetaMetrics": "metadqn_jax.meta.gradient",
    # configuration
    "MetaConfig": "metadqn_jax.meta.config",
    "MetaHParams": "metadqn_jax.meta.config",
    "META_HPARAM_RULES": "metadqn_jax.meta.config",
    # learners
    "LEARNERS": "metadqn_jax.meta.learners",
    "Learner": "metadqn_jax.meta.learners",
    "OnlineContext": "metadqn_jax.meta.learners",
    "ContextEncoder": "metadqn_jax.meta.learners",
    "encoder_sums": "metadqn_jax.meta.learners",
    "make_learner": "metadqn_jax.meta.learners",
    # acting
    "adapted_query": "metadqn_jax.meta.acting",
    "online_no_data_stats": "metadqn_jax.meta.acting",
    "online_start_stats": "metadqn_jax.meta.acting",
    "online_step": "metadqn_jax.meta.acting",
    "support_mask": "metadqn_jax.meta.acting",
    "tasks_per_env": "metadqn_jax.meta.acting",
    # the meta-step
    "MetaProgram": "metadqn_jax.meta.step",
    "MetaState": "metadqn_jax.meta.step",
    "PER_TASK_FIELDS": "metadqn_jax.meta.step",
    "MetaStepMetrics": "metadqn_jax.meta.step",
    "make_meta_step": "metadqn_jax.meta.step",
    "memory_bytes": "metadqn_jax.meta.step",
    "meta_train": "metadqn_jax.meta.step",
    "meta_train_seeds": "metadqn_jax.meta.step",
}

__all__ = ["adapt", "meta_gradient", "batched_meta_gradient", "MetaMetrics", "ALGORITHMS", "ALGORITHM_DEFAULTS", "ALGORITHM_RESOLVED", "ALGORITHM_SETTINGS", "FAMILY_RESOLVED",
           "LIBRARY_DEFAULTS", "MetaConfig", "MetaHParams", "META_HPARAM_RULES", "LEARNERS", "Learner",
           "OnlineContext", "ContextEncoder", "encoder_sums", "make_learner", "adapted_query",
           "online_no_data_stats", "online_start_stats", "online_step", "support_mask", "tasks_per_env",
           "MetaProgram", "MetaState", "MetaStepMetrics", "PER_TASK_FIELDS", "make_meta_step", "memory_bytes", "meta_train",
           "meta_train_seeds"]
assert set(__all__) == set(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from metadqn_jax.meta.gradient import MetaMetrics, adapt, batched_meta_gradient, meta_gradient
    from metadqn_jax.meta.acting import (
        adapted_query,
        online_no_data_stats,
        online_start_stats,
        online_step,
        support_mask,
        tasks_per_env,
    )
    from metadqn_jax.meta.config import META_HPARAM_RULES, MetaConfig, MetaHParams
    from metadqn_jax.meta.defaults import (
        ALGORITHM_DEFAULTS,
        ALGORITHM_RESOLVED,
        ALGORITHM_SETTINGS,
        ALGORITHMS,
        FAMILY_RESOLVED,
        LIBRARY_DEFAULTS,
    )
    from metadqn_jax.meta.learners import (
        LEARNERS,
        ContextEncoder,
        Learner,
        OnlineContext,
        encoder_sums,
        make_learner,
    )
    from metadqn_jax.meta.step import MetaProgram, MetaState, MetaStepMetrics, make_meta_step, memory_bytes, meta_train
