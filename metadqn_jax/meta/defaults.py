"""The defaults of :class:`~metadqn_jax.meta.config.MetaConfig`'s ``None`` fields, as plain data.

This module imports nothing (no JAX), so the command line can build its help text from it.
:func:`metadqn_jax.meta.config.resolve` is the one function that applies these tables:

* any field but :data:`STRUCTURAL_FIELDS` that the constructor is not given: the task family's
  recommendation (``TaskFamily.meta_defaults``) first, then the rules of
  :mod:`metadqn_jax.meta.derive` (which decide every family-dependent field and, where Q-values
  are large, the learning rates: the tables below are what is left when no rule decides);
* family-dependent fields (:data:`FAMILY_RESOLVED`, ``None`` by default), resolved when a config
  is built: the family's recommendation, else :data:`LIBRARY_DEFAULTS`;
* algorithm-dependent fields (:data:`ALGORITHM_RESOLVED`), resolved on use, so a config keeps
  "unset" when it is re-targeted to another algorithm (``compare.config_for``) and a value the
  user chose always wins: the family's recommendation, else :data:`ALGORITHM_DEFAULTS` of the
  config's algorithm, else :data:`LIBRARY_DEFAULTS`;
* ``gamma``: the family's discount.

Each learner's own settings and defaults are declared below, one block per learner module
(:data:`ALGORITHM_SETTINGS`, :data:`ALGORITHM_DEFAULTS`).
"""

from __future__ import annotations

from typing import Any

DEFAULT_ALGORITHM = "maml"  # MetaConfig.algorithm's default

# What MetaConfig's family-dependent fields (None = "the family's") become when the family
# recommends nothing (tasks.TaskFamily.meta_defaults; the keys are tasks.FAMILY_META_FIELDS),
# and its algorithm-dependent fields (None = "the algorithm's") when ALGORITHM_DEFAULTS has none.
LIBRARY_DEFAULTS: dict[str, Any] = {"task_lifetime": 1, "query_source": "adapted", "buffer_size": 100,
                                    "random_support": False, "inner_lr": 0.1, "meta_lr": 1e-3}
FAMILY_RESOLVED: tuple[str, ...] = ("task_lifetime", "query_source", "buffer_size")  # when a config is built
# The MetaConfig fields a family may NOT recommend (TaskFamily.meta_defaults may set every other
# field; tasks.FAMILY_META_FIELDS lists those): the family itself, the algorithm (what a
# comparison varies) and gamma (TaskFamily.gamma is the family's discount).
STRUCTURAL_FIELDS: tuple[str, ...] = ("family", "algorithm", "gamma")
ALGORITHM_RESOLVED: tuple[str, ...] = ("random_support", "inner_lr", "meta_lr")  # on use (MetaConfig.setting)

# ------------------------------------------------- per learner: own settings and defaults
# The MetaConfig fields a learner reads beyond the shared ones (network, sizes, query, the
# traced hyper-parameters); every other learner ignores them.

# gradient learners (metadqn_jax.meta.learners.gradient): maml, fomaml, reptile, pretrained
GRADIENT_SETTINGS: tuple[str, ...] = ("inner_steps", "inner_optimizer", "adapt", "model_loss")  # no own defaults
# maml and fomaml also read unadapted_weight (their meta-gradient has a query loss at adapted
# parameters; Reptile's has none, pretrained adapts nothing during meta-training)
MAML_SETTINGS: tuple[str, ...] = (*GRADIENT_SETTINGS, "unadapted_weight")

# CAVIA (metadqn_jax.meta.learners.cavia): the context vector starts at 0 and needs a large
# inner step (CAVIA's paper uses inner rates of 1-10 for the context parameters).
CAVIA_SETTINGS: tuple[str, ...] = ("inner_steps", "inner_optimizer", "model_loss", "context_dim", "cavia_first_order",
                                    "cavia_damping")
CAVIA_DEFAULTS: dict[str, Any] = {"inner_lr": 1.0, "meta_lr": 3e-3}

# the context learner (metadqn_jax.meta.learners.context): trained on random-length support
# prefixes, so that it infers the task from however few transitions a small budget gives; it has
# no inner loop and tolerates a larger meta learning rate.
CONTEXT_SETTINGS: tuple[str, ...] = ("context_dim", "encoder_hidden", "encoder_post", "online_context",
                                     "context_decoder", "context_refine", "context_refine_damping",
                                     "decoder_hidden", "zero_context")
CONTEXT_DEFAULTS: dict[str, Any] = {"random_support": True, "meta_lr": 3e-3}

# algorithm -> the fields only it reads: the one list of the algorithms' names (the learners'
# factories, metadqn_jax.meta.learners.LEARNERS, are keyed the same, in the same order)
ALGORITHM_SETTINGS: dict[str, tuple[str, ...]] = {
    "maml": MAML_SETTINGS,
    "fomaml": MAML_SETTINGS,
    "reptile": GRADIENT_SETTINGS,
    "cavia": CAVIA_SETTINGS,
    "context": CONTEXT_SETTINGS,
    "pretrained": GRADIENT_SETTINGS,
}
ALGORITHMS: tuple[str, ...] = tuple(ALGORITHM_SETTINGS)  # maml, fomaml, reptile, cavia, context, pretrained

# algorithm -> its defaults of the algorithm-dependent fields (absent: LIBRARY_DEFAULTS)
ALGORITHM_DEFAULTS: dict[str, dict[str, Any]] = {
    "context": CONTEXT_DEFAULTS,
    "cavia": CAVIA_DEFAULTS,
}
