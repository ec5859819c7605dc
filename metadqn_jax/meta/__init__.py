"""Meta-learning: the loss-agnostic meta-gradient core (:mod:`.gradient`) and meta-DQN
(config, learners, the meta-step program)."""

from metadqn_jax.meta.step import (
    ALGORITHM_DEFAULTS,
    ALGORITHM_RESOLVED,
    ALGORITHMS,
    FAMILY_RESOLVED,
    LIBRARY_DEFAULTS,
    ContextEncoder,
    Learner,
    MetaConfig,
    MetaHParams,
    MetaProgram,
    MetaState,
    MetaStepMetrics,
    OnlineContext,
    adapted_query,
    encoder_sums,
    make_learner,
    make_meta_optimizer,
    make_meta_step,
    memory_bytes,
    meta_train,
    online_no_data_stats,
    online_start_stats,
    online_step,
    support_mask,
    tasks_per_env,
)

__all__ = ["ALGORITHM_DEFAULTS", "ALGORITHM_RESOLVED", "ALGORITHMS", "FAMILY_RESOLVED", "LIBRARY_DEFAULTS",
           "ContextEncoder", "Learner", "MetaConfig", "MetaHParams", "MetaProgram", "MetaState", "MetaStepMetrics",
           "OnlineContext", "adapted_query", "encoder_sums", "make_learner", "make_meta_optimizer", "make_meta_step",
           "memory_bytes", "meta_train", "online_no_data_stats", "online_start_stats", "online_step",
           "support_mask", "tasks_per_env"]
