"""The meta-learners, one factory each, chosen by name through :data:`LEARNERS`.

A factory ``(cfg: MetaConfig, num_actions, obs_shape) -> Learner`` binds the static settings
and returns the learner's pure functions (:class:`~metadqn_jax.meta.learners.base.Learner`).
"""

from __future__ import annotations

from collections.abc import Callable

from metadqn_jax.meta.defaults import ALGORITHMS
from metadqn_jax.meta.learners.base import Learner, OnlineContext
from metadqn_jax.meta.learners.cavia import cavia_learner
from metadqn_jax.meta.learners.context import ContextEncoder, context_learner, encoder_sums
from metadqn_jax.meta.learners.gradient import fomaml_learner, maml_learner, pretrained_learner, reptile_learner

# MetaConfig.algorithm -> factory
LEARNERS: dict[str, Callable[..., Learner]] = {
    "maml": maml_learner,
    "fomaml": fomaml_learner,
    "reptile": reptile_learner,
    "cavia": cavia_learner,
    "context": context_learner,
    "pretrained": pretrained_learner,
}
assert tuple(LEARNERS) == ALGORITHMS  # the config validates names against defaults.ALGORITHMS


def make_learner(cfg, num_actions: int, obs_shape: tuple[int, ...]) -> Learner:
    """The :class:`Learner` of ``cfg.algorithm`` for an environment with ``num_actions`` discrete
    actions and observations of shape ``obs_shape``."""
    return LEARNERS[cfg.algorithm](cfg, num_actions, obs_shape)


__all__ = ["LEARNERS", "ContextEncoder", "Learner", "OnlineContext", "encoder_sums", "make_learner"]
